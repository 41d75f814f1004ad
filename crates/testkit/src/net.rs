//! Network fixtures for privileged tests, the demo and the benchmarks.
//!
//! Everything here drives `ip(8)` rather than our own netlink crate on
//! purpose: the fixtures must observe and set up kernel state independently of
//! the code under test, so a bug in `plexus-netlink` cannot hide itself.
//! Fixtures panic with a clear message instead of returning errors: a broken
//! fixture is a failed test, never a skipped one. Every guard removes what it
//! created on drop, including when the test panics.

use std::ffi::OsStr;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

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

/// The IPv4 addresses of `ip -j addr show` as `a.b.c.d/len`, sorted.
pub fn v4_addr_lines(addrs: &Value) -> Vec<String> {
    let mut out: Vec<String> = addrs
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["family"] == "inet")
        .map(|a| format!("{}/{}", a["local"].as_str().unwrap_or("?"), a["prefixlen"]))
        .collect();
    out.sort();
    out
}

/// One route of `ip -j route show` as `dst via gw dev d proto p scope s`,
/// with `ip`'s own defaults for absent fields, so tests compare route tables
/// as sortable lines.
pub fn route_line(r: &Value) -> String {
    format!(
        "{} via {} dev {} proto {} scope {}",
        r["dst"].as_str().unwrap_or("?"),
        r["gateway"].as_str().unwrap_or("-"),
        r["dev"].as_str().unwrap_or("?"),
        r["protocol"].as_str().unwrap_or("boot"),
        r["scope"].as_str().unwrap_or("universe"),
    )
}

/// Runs `ip -j <args>` in `ns` (or the current namespace) and parses the JSON.
/// An empty answer (e.g. no routes) is an empty array.
pub fn ip_json(ns: Option<&TestNs>, args: &[&str]) -> Value {
    let mut full = vec!["-j"];
    full.extend_from_slice(args);
    let out = run_ok("ip", &ip_args(ns.map(|n| n.name.as_str()), &full));
    let text = String::from_utf8_lossy(&out.stdout);
    if text.trim().is_empty() {
        return Value::Array(Vec::new());
    }
    match serde_json::from_str(&text) {
        Ok(v) => v,
        Err(e) => panic!(
            "`ip -j {}` printed invalid JSON ({e}): {text}",
            args.join(" ")
        ),
    }
}

/// `ip -j -d link show`: every link with details (MTU, flags, alias, MAC).
pub fn links(ns: Option<&TestNs>) -> Value {
    ip_json(ns, &["-d", "link", "show"])
}

/// One link by name, `None` if absent.
pub fn link(ns: Option<&TestNs>, dev: &str) -> Option<Value> {
    links(ns)
        .as_array()?
        .iter()
        .find(|l| l["ifname"] == dev)
        .cloned()
}

/// `ip -j addr show dev <dev>`: the addresses of one link (its `addr_info`).
pub fn addrs(ns: Option<&TestNs>, dev: &str) -> Value {
    let shown = ip_json(ns, &["addr", "show", "dev", dev]);
    shown
        .get(0)
        .and_then(|l| l.get("addr_info"))
        .cloned()
        .unwrap_or_else(|| Value::Array(Vec::new()))
}

/// IPv4 then IPv6 routes of the main table.
pub fn routes(ns: Option<&TestNs>) -> Value {
    let mut all = Vec::new();
    for family in ["-4", "-6"] {
        if let Value::Array(rs) = ip_json(ns, &[family, "route", "show"]) {
            all.extend(rs);
        }
    }
    Value::Array(all)
}

/// One CNI plugin invocation with an exact environment (everything cleared
/// except `PATH`), as a runtime would make it. Unset fields are left out of
/// the environment rather than set empty, so "missing variable" paths can be
/// exercised too.
#[derive(Debug, Clone)]
pub struct CniCall {
    pub bin: PathBuf,
    pub command: String,
    pub container_id: Option<String>,
    pub netns: Option<String>,
    pub ifname: Option<String>,
    pub cni_path: Option<String>,
    pub args: Option<String>,
    pub stdin: Vec<u8>,
}

/// What a plugin invocation produced.
#[derive(Debug, Clone)]
pub struct CniOutput {
    pub status: ExitStatus,
    /// stdout parsed as JSON; `Value::Null` when stdout is empty or not JSON.
    pub json: Value,
    pub stdout: String,
    pub stderr: String,
    /// Wall time from spawn to exit, stdin write and output capture included.
    pub elapsed: Duration,
}

