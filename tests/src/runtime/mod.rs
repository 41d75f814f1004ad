//! A real container runtime for end-to-end tests: Debian's containerd (CRI
//! plugin) + runc, running pod sandboxes that call our CNI plugins exactly as
//! kubelet -> containerd -> CNI does on a Kubernetes node.
//!
//! [`RuntimeNode`] plays one node. containerd runs inside a dedicated "node"
//! network namespace (entered with `nsenter --net` only, so the pod netns
//! bind mounts under `/run/netns` stay visible to the test), so the cluster
//! bridge, the veth standing in for an SR-IOV VF and every CNI plugin process
//! live there and never touch the host's own network. Everything else the
//! runtime keeps (root, state, runc root, image, configs, socket) lives in a
//! private work dir. Its assets are in `tests/runtime/` (see
//! `docs/runtime-e2e.md`): the pause process, the minimal CRI client and its
//! hand-written proto.
//!
//! Teardown runs on drop, also when a test panics: sandboxes stopped and
//! removed through CRI, containerd killed by PID, stray shims and pause
//! processes of this node killed by PID, pod cgroups, leftover `cni-*` netns
//! of this node's sandboxes, the node netns and the work dir removed. A node
//! whose test process was killed outright is cleaned up by the next
//! [`RuntimeNode::new`] (see `cleanup.rs`).
//!
//! Opt-in ([`RuntimeNode::set_node_fs`]): the node's own mount namespace,
//! for configs that name absolute node paths (see `nodefs.rs`).

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use plexus_testkit::net::{self, TestNs};
use serde_json::{json, Value};

mod cleanup;
mod containerd;
mod cri;
mod iproute;
pub mod kubelet;
mod metaconf;
pub mod metrics;
mod nodefs;

use cleanup::Footprint;
pub use cri::{Cri, CriError};
pub use iproute::{ip_json_at, ipv4_addrs, link_at};
pub use metaconf::{test_vnic, write_state_file};
use nodefs::MountNs;
pub use nodefs::NodeFs;

/// Name the locally built pause image is imported under. It needs a registry
/// part: a bare `plexus-e2e/pause` would be normalised to docker.io.
pub const PAUSE_IMAGE: &str = "localhost/plexus-e2e/pause:1.0";

/// Debian's python with `python3-grpcio`; a pyenv `python3` earlier on PATH
/// cannot import it.
pub(crate) const PYTHON: &str = "/usr/bin/python3";

/// How long containerd gets to become ready, and to exit on SIGTERM.
const START_TIMEOUT: Duration = Duration::from_secs(30);
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// `tests/runtime/`: pause.c, cri_min.proto, cri.py, pause_image.py.
pub(crate) fn assets() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("runtime")
}

/// The repository root (for `scripts/deps.sh`).
fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Runs a command to completion, failing with its stderr when it fails.
fn run(cmd: &mut Command) -> Result<Output> {
    let shown = format!("{cmd:?}");
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {shown}"))?;
    if !out.status.success() {
        bail!(
            "{shown} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim(),
            String::from_utf8_lossy(&out.stdout).trim()
        );
    }
    Ok(out)
}

/// Installs the Debian packages the runtime tests need (containerd, runc,
/// reference plugins, grpc for the CRI client) when missing; a no-op taking a
/// few milliseconds otherwise.
pub fn ensure_deps() -> Result<()> {
    run(&mut Command::new(repo_root().join("scripts/deps.sh")))
        .map(|_| ())
        .context("scripts/deps.sh")
}

/// The pod a test asks for: what kubelet would put in `PodSandboxConfig`.
#[derive(Debug, Clone)]
pub struct PodSpec {
    pub name: String,
    pub namespace: String,
    pub uid: String,
    pub annotations: BTreeMap<String, String>,
}

impl PodSpec {
    /// A pod `name` in namespace `default` with a fresh random UID.
    pub fn new(name: &str) -> Result<Self> {
        let uid = fs::read_to_string("/proc/sys/kernel/random/uuid")
            .context("reading a random uuid")?
            .trim()
            .to_owned();
        Ok(Self {
            name: name.to_owned(),
            namespace: "default".to_owned(),
            uid,
            annotations: BTreeMap::new(),
        })
    }

