//! Network fixtures for privileged tests, the demo and the benchmarks.
//!
//! Everything here drives `ip(8)` rather than our own netlink crate on
//! purpose: the fixtures must observe and set up kernel state independently of
//! the code under test, so a bug in `plexus-netlink` cannot hide itself.
//! Fixtures panic with a clear message instead of returning errors: a broken
//! fixture is a failed test, never a skipped one. Every guard removes what it
//! created on drop, including when the test panics.

mod cni;
mod ip;
#[cfg(test)]
mod tests;

pub use cni::{CniCall, CniOutput};
pub use ip::{addrs, ip_json, link, links, route_line, routes, v4_addr_lines};

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use serde_json::Value;

/// Linux IFNAMSIZ - 1: the longest interface name the kernel accepts.
pub const MAX_IFNAME: usize = 15;

/// Where Debian's `containernetworking-plugins` installs the Go reference plugins.
pub const REFERENCE_DIR: &str = "/usr/lib/cni";

/// Panics unless running as root: privileged tests must fail loudly, never skip.
pub fn require_root() {
    if !nix::unistd::geteuid().is_root() {
        panic!(
            "this test needs root (network namespaces, veth links); \
             run it with sudo or as root — privileged tests never skip"
        );
    }
}

/// The directory holding our built binaries: `target/<profile>/`.
///
/// Found from the running executable (a test binary lives in
/// `target/<profile>/deps/`, a bench binary in `target/<profile>/`), so tests
/// use the binaries of the same profile they were built with.
/// `PLEXUS_BIN_DIR` overrides it (the benchmark uses it for release builds).
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("PLEXUS_BIN_DIR") {
        return PathBuf::from(dir);
    }
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => panic!("cannot locate the running executable: {e}"),
    };
    profile_dir_of(&exe)
        .unwrap_or_else(|| panic!("cannot derive target/<profile>/ from {}", exe.display()))
}

/// `target/<profile>/` for an executable in it or in its `deps/` subdirectory.
fn profile_dir_of(exe: &Path) -> Option<PathBuf> {
    let dir = exe.parent()?;
    if dir.file_name() == Some(OsStr::new("deps")) {
        dir.parent().map(Path::to_path_buf)
    } else {
        Some(dir.to_path_buf())
    }
}

/// Path of one of our binaries (`host-device`, `static`, `plexus`, ...).
pub fn bin_path(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    if !path.is_file() {
        panic!(
            "binary {} not found: run `cargo build --workspace --bins` first",
            path.display()
        );
    }
    path
}

/// Path of a reference Go plugin from Debian's `containernetworking-plugins`.
pub fn reference_plugin(name: &str) -> PathBuf {
    let path = Path::new(REFERENCE_DIR).join(name);
    if !path.is_file() {
        panic!(
            "reference plugin {} not found: apt-get install containernetworking-plugins",
            path.display()
        );
    }
    path
}

static NAME_COUNTER: AtomicU32 = AtomicU32::new(0);

/// A name unique per process and call, at most 15 characters, usable for both
/// namespaces and links. Other engineers' tests run concurrently on the same
/// machine, hence the pid in every name.
pub fn unique_name(prefix: &str) -> String {
    let n = NAME_COUNTER.fetch_add(1, Ordering::Relaxed);
    compose_name(prefix, std::process::id(), n)
}

/// `<prefix><pid base36>-<counter base36>`, the prefix cut to fit 15 chars.
/// The `-` keeps (pid, counter) pairs unambiguous across processes.
fn compose_name(prefix: &str, pid: u32, n: u32) -> String {
    let suffix = format!("{}-{}", base36(pid), base36(n));
    let room = MAX_IFNAME.saturating_sub(suffix.len());
    let prefix: String = prefix.chars().take(room).collect();
    format!("{prefix}{suffix}")
}

fn base36(mut v: u32) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(v % 36) as usize]);
        v /= 36;
        if v == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8_lossy(&out).into_owned()
}

/// Runs `program args` and returns its output; panics only if it cannot start.
fn run_cmd<S: AsRef<OsStr>>(program: &str, args: &[S]) -> Output {
    match Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
    {
        Ok(out) => out,
        Err(e) => panic!("cannot run {program}: {e} (apt-get install iproute2)"),
    }
}

