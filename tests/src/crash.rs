//! Crash injection without test switches in production code: a plugin runs
//! under `strace`, which SIGKILLs it when it enters the N-th call of a
//! chosen syscall (`-e inject=<syscall>:signal=KILL:when=N`). The signal is
//! delivered at syscall entry, before the kernel runs the call, so "kill at
//! the 5th `sendto`" means "everything up to the 4th netlink request
//! happened, the 5th did not".
//!
//! The syscalls that mark a plugin's steps are few and stable: `rename` is
//! the commit of an atomic record write, `write` the record's bytes (and, last,
//! the CNI result on stdout), `sendto` each netlink request (the move into the
//! pod is one `RTM_SETLINK`), `connect` an HTTP connection to the API server,
//! `flock` the device lock, `clone`/`clone3`/`vfork` the start of a delegate
//! and `wait4` its end (plexus' steps). A dry run under `strace -c`-like counting gives
//! how often each occurs, and a sweep kills at every occurrence.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;

use anyhow::{Context, Result};

/// The syscalls that mark plugin steps (see the module docs).
pub const MARKERS: &[&str] = &[
    "flock", "write", "rename", "sendto", "connect", "unlink", "clone", "clone3", "vfork", "wait4",
];

/// Kill the plugin at the `nth` (1-based) entry of `syscall`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KillAt {
    pub syscall: String,
    pub nth: u32,
}

impl fmt::Display for KillAt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}", self.syscall, self.nth)
    }
}

/// How the plugin runs: plainly, traced to count marker syscalls, or killed.
#[derive(Debug, Clone)]
pub enum Mode {
    Plain,
    /// Writes an strace log to this file.
    Count(PathBuf),
    Kill(KillAt),
}

/// Writes an executable wrapper `<dir>/<name>` that runs `bin` inside the
/// netns at `netns` (the node), with `mode` applied. `-f` follows delegates
/// (host-device's IPAM runs in-process; plexus' delegates are children), so
/// a kill counts syscalls of the whole call tree when `follow` is set.
pub fn wrapper(
    dir: &Path,
    name: &str,
    netns: &Path,
    bin: &Path,
    mode: &Mode,
    follow: bool,
) -> Result<PathBuf> {
    let f = if follow { "-f " } else { "" };
    let strace = match mode {
        Mode::Plain => String::new(),
        Mode::Count(log) => format!(
            "strace {f}-qq -o '{}' -e trace={} ",
            log.display(),
            MARKERS.join(",")
        ),
        Mode::Kill(k) => format!(
            "strace {f}-qq -o /dev/null -e trace={} -e inject={}:signal=KILL:when={} ",
            k.syscall, k.syscall, k.nth
        ),
    };
    let script = format!(
        "#!/bin/sh\nexec nsenter --net='{}' {strace}'{}'\n",
        netns.display(),
        bin.display()
    );
    let path = dir.join(name);
    // Concurrent callers with the same wrapper must not rewrite a file
    // another one is executing (ETXTBSY).
    if fs::read_to_string(&path).is_ok_and(|old| old == script) {
        return Ok(path);
    }
    fs::write(&path, script).with_context(|| format!("writing {}", path.display()))?;
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755))?;
    Ok(path)
}

/// Every kill point of a counted run, in the order of the log. strace counts
/// `when=N` per traced thread, so with `-f` the N-th call of a syscall is
/// reachable only if some thread makes N of them: the points are, per
/// syscall, 1 up to the largest per-thread count.
pub fn kill_points(log: &Path) -> Result<Vec<KillAt>> {
    let text = fs::read_to_string(log).with_context(|| format!("reading {}", log.display()))?;
    let mut per_thread: BTreeMap<(String, String), u32> = BTreeMap::new();
    let mut reached: BTreeMap<String, u32> = BTreeMap::new();
    let mut points = Vec::new();
    for line in text.lines() {
        // "<pid> <syscall>(..." with -f, "<syscall>(..." without.
        let mut words = line.split_whitespace();
        let first = words.next().unwrap_or_default();
        let (pid, call_word) = if first.contains('(') {
            ("", first)
        } else {
            (first, words.next().unwrap_or_default())
        };
        let call = call_word.split('(').next().unwrap_or_default();
        if !MARKERS.contains(&call) {
            continue;
        }
        let n = per_thread
            .entry((pid.to_owned(), call.to_owned()))
            .or_default();
        *n += 1;
        let max = reached.entry(call.to_owned()).or_default();
        if *n > *max {
            *max = *n;
            points.push(KillAt {
                syscall: call.to_owned(),
                nth: *n,
            });
        }
    }
    Ok(points)
}

/// Whether a wrapper run ended by SIGKILL (strace re-raises the tracee's
/// fatal signal; a shell reports it as 128+9).
pub fn was_killed(status: &ExitStatus) -> bool {
    use std::os::unix::process::ExitStatusExt;
    status.signal() == Some(9) || status.code() == Some(137)
}

/// A mount over a test directory (a read-only bind of it onto itself, or a
/// 64 KiB tmpfs to fill), unmounted on drop: the "read-only" and "full"
/// data-dir cases.
pub struct TestMount(PathBuf);

impl TestMount {
    /// `dir` bound onto itself, then remounted read-only.
    pub fn bind_read_only(dir: &Path) -> Result<Self> {
        let d = dir.display().to_string();
        sh(&["mount", "--bind", &d, &d])?;
        let this = Self(dir.to_owned());
        sh(&["mount", "-o", "remount,bind,ro", &d])?;
        Ok(this)
    }

    /// A 64 KiB tmpfs on `dir`.
    pub fn tiny_tmpfs(dir: &Path) -> Result<Self> {
        let d = dir.display().to_string();
        sh(&["mount", "-t", "tmpfs", "-o", "size=64k", "plexus-full", &d])?;
        Ok(Self(dir.to_owned()))
    }
}

impl Drop for TestMount {
    fn drop(&mut self) {
        let _ = sh(&["umount", &self.0.display().to_string()]);
    }
}

fn sh(args: &[&str]) -> Result<()> {
    let out = std::process::Command::new(args[0])
        .args(&args[1..])
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}