    pub fn annotation(mut self, key: &str, value: &str) -> Self {
        self.annotations.insert(key.to_owned(), value.to_owned());
        self
    }
}

/// A sandbox the runtime created: its id and the netns path containerd
/// passed to the CNI plugins as `CNI_NETNS`.
#[derive(Debug, Clone)]
pub struct Sandbox {
    pub id: String,
    pub netns: PathBuf,
    /// `status.network.ip`: the first IP the CNI result gave `eth0`.
    pub ip: String,
}

/// One Kubernetes node's container runtime; see the module docs.
///
/// Built in two steps so a test can lay out the CNI bin/conf dirs and the
/// node's links (which may need paths in the work dir) before containerd
/// reads them: [`RuntimeNode::new`], then [`RuntimeNode::start`].
pub struct RuntimeNode {
    /// Drops (deleting the namespace and every link in it) after `drop`.
    node: TestNs,
    footprint: Footprint,
    work: PathBuf,
    containerd: Option<Child>,
    cri: Cri,
    torn_down: bool,
    node_fs: Option<NodeFs>,
    mntns: Option<MountNs>,
}

impl std::fmt::Debug for RuntimeNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuntimeNode")
            .field("work", &self.work)
            .field("node", &self.node.name())
            .finish_non_exhaustive()
    }
}

impl RuntimeNode {
    /// Creates the work dir, the node netns (with `lo` up), the CNI dirs and
    /// links containerd's mandatory `loopback` plugin. Panics unless root.
    pub fn new() -> Result<Self> {
        net::require_root();
        ensure_deps()?;
        for stale in cleanup::sweep_stale() {
            eprintln!("runtime node: cleaned up {stale}");
        }
        let node = TestNs::new("plxnode");
        let footprint = Footprint::for_node(node.name());
        let work = footprint.work.clone();
        let cri = Cri::new(footprint.sock(), work.join("cri"));
        let this = Self {
            node,
            footprint,
            work,
            containerd: None,
            cri,
            torn_down: false,
            node_fs: None,
            mntns: None,
        };
        for dir in ["cni/bin", "cni/net.d", "cri", "logs"] {
            fs::create_dir_all(this.work.join(dir))
                .with_context(|| format!("creating {}", this.work.join(dir).display()))?;
        }
        this.footprint
            .write_owner()
            .context("recording the node's owner")?;
        // containerd always sets up `lo` through this plugin, whatever the
        // conflist says; without it every RunPodSandbox fails.
        this.link_reference_plugin("loopback")?;
        Ok(this)
    }

    /// The node's network namespace (containerd and the CNI plugins run here).
    pub fn netns(&self) -> &TestNs {
        &self.node
    }

    /// The private work dir; files a CNI config refers to can go here.
    pub fn work_dir(&self) -> &Path {
        &self.work
    }

    /// containerd's CNI `bin_dir`, passed to plugins as `CNI_PATH`.
    pub fn cni_bin_dir(&self) -> PathBuf {
        self.work.join("cni/bin")
    }

    /// containerd's CNI `conf_dir` (only the lexically first file is used).
    pub fn cni_conf_dir(&self) -> PathBuf {
        self.work.join("cni/net.d")
    }

    pub fn cri(&self) -> &Cri {
        &self.cri
    }