/// Runs `program args`, panicking with its stderr when it fails.
fn run_ok<S: AsRef<OsStr>>(program: &str, args: &[S]) -> Output {
    let out = run_cmd(program, args);
    if !out.status.success() {
        let shown: Vec<String> = args
            .iter()
            .map(|a| a.as_ref().to_string_lossy().into_owned())
            .collect();
        panic!(
            "`{program} {}` failed ({}): {}",
            shown.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    out
}

/// `ip` arguments targeting a namespace by name, or the current one.
fn ip_args<'a>(ns: Option<&'a str>, rest: &[&'a str]) -> Vec<&'a str> {
    let mut args = Vec::with_capacity(rest.len() + 2);
    if let Some(ns) = ns {
        args.extend(["-n", ns]);
    }
    args.extend_from_slice(rest);
    args
}

/// A named network namespace (`/run/netns/<name>`), deleted on drop together
/// with every virtual link still inside it.
#[derive(Debug)]
pub struct TestNs {
    name: String,
}

impl TestNs {
    /// Creates `<prefix><unique suffix>` with `lo` up.
    pub fn new(prefix: &str) -> Self {
        let ns = Self {
            name: unique_name(prefix),
        };
        run_ok("ip", &["netns", "add", ns.name.as_str()]);
        // Constructed before `lo up` so a failure below still deletes it.
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The bind-mount path, what a runtime passes as `CNI_NETNS`.
    pub fn path(&self) -> PathBuf {
        Path::new("/run/netns").join(&self.name)
    }

    /// Runs a command inside the namespace (`ip netns exec`), any exit status.
    pub fn exec<S: AsRef<OsStr>>(&self, cmd: &[S]) -> Output {
        let mut args: Vec<&OsStr> =
            vec![OsStr::new("netns"), OsStr::new("exec"), self.name.as_ref()];
        args.extend(cmd.iter().map(AsRef::as_ref));
        run_cmd("ip", &args)
    }

    /// Runs `ip -n <ns> args`, panicking with stderr on failure.
    pub fn ip(&self, args: &[&str]) -> Output {
        run_ok("ip", &ip_args(Some(&self.name), args))
    }

    /// Runs `ip -n <ns> args` and returns whether it succeeded.
    pub fn try_ip(&self, args: &[&str]) -> bool {
        run_cmd("ip", &ip_args(Some(&self.name), args))
            .status
            .success()
    }

    pub fn links(&self) -> Value {
        links(Some(self))
    }

    pub fn link(&self, dev: &str) -> Option<Value> {
        link(Some(self), dev)
    }

    pub fn addrs(&self, dev: &str) -> Value {
        addrs(Some(self), dev)
    }

    pub fn routes(&self) -> Value {
        routes(Some(self))
    }
}

impl Drop for TestNs {
    fn drop(&mut self) {
        // Never panic in drop: a second panic while unwinding aborts the test
        // binary and hides the first failure.
        let _ = Command::new("ip")
            .args(["netns", "del", self.name.as_str()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// One end of a veth pair to create.
#[derive(Debug, Clone, Default)]
pub struct VethEnd<'a> {
    pub name: String,
    /// Namespace to create the end in; `None` = the current namespace.
    pub ns: Option<&'a TestNs>,
    pub mac: Option<String>,
    pub mtu: Option<u32>,
    pub up: bool,
}

impl<'a> VethEnd<'a> {
    /// An end in the current namespace, down, with kernel-chosen MAC and MTU.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            ..Self::default()
        }
    }

    pub fn in_ns(mut self, ns: &'a TestNs) -> Self {
        self.ns = Some(ns);
        self
    }

    pub fn mac(mut self, mac: impl Into<String>) -> Self {
        self.mac = Some(mac.into());
        self
    }

    pub fn mtu(mut self, mtu: u32) -> Self {
        self.mtu = Some(mtu);
        self
    }

    pub fn up(mut self) -> Self {
        self.up = true;
        self
    }

    /// `name <n> [address <mac>] [mtu <m>] [netns <ns>]` for `ip link add`.
    fn add_args(&self) -> Vec<String> {
        let mut args = vec!["name".to_owned(), self.name.clone()];
        if let Some(mac) = &self.mac {
            args.extend(["address".to_owned(), mac.clone()]);
        }
        if let Some(mtu) = self.mtu {
            args.extend(["mtu".to_owned(), mtu.to_string()]);
        }
        if let Some(ns) = self.ns {
            args.extend(["netns".to_owned(), ns.name.clone()]);
        }
        args
    }
}

/// The `ip link add` argument list for a veth pair (pure, unit tested).
fn veth_add_args(a: &VethEnd<'_>, b: &VethEnd<'_>) -> Vec<String> {
    let mut args = vec!["link".to_owned(), "add".to_owned()];
    args.extend(a.add_args());
    args.extend(["type".to_owned(), "veth".to_owned(), "peer".to_owned()]);
    args.extend(b.add_args());
    args
}

/// A veth pair standing in for a NIC (one end) and its wire (the other).
///
/// On drop it deletes the pair if it still exists, wherever an end went: the
/// code under test may have moved and renamed one end, so each end is looked
/// up under its original name in every namespace it is known to visit (where
/// it was created, and [`Veth::may_visit`]); deleting either end removes both.
/// The current namespace is searched only if an end was created there.
#[derive(Debug)]
pub struct Veth {
    a: String,
    b: String,
    /// Namespace names to search on drop; `None` = the current namespace.
    places: Vec<Option<String>>,
}

impl Veth {
    pub fn create(a: VethEnd<'_>, b: VethEnd<'_>) -> Self {
        // Only where an end was created: an end made inside a test namespace
        // may share its name with a real host link (`ens5`), which the drop
        // must never touch.
        let mut places = Vec::new();
        for end in [&a, &b] {
            let place = end.ns.map(|ns| ns.name.clone());
            if !places.contains(&place) {
                places.push(place);
            }
        }
        let veth = Self {
            a: a.name.clone(),
            b: b.name.clone(),
            places,
        };
        run_ok("ip", &veth_add_args(&a, &b));
        for end in [&a, &b] {
            if end.up {
                let ns = end.ns.map(|n| n.name.as_str());
                run_ok(
                    "ip",
                    &ip_args(ns, &["link", "set", end.name.as_str(), "up"]),
                );
            }
        }
        veth
    }

    pub fn a(&self) -> &str {
        &self.a
    }

    pub fn b(&self) -> &str {
        &self.b
    }

    /// Also search `ns` on drop (e.g. the pod namespace an end is moved to).
    pub fn may_visit(&mut self, ns: &TestNs) {
        let place = Some(ns.name.clone());
        if !self.places.contains(&place) {
            self.places.push(place);
        }
    }
}

impl Drop for Veth {
    fn drop(&mut self) {
        for place in &self.places {
            for end in [&self.a, &self.b] {
                let args = ip_args(place.as_deref(), &["link", "del", end.as_str()]);
                let deleted = Command::new("ip")
                    .args(&args)
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .map(|s| s.success())
                    .unwrap_or(false);
                if deleted {
                    return;
                }
            }
        }
    }
}