impl CniOutput {
    /// The result JSON, panicking with the plugin's output if it failed.
    pub fn assert_ok(&self) -> &Value {
        if !self.status.success() {
            panic!(
                "plugin failed ({}): stdout={} stderr={}",
                self.status,
                self.stdout.trim(),
                self.stderr.trim()
            );
        }
        &self.json
    }
}

impl CniCall {
    /// A call with only `CNI_COMMAND` set; add the rest with the setters.
    pub fn new(bin: impl Into<PathBuf>, command: &str) -> Self {
        Self {
            bin: bin.into(),
            command: command.to_owned(),
            container_id: None,
            netns: None,
            ifname: None,
            cni_path: None,
            args: None,
            stdin: Vec::new(),
        }
    }

    pub fn container_id(mut self, v: impl Into<String>) -> Self {
        self.container_id = Some(v.into());
        self
    }

    pub fn netns(mut self, v: impl AsRef<Path>) -> Self {
        self.netns = Some(v.as_ref().to_string_lossy().into_owned());
        self
    }

    pub fn ifname(mut self, v: impl Into<String>) -> Self {
        self.ifname = Some(v.into());
        self
    }

    pub fn cni_path(mut self, v: impl AsRef<Path>) -> Self {
        self.cni_path = Some(v.as_ref().to_string_lossy().into_owned());
        self
    }

    pub fn args(mut self, v: impl Into<String>) -> Self {
        self.args = Some(v.into());
        self
    }

    pub fn stdin(mut self, v: impl Into<Vec<u8>>) -> Self {
        self.stdin = v.into();
        self
    }

    /// The same call with another command (ADD → CHECK → DEL share the rest).
    pub fn with_command(&self, command: &str) -> Self {
        let mut next = self.clone();
        next.command = command.to_owned();
        next
    }