    /// Runs `f` on a thread that joined the node netns, and returns its
    /// result. Sockets it binds stay in the node netns after it returns, and
    /// threads it spawns start there: this is how a test serves the fake
    /// Kubernetes API where the CNI plugins (children of containerd) can
    /// reach it on 127.0.0.1, while the test itself stays in the host netns.
    pub fn in_node_netns<T, F>(&self, f: F) -> Result<T>
    where
        T: Send,
        F: FnOnce() -> T + Send,
    {
        let path = self.node.path();
        std::thread::scope(|s| {
            s.spawn(|| -> Result<T> {
                let ns =
                    fs::File::open(&path).with_context(|| format!("opening {}", path.display()))?;
                nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)
                    .with_context(|| format!("setns {}", path.display()))?;
                Ok(f())
            })
            .join()
            .map_err(|_| anyhow!("thread in the node netns panicked"))?
        })
    }

    /// Symlinks Debian's reference plugin `name` into the CNI bin dir.
    pub fn link_reference_plugin(&self, name: &str) -> Result<()> {
        let dst = self.cni_bin_dir().join(name);
        symlink(net::reference_plugin(name), &dst)
            .with_context(|| format!("linking {}", dst.display()))
    }

    /// Copies one of our binaries into the CNI bin dir, as the agent's
    /// installer would (a copy, so a rebuild during the test cannot change it).
    pub fn install_plugin(&self, name: &str, src: &Path) -> Result<()> {
        let dst = self.cni_bin_dir().join(name);
        fs::copy(src, &dst)
            .with_context(|| format!("copying {} to {}", src.display(), dst.display()))?;
        fs::set_permissions(&dst, fs::Permissions::from_mode(0o755))
            .with_context(|| format!("chmod {}", dst.display()))
    }

    /// Writes a file into the CNI conf dir. Call before [`Self::start`]:
    /// containerd 1.6's watcher ignores files created after it started.
    pub fn write_conf(&self, file: &str, conf: &Value) -> Result<PathBuf> {
        let path = self.cni_conf_dir().join(file);
        let text = serde_json::to_string_pretty(conf).context("serialising a CNI config")?;
        fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    }

    /// A bridge + host-local conflist for the cluster network (the pods'
    /// `eth0`) on 198.51.100.0/24, its IPAM state in the work dir. The bridge
    /// and the reference plugins it needs must be linked by the caller.
    pub fn cluster_conflist(&self, bridge: &str) -> Value {
        json!({
            "cniVersion": "1.0.0",
            "name": "cluster",
            "plugins": [{
                "type": "bridge",
                "bridge": bridge,
                "isGateway": true,
                "ipMasq": false,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": "198.51.100.0/24"}]],
                    "dataDir": self.work.join("cni/ipam").display().to_string(),
                }
            }]
        })
    }

    /// The `PodSandboxConfig` kubelet would send for `pod`: cgroupfs-style
    /// per-pod cgroup parent under this node's own parent, pod network
    /// namespace.
    pub fn pod_config(&self, pod: &PodSpec) -> Value {
        json!({
            "metadata": {"name": pod.name, "namespace": pod.namespace, "uid": pod.uid, "attempt": 0},
            "hostname": pod.name,
            "log_directory": self.work.join(format!("logs/pods/{}_{}_{}", pod.namespace, pod.name, pod.uid)).display().to_string(),
            "labels": {
                "io.kubernetes.pod.name": pod.name,
                "io.kubernetes.pod.namespace": pod.namespace,
                "io.kubernetes.pod.uid": pod.uid,
            },
            "annotations": pod.annotations,
            "linux": {
                "cgroup_parent": format!("{}/pod{}", self.footprint.cgroup_parent, pod.uid),
                "security_context": {
                    "namespace_options": {"network": "POD", "pid": "CONTAINER", "ipc": "POD"}
                }
            }
        })
    }

    /// RunPodSandbox. `Err` carries containerd's message (for a failed CNI
    /// ADD: `failed to setup network for sandbox ...: plugin type=... failed
    /// (add): <the plugin's error>`).
    pub fn run_pod(&self, pod: &PodSpec) -> Result<Sandbox, CriError> {
        let id = self.cri.run_pod(&self.pod_config(pod))?;
        let status = self.cri.inspect(&id);
        let (netns, ip) = match &status {
            Ok(s) => (
                self.host_view(&sandbox_netns(s).unwrap_or_default()),
                sandbox_ip(s),
            ),
            Err(_) => (PathBuf::new(), String::new()),
        };
        // Recorded before anything can fail, so teardown finds its netns.
        if let Err(e) = self.footprint.record_sandbox(&id, &netns) {
            return Err(CriError {
                message: format!("recording sandbox {id}: {e}"),
            });
        }
        status?;
        let sandbox = Sandbox { id, netns, ip };
        Ok(sandbox)
    }

    /// Fails unless the runtime knows no sandbox at all.
    pub fn assert_no_sandboxes(&self) -> Result<()> {
        let ids = self.cri.sandbox_ids()?;
        if !ids.is_empty() {
            bail!("sandboxes left in the runtime: {ids:?}");
        }
        Ok(())
    }

    /// Stops and removes every sandbox, then stops containerd and removes
    /// everything this node created outside the node netns and the work dir.
    /// Errors are collected, not fatal: teardown goes on past each one.
    fn teardown(&mut self) -> Vec<String> {
        let mut errors = Vec::new();
        if std::mem::replace(&mut self.torn_down, true) {
            return errors;
        }
        if self.containerd.is_some() {
            match self.cri.sandbox_ids() {
                Ok(ids) => {
                    for id in ids {
                        errors.push(format!("sandbox {id} still there at teardown"));
                        // DEL may fail once (a plugin bug under test); a
                        // second try mirrors kubelet's retry.
                        let stopped = self.cri.stop(&id).or_else(|_| self.cri.stop(&id));
                        if let Err(e) = stopped.and_then(|()| self.cri.remove(&id)) {
                            errors.push(format!("sandbox {id}: {e}"));
                        }
                    }
                }
                Err(e) => errors.push(format!("listing sandboxes: {e}")),
            }
        }
        if let Some(mut child) = self.containerd.take() {
            let pid = Pid::from_raw(child.id() as i32);
            let _ = kill(pid, Signal::SIGTERM);
            let deadline = Instant::now() + STOP_TIMEOUT;
            loop {
                match child.try_wait() {
                    Ok(Some(_)) => break,
                    Ok(None) if Instant::now() < deadline => sleep(Duration::from_millis(50)),
                    _ => {
                        errors.push("containerd ignored SIGTERM; killed".to_owned());
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                }
            }
        }
        if let Some(mut mntns) = self.mntns.take() {
            mntns.release(&mut errors);
        }
        self.footprint.clean(&mut errors);
        errors
    }
}

