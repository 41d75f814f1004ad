//! What a runtime node leaves on the machine outside its work dir, and how to
//! remove it: by its own teardown, or by a later test when the process that
//! owned the node died without unwinding (SIGKILL from a test timeout).
//!
//! Everything is found from the node's name alone (work dir
//! `/var/tmp/plexus-rt-<node>`, cgroup parent `/plexus-rt-<node>`, socket in
//! the work dir) plus small records in the work dir: the owner process, the
//! containerd PID and the sandboxes created. Processes are only ever killed
//! by PID after checking they are this node's (containerd by its config
//! path, shims by their `-address`, pause processes by their cgroup).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// Where every node's work dir lives (a real disk: overlayfs upper dirs).
const WORK_PARENT: &str = "/var/tmp";
const WORK_PREFIX: &str = "plexus-rt-";

/// Container runtime state outside any work dir, shared with whatever other
/// containerd runs here: removed only when left empty.
const SHARED_DIRS: [&str; 4] = [
    "/run/containerd/s",
    "/run/containerd",
    "/var/lib/cni/results",
    "/var/lib/cni",
];

/// The machine-wide traces of one node.
#[derive(Debug, Clone)]
pub(crate) struct Footprint {
    pub node: String,
    pub work: PathBuf,
    pub cgroup_parent: String,
}

impl Footprint {
    pub fn for_node(node: &str) -> Self {
        Self {
            node: node.to_owned(),
            work: Path::new(WORK_PARENT).join(format!("{WORK_PREFIX}{node}")),
            cgroup_parent: format!("/{WORK_PREFIX}{node}"),
        }
    }

    pub fn sock(&self) -> PathBuf {
        self.work.join("containerd.sock")
    }

    pub fn config(&self) -> PathBuf {
        self.work.join("containerd.toml")
    }

    /// Records the test process owning this node (PID + start time, so a
    /// reused PID is not mistaken for it).
    pub fn write_owner(&self) -> std::io::Result<()> {
        let pid = std::process::id();
        let start = proc_start_time(pid as i32).unwrap_or(0);
        fs::write(self.work.join("owner"), format!("{pid} {start}\n"))
    }

    fn owner_alive(&self) -> bool {
        let Ok(text) = fs::read_to_string(self.work.join("owner")) else {
            // A node being set up right now has no owner file for a moment.
            return fresh(&self.work);
        };
        let mut it = text.split_whitespace().map(str::parse::<u64>);
        match (it.next(), it.next()) {
            (Some(Ok(pid)), Some(Ok(start))) => proc_start_time(pid as i32) == Some(start),
            _ => false,
        }
    }

    pub fn write_containerd_pid(&self, pid: u32) -> std::io::Result<()> {
        fs::write(self.work.join("containerd.pid"), format!("{pid}\n"))
    }