    /// The `CNI_*` variables this call sets, in spec order.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        let mut env = vec![("CNI_COMMAND", self.command.clone())];
        let optional = [
            ("CNI_CONTAINERID", &self.container_id),
            ("CNI_NETNS", &self.netns),
            ("CNI_IFNAME", &self.ifname),
            ("CNI_ARGS", &self.args),
            ("CNI_PATH", &self.cni_path),
        ];
        for (key, value) in optional {
            if let Some(value) = value {
                env.push((key, value.clone()));
            }
        }
        env
    }

    /// Runs the plugin to completion; panics only if it cannot be started.
    pub fn run(&self) -> CniOutput {
        let path = std::env::var("PATH").unwrap_or_else(|_| {
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_owned()
        });
        let mut cmd = Command::new(&self.bin);
        cmd.env_clear()
            .env("PATH", path)
            .envs(self.env())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let start = Instant::now();
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => panic!("cannot start {}: {e}", self.bin.display()),
        };
        if let Some(mut stdin) = child.stdin.take() {
            // A plugin may exit without reading stdin (VERSION); a broken pipe
            // is then expected and not an error of the call.
            let _ = stdin.write_all(&self.stdin);
        }
        let out = match child.wait_with_output() {
            Ok(o) => o,
            Err(e) => panic!("waiting for {} failed: {e}", self.bin.display()),
        };
        let elapsed = start.elapsed();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let json = serde_json::from_str(&stdout).unwrap_or(Value::Null);
        CniOutput {
            status: out.status,
            json,
            stdout,
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            elapsed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn names_fit_ifnamsiz_and_are_unique() {
        let names: HashSet<String> = (0..500).map(|_| unique_name("pxtestkit")).collect();
        assert_eq!(names.len(), 500);
        assert!(names
            .iter()
            .all(|n| n.len() <= MAX_IFNAME && n.starts_with("px")));
    }

    #[test]
    fn worst_case_name_still_fits() {
        let name = compose_name("averyveryverylongprefix", u32::MAX, u32::MAX);
        assert_eq!(name.len(), MAX_IFNAME);
        assert!(name.ends_with("1z141z3-1z141z3"));
    }

    #[test]
    fn pid_and_counter_do_not_collide_across_processes() {
        // Without the separator pid 1/counter 11 and pid 11/counter 1 clash.
        assert_ne!(compose_name("px", 1, 37), compose_name("px", 37, 1));
    }

    #[test]
    fn base36_digits() {
        assert_eq!(base36(0), "0");
        assert_eq!(base36(35), "z");
        assert_eq!(base36(36), "10");
    }

    #[test]
    fn profile_dir_from_test_and_bin_locations() {
        assert_eq!(
            profile_dir_of(Path::new("/t/target/debug/deps/e2e-123")),
            Some(PathBuf::from("/t/target/debug"))
        );
        assert_eq!(
            profile_dir_of(Path::new("/t/target/release/plexus-bench")),
            Some(PathBuf::from("/t/target/release"))
        );
    }

    #[test]
    fn veth_args_place_each_end() {
        let a = VethEnd::new("vf0").mac("02:00:00:00:00:01").mtu(9000);
        let b = VethEnd::new("wire0");
        assert_eq!(
            veth_add_args(&a, &b).join(" "),
            "link add name vf0 address 02:00:00:00:00:01 mtu 9000 type veth peer name wire0"
        );
    }

    #[test]
    fn cni_env_has_only_set_variables() {
        let call = CniCall::new("/bin/true", "ADD")
            .container_id("c1")
            .netns("/run/netns/x")
            .ifname("net1");
        assert_eq!(
            call.env(),
            vec![
                ("CNI_COMMAND", "ADD".to_owned()),
                ("CNI_CONTAINERID", "c1".to_owned()),
                ("CNI_NETNS", "/run/netns/x".to_owned()),
                ("CNI_IFNAME", "net1".to_owned()),
            ]
        );
        assert_eq!(call.with_command("DEL").env()[0].1, "DEL");
    }

    #[test]
    fn cni_call_passes_exact_env_and_stdin() {
        let call = CniCall::new("/usr/bin/env", "VERSION").args("K=V");
        let out = call.run();
        assert!(out.status.success());
        let mut vars: Vec<&str> = out.stdout.lines().collect();
        vars.sort_unstable();
        assert_eq!(vars.len(), 3, "{vars:?}");
        assert!(vars.contains(&"CNI_ARGS=K=V"));
        assert!(vars.contains(&"CNI_COMMAND=VERSION"));
        assert!(vars.iter().any(|v| v.starts_with("PATH=")));

        let echoed = CniCall::new("/bin/cat", "ADD").stdin(r#"{"a":1}"#).run();
        assert_eq!(echoed.json, serde_json::json!({"a": 1}));
    }

    /// Proves the guards clean up when the test body panics.
    #[test]
    fn guards_clean_up_on_panic() {
        require_root();
        let outer = TestNs::new("pxtk");
        let wire = unique_name("pxw");
        let mut inner_name = String::new();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let inner = TestNs::new("pxtk");
            inner_name = inner.name().to_owned();
            let mut veth = Veth::create(
                VethEnd::new(unique_name("pxv"))
                    .in_ns(&outer)
                    .mtu(1400)
                    .up(),
                VethEnd::new(wire.clone())
                    .in_ns(&outer)
                    .mac("02:42:00:00:00:09"),
            );
            outer.ip(&["link", "set", veth.a(), "netns", inner.name()]);
            veth.may_visit(&inner);
            assert_eq!(
                inner.link(veth.a()).map(|l| l["mtu"].clone()),
                Some(1400.into())
            );
            assert_eq!(
                outer.link(&wire).map(|l| l["address"].clone()),
                Some("02:42:00:00:00:09".into())
            );
            assert!(inner.exec(&["ip", "link", "show", "lo"]).status.success());
            panic!("deliberate");
        }));
        assert!(result.is_err());
        assert!(!Path::new("/run/netns").join(&inner_name).exists());
        assert!(outer.link(&wire).is_none(), "veth left behind");
        let outer_path = outer.path();
        drop(outer);
        assert!(!outer_path.exists());
    }

    #[test]
    fn json_helpers_read_namespace_state() {
        require_root();
        let ns = TestNs::new("pxtk");
        let veth = Veth::create(
            VethEnd::new(unique_name("pxa")).in_ns(&ns).up(),
            VethEnd::new(unique_name("pxb")).in_ns(&ns).up(),
        );
        ns.ip(&["addr", "add", "198.51.100.7/24", "dev", veth.a()]);
        let addrs = ns.addrs(veth.a());
        assert_eq!(addrs[0]["local"], "198.51.100.7");
        let routes = ns.routes();
        assert!(routes
            .as_array()
            .is_some_and(|rs| rs.iter().any(|r| r["dst"] == "198.51.100.0/24")));
        assert!(ns.link("lo").is_some());
    }
}