impl Drop for RuntimeNode {
    fn drop(&mut self) {
        let failing = std::thread::panicking();
        if failing {
            eprintln!("{}", self.log_tail());
        }
        let errors = self.teardown();
        if !errors.is_empty() {
            // Never panic in drop (a double panic aborts and hides the first
            // failure); a clean test checks `shutdown` instead.
            eprintln!("runtime node teardown: {}", errors.join("; "));
        }
    }
}

impl RuntimeNode {
    /// Tears the node down now and fails if anything had to be forced (a
    /// sandbox left, a stray process, a mount, a netns): a passing test must
    /// leave nothing behind by itself.
    pub fn shutdown(self) -> Result<()> {
        let errors = self.shutdown_forced();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(anyhow!("teardown had to clean up: {}", errors.join("; ")))
        }
    }
}

impl RuntimeNode {
    /// Tears the node down now and returns what had to be forced, for a
    /// test that tells the runtime's own leftovers from the code under test's.
    pub fn shutdown_forced(mut self) -> Vec<String> {
        self.teardown()
    }
}

/// RuntimeReady and NetworkReady both true in a CRI `Status` answer.
fn conditions_ready(status: &Value) -> bool {
    let conds = status["status"]["conditions"].as_array();
    let is =
        |t: &str| conds.is_some_and(|cs| cs.iter().any(|c| c["type"] == t && c["status"] == true));
    is("RuntimeReady") && is("NetworkReady")
}

/// The pod netns path from a verbose PodSandboxStatus (the runtime spec's
/// network namespace entry).
pub fn sandbox_netns(status: &Value) -> Option<PathBuf> {
    status["info"]["info"]["runtimeSpec"]["linux"]["namespaces"]
        .as_array()?
        .iter()
        .find(|n| n["type"] == "network")?["path"]
        .as_str()
        .map(PathBuf::from)
}

/// `status.network.ip`.
pub fn sandbox_ip(status: &Value) -> String {
    status["status"]["network"]["ip"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}