    /// Appends a sandbox (id, pod netns path) to the record teardown uses
    /// when CRI can no longer tell.
    pub fn record_sandbox(&self, id: &str, netns: &Path) -> std::io::Result<()> {
        let mut f = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.work.join("sandboxes"))?;
        writeln!(f, "{id}\t{}", netns.display())
    }

    fn recorded_sandboxes(&self) -> Vec<(String, PathBuf)> {
        fs::read_to_string(self.work.join("sandboxes"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_once('\t'))
            .map(|(id, ns)| (id.to_owned(), PathBuf::from(ns)))
            .collect()
    }

    /// Kills this node's containerd if it still runs (after a crash of its
    /// owner), by the recorded PID, only if that process is still it.
    fn kill_containerd(&self, errors: &mut Vec<String>) {
        let Some(pid) = fs::read_to_string(self.work.join("containerd.pid"))
            .ok()
            .and_then(|t| t.trim().parse::<i32>().ok())
        else {
            return;
        };
        let config = self.config().display().to_string();
        if !cmdline(pid).contains(&config) {
            return;
        }
        errors.push(format!("killed containerd {pid}"));
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Path::new(&format!("/proc/{pid}/cmdline")).exists()
            && !cmdline(pid).is_empty()
            && Instant::now() < deadline
        {
            sleep(Duration::from_millis(20));
        }
    }

    /// PIDs of shims serving this node's socket and of processes in its pod
    /// cgroups.
    fn stray_processes(&self) -> Vec<i32> {
        let sock = self.sock().display().to_string();
        let cgroup = format!(":{}/", self.cgroup_parent);
        let Ok(procs) = fs::read_dir("/proc") else {
            return Vec::new();
        };
        procs
            .flatten()
            .filter_map(|e| e.file_name().to_string_lossy().parse::<i32>().ok())
            .filter(|&pid| {
                let our_shim = cmdline(pid)
                    .windows(2)
                    .any(|w| w[0] == "-address" && w[1] == sock);
                let in_cgroup = fs::read_to_string(format!("/proc/{pid}/cgroup"))
                    .is_ok_and(|c| c.contains(&cgroup));
                our_shim || in_cgroup
            })
            .collect()
    }

    /// Removes everything of this node but its netns (a `TestNs` guard, or
    /// [`sweep_stale`], deletes that) once containerd is gone. Each step that
    /// found something to force is reported in `errors`; teardown goes on.
    pub fn clean(&self, errors: &mut Vec<String>) {
        self.kill_containerd(errors);
        // Shims re-parent to PID 1 and may outlive containerd; pause
        // processes too if a sandbox could not be stopped. A shim of a
        // removed sandbox exits by itself shortly: give it that time first.
        let deadline = Instant::now() + Duration::from_secs(3);
        while !self.stray_processes().is_empty() && Instant::now() < deadline {
            sleep(Duration::from_millis(50));
        }
        for pid in self.stray_processes() {
            errors.push(format!("killed stray process {pid}"));
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        self.unmount_under_work(errors);
        for (id, netns) in self.recorded_sandboxes() {
            if !netns.as_os_str().is_empty() && netns.exists() {
                errors.push(format!("pod netns {} left behind", netns.display()));
                let _ = quiet(Command::new("umount").arg(&netns));
                let _ = fs::remove_file(&netns);
            }
            // libcni's result cache: /var/lib/cni/results/<net>-<id>-<ifname>.
            if let Ok(entries) = fs::read_dir("/var/lib/cni/results") {
                for e in entries.flatten() {
                    if e.file_name().to_string_lossy().contains(&id) {
                        errors.push(format!("libcni cache {} left behind", e.path().display()));
                        let _ = fs::remove_file(e.path());
                    }
                }
            }
        }
        self.remove_cgroups(errors);
        for dir in SHARED_DIRS {
            let _ = fs::remove_dir(dir);
        }
        if let Err(e) = fs::remove_dir_all(&self.work) {
            if self.work.exists() {
                errors.push(format!("removing {}: {e}", self.work.display()));
            }
        }
    }

    /// Lazily unmounts whatever is still mounted under the work dir (sandbox
    /// rootfs, shm) after an unclean stop, deepest first.
    fn unmount_under_work(&self, errors: &mut Vec<String>) {
        let prefix = format!("{}/", self.work.display());
        let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mut points: Vec<&str> = mountinfo
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|p| p.starts_with(&prefix))
            .collect();
        points.sort_by_key(|p| std::cmp::Reverse(p.len()));
        for p in points {
            errors.push(format!("unmounted {p}"));
            let _ = quiet(Command::new("umount").arg("-l").arg(p));
        }
    }

    /// Removes this node's cgroup parent in every hierarchy, children first.
    /// Expected, not an error: on a real node kubelet removes pod cgroups.
    fn remove_cgroups(&self, errors: &mut Vec<String>) {
        let Ok(hierarchies) = fs::read_dir("/sys/fs/cgroup") else {
            return;
        };
        for h in hierarchies.flatten() {
            let root = h.path().join(self.cgroup_parent.trim_start_matches('/'));
            if root.is_dir() {
                if let Err(e) = remove_cgroup_tree(&root) {
                    errors.push(format!("removing cgroup {}: {e}", root.display()));
                }
            }
        }
    }
}

/// Cleans up after nodes whose owning test process died without teardown.
/// Returns what it removed, for the log.
pub(crate) fn sweep_stale() -> Vec<String> {
    let mut report = Vec::new();
    let Ok(entries) = fs::read_dir(WORK_PARENT) else {
        return report;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(node) = name.strip_prefix(WORK_PREFIX) else {
            continue;
        };
        let fp = Footprint::for_node(node);
        if fp.owner_alive() {
            continue;
        }
        let mut errors = Vec::new();
        fp.clean(&mut errors);
        if Path::new("/run/netns").join(&fp.node).exists() {
            let _ = quiet(Command::new("ip").args(["netns", "del", fp.node.as_str()]));
        }
        report.push(format!("stale node {}: {}", fp.node, errors.join("; ")));
    }
    report
}

/// rmdir a cgroup tree bottom-up (cgroupfs only removes empty groups; their
/// control files vanish with the directory).
fn remove_cgroup_tree(dir: &Path) -> std::io::Result<()> {
    for e in fs::read_dir(dir)?.flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            remove_cgroup_tree(&e.path())?;
        }
    }
    fs::remove_dir(dir)
}

/// A process's argv (empty for zombies and vanished processes).
fn cmdline(pid: i32) -> Vec<String> {
    fs::read(format!("/proc/{pid}/cmdline"))
        .unwrap_or_default()
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

/// Field 22 of `/proc/<pid>/stat` (start time in clock ticks since boot).
fn proc_start_time(pid: i32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces; fields after it are not.
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(19)?.parse().ok()
}

/// Whether `path` was modified within the last minute.
fn fresh(path: &Path) -> bool {
    fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|age| age < Duration::from_secs(60))
}

fn quiet(cmd: &mut Command) -> std::io::Result<std::process::ExitStatus> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
}
