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
//! of this node's sandboxes, the node netns and the work dir removed.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use plexus_testkit::net::{self, TestNs};
use serde_json::{json, Value};

/// Name the locally built pause image is imported under. It needs a registry
/// part: a bare `plexus-e2e/pause` would be normalised to docker.io.
pub const PAUSE_IMAGE: &str = "localhost/plexus-e2e/pause:1.0";

/// Debian's python with `python3-grpcio`; a pyenv `python3` earlier on PATH
/// cannot import it.
const PYTHON: &str = "/usr/bin/python3";

/// How long containerd gets to become ready, and to exit on SIGTERM.
const START_TIMEOUT: Duration = Duration::from_secs(30);
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// `tests/runtime/`: pause.c, cri_min.proto, cri.py, pause_image.py.
fn assets() -> PathBuf {
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

/// `ip -j <args>` inside the network namespace at `netns` (a pod's
/// `/run/netns/cni-*` path), parsed. An empty answer is an empty array.
pub fn ip_json_at(netns: &Path, args: &[&str]) -> Result<Value> {
    let out = run(Command::new("nsenter")
        .arg(format!("--net={}", netns.display()))
        .arg("ip")
        .arg("-j")
        .args(args))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if text.trim().is_empty() {
        return Ok(Value::Array(Vec::new()));
    }
    serde_json::from_str(&text).with_context(|| format!("ip -j {args:?} printed {text}"))
}

/// The link named `dev` in the namespace at `netns` (`ip -d link` details
/// plus its `addr_info`), `None` if absent.
pub fn link_at(netns: &Path, dev: &str) -> Result<Option<Value>> {
    let links = ip_json_at(netns, &["-d", "addr", "show"])?;
    Ok(links
        .as_array()
        .and_then(|ls| ls.iter().find(|l| l["ifname"] == dev).cloned()))
}

/// The `local/prefixlen` IPv4 addresses of a link as `ip -j addr` shows it.
pub fn ipv4_addrs(link: &Value) -> Vec<String> {
    link["addr_info"]
        .as_array()
        .map(|infos| {
            infos
                .iter()
                .filter(|a| a["family"] == "inet")
                .map(|a| format!("{}/{}", a["local"].as_str().unwrap_or(""), a["prefixlen"]))
                .collect()
        })
        .unwrap_or_default()
}

/// A failed CRI call: the gRPC status code and containerd's message (for a
/// sandbox whose network setup failed it carries the CNI plugin's error).
#[derive(Debug, Clone)]
pub struct CriError {
    pub message: String,
}

impl std::fmt::Display for CriError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CriError {}

/// The minimal CRI client (`tests/runtime/cri.py`), one process per call.
#[derive(Debug, Clone)]
pub struct Cri {
    sock: PathBuf,
    pb_dir: PathBuf,
}

impl Cri {
    /// Runs one client command; stdout is one JSON document.
    pub fn call(&self, args: &[&str], stdin: Option<&Value>) -> Result<Value, CriError> {
        let mut cmd = Command::new(PYTHON);
        cmd.arg(assets().join("cri.py"))
            .arg("--sock")
            .arg(&self.sock)
            .arg("--pb-dir")
            .arg(&self.pb_dir)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let fail = |message: String| CriError { message };
        let mut child = cmd
            .spawn()
            .map_err(|e| fail(format!("cannot run {PYTHON} cri.py: {e}")))?;
        if let Some(mut input) = child.stdin.take() {
            if let Some(v) = stdin {
                input
                    .write_all(v.to_string().as_bytes())
                    .map_err(|e| fail(format!("writing cri.py stdin: {e}")))?;
            }
        }
        let out = child
            .wait_with_output()
            .map_err(|e| fail(format!("waiting for cri.py: {e}")))?;
        if !out.status.success() {
            return Err(fail(format!(
                "cri.py {} ({}): {}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        serde_json::from_slice(&out.stdout).map_err(|e| {
            fail(format!(
                "cri.py {} printed invalid JSON ({e}): {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stdout)
            ))
        })
    }

    /// CRI `Status`: conditions and, verbose, the loaded CNI config.
    pub fn status(&self) -> Result<Value, CriError> {
        self.call(&["status"], None)
    }

    /// Ids of all sandboxes the runtime knows, in any state.
    pub fn sandbox_ids(&self) -> Result<Vec<String>, CriError> {
        let pods = self.call(&["pods"], None)?;
        Ok(pods["items"]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .filter_map(|p| p["id"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default())
    }

    pub fn run_pod(&self, config: &Value) -> Result<String, CriError> {
        let out = self.call(&["runp"], Some(config))?;
        out["id"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| CriError {
                message: format!("RunPodSandbox answered without an id: {out}"),
            })
    }

    /// Verbose `PodSandboxStatus`, with `info` decoded.
    pub fn inspect(&self, id: &str) -> Result<Value, CriError> {
        self.call(&["inspectp", id], None)
    }

    pub fn stop(&self, id: &str) -> Result<(), CriError> {
        self.call(&["stopp", id], None).map(|_| ())
    }

    pub fn remove(&self, id: &str) -> Result<(), CriError> {
        self.call(&["rmp", id], None).map(|_| ())
    }
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
    work: PathBuf,
    /// Drops (deleting the namespace and every link in it) after `drop`.
    node: TestNs,
    cgroup_parent: String,
    containerd: Option<Child>,
    cri: Cri,
    /// Every sandbox this node created, for teardown even when CRI is gone.
    sandboxes: Mutex<Vec<Sandbox>>,
    torn_down: bool,
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
        let node = TestNs::new("plxnode");
        let work = PathBuf::from(format!("/var/tmp/plexus-rt-{}", node.name()));
        let cgroup_parent = format!("/plexus-rt-{}", node.name());
        let cri = Cri {
            sock: work.join("containerd.sock"),
            pb_dir: work.join("cri"),
        };
        let this = Self {
            work,
            node,
            cgroup_parent,
            containerd: None,
            cri,
            sandboxes: Mutex::new(Vec::new()),
            torn_down: false,
        };
        for dir in ["cni/bin", "cni/net.d", "cri", "logs"] {
            fs::create_dir_all(this.work.join(dir))
                .with_context(|| format!("creating {}", this.work.join(dir).display()))?;
        }
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

    /// Builds the pause image, writes containerd's config, starts containerd
    /// in the node netns, imports the image and waits for CRI RuntimeReady and
    /// NetworkReady (the latter means containerd loaded a CNI config).
    pub fn start(&mut self) -> Result<()> {
        let assets = assets();
        let image = self.work.join("pause-oci.tar");
        run(Command::new(PYTHON)
            .arg(assets.join("pause_image.py"))
            .arg(assets.join("pause.c"))
            .arg(&image)
            .arg(PAUSE_IMAGE))
        .context("building the pause image")?;
        run(Command::new("protoc")
            .arg("-I")
            .arg(&assets)
            .arg("--python_out")
            .arg(&self.cri.pb_dir)
            .arg(assets.join("cri_min.proto")))
        .context("compiling cri_min.proto")?;
        let config = self.work.join("containerd.toml");
        fs::write(&config, self.containerd_config())
            .with_context(|| format!("writing {}", config.display()))?;

        let log_path = self.work.join("logs/containerd.log");
        let log = fs::File::create(&log_path)
            .with_context(|| format!("creating {}", log_path.display()))?;
        let log_err = log.try_clone().context("dup log fd")?;
        // nsenter execs containerd without forking (no PID namespace asked),
        // so the child's PID is containerd's. Its own process group keeps a
        // Ctrl-C of the test runner from reaching it before our teardown.
        let child = Command::new("nsenter")
            .arg(format!("--net={}", self.node.path().display()))
            .arg("containerd")
            .arg("--config")
            .arg(&config)
            .env_clear()
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .env("HOME", &self.work)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .process_group(0)
            .spawn()
            .context("starting containerd")?;
        self.containerd = Some(child);

        let deadline = Instant::now() + START_TIMEOUT;
        while !self.cri.sock.exists() {
            self.check_alive()?;
            if Instant::now() > deadline {
                bail!("containerd socket never appeared; {}", self.log_tail());
            }
            sleep(Duration::from_millis(50));
        }
        run(Command::new("ctr")
            .arg("--address")
            .arg(&self.cri.sock)
            .args(["--namespace", "k8s.io", "images", "import"])
            .args(["--platform", "linux/amd64"])
            .arg(&image))
        .context("importing the pause image")?;

        loop {
            self.check_alive()?;
            let last = match self.cri.status() {
                Ok(status) if conditions_ready(&status) => return Ok(()),
                Ok(status) => status.to_string(),
                Err(e) => e.to_string(),
            };
            if Instant::now() > deadline {
                bail!("CRI not ready: {last}; {}", self.log_tail());
            }
            sleep(Duration::from_millis(100));
        }
    }

    fn check_alive(&mut self) -> Result<()> {
        if let Some(child) = self.containerd.as_mut() {
            if let Some(status) = child.try_wait().context("polling containerd")? {
                let tail = self.log_tail();
                self.containerd = None;
                bail!("containerd exited ({status}); {tail}");
            }
        }
        Ok(())
    }

    /// The last lines of containerd's log, for failure messages.
    pub fn log_tail(&self) -> String {
        let text = fs::read_to_string(self.work.join("logs/containerd.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let from = lines.len().saturating_sub(30);
        format!("containerd log (tail):\n{}", lines[from..].join("\n"))
    }

    /// containerd's config: version 2, everything it owns in the work dir.
    fn containerd_config(&self) -> String {
        let w = self.work.display();
        let cri = r#"plugins."io.containerd.grpc.v1.cri""#;
        format!(
            r#"version = 2
root = "{w}/root"
state = "{w}/state"
# Plugins that cannot work here (or phone home) only add noise to the log.
disabled_plugins = [
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing",
]

[grpc]
  address = "{w}/containerd.sock"
[ttrpc]
  address = "{w}/containerd.sock.ttrpc"

[plugins]
  # Else it creates /opt/containerd.
  [plugins."io.containerd.internal.v1.opt"]
    path = "{w}/opt"
  [{cri}]
    sandbox_image = "{PAUSE_IMAGE}"
    disable_apparmor = true
    # CRI asks for oom_score_adj -998 for the sandbox; root here lacks
    # CAP_SYS_RESOURCE, and runc then fails with the unhelpful "can't get
    # final child's PID from pipe: EOF".
    restrict_oom_score_adj = true
    [{cri}.cni]
      bin_dir = "{w}/cni/bin"
      conf_dir = "{w}/cni/net.d"
      # Like kubelet nodes: only the lexically first config is used.
      max_conf_num = 1
    [{cri}.containerd]
      snapshotter = "overlayfs"
      default_runtime_name = "runc"
      [{cri}.containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"
        [{cri}.containerd.runtimes.runc.options]
          BinaryName = "/usr/sbin/runc"
          # Else runc state goes to the shared /run/containerd/runc.
          Root = "{w}/runc"
          SystemdCgroup = false
"#
        )
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
                "cgroup_parent": format!("{}/pod{}", self.cgroup_parent, pod.uid),
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
            Ok(s) => (sandbox_netns(s).unwrap_or_default(), sandbox_ip(s)),
            Err(_) => (PathBuf::new(), String::new()),
        };
        let sandbox = Sandbox { id, netns, ip };
        if let Ok(mut all) = self.sandboxes.lock() {
            all.push(sandbox.clone());
        }
        status?;
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
        // Shims re-parent to PID 1 and may outlive containerd; pause
        // processes too if a sandbox could not be stopped. Only ours: shims
        // named by our socket, processes in our cgroup parent. A shim of a
        // removed sandbox exits by itself shortly: give it that time first.
        let deadline = Instant::now() + Duration::from_secs(3);
        while !self.stray_processes().is_empty() && Instant::now() < deadline {
            sleep(Duration::from_millis(50));
        }
        for pid in self.stray_processes() {
            errors.push(format!("killed stray process {pid}"));
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        self.unmount_under_work(&mut errors);
        let sandboxes = self.sandboxes.lock().map(|s| s.clone()).unwrap_or_default();
        for sb in &sandboxes {
            if !sb.netns.as_os_str().is_empty() && sb.netns.exists() {
                errors.push(format!("pod netns {} left behind", sb.netns.display()));
                let _ = Command::new("umount").arg(&sb.netns).status();
                let _ = fs::remove_file(&sb.netns);
            }
            // libcni's result cache: /var/lib/cni/results/<net>-<id>-<ifname>.
            if let Ok(entries) = fs::read_dir("/var/lib/cni/results") {
                for e in entries.flatten() {
                    if e.file_name().to_string_lossy().contains(&sb.id) {
                        let _ = fs::remove_file(e.path());
                    }
                }
            }
        }
        self.remove_cgroups(&mut errors);
        // Shared with any other containerd: removed only when left empty.
        for dir in [
            "/run/containerd/s",
            "/run/containerd",
            "/var/lib/cni/results",
            "/var/lib/cni",
        ] {
            let _ = fs::remove_dir(dir);
        }
        if let Err(e) = fs::remove_dir_all(&self.work) {
            if self.work.exists() {
                errors.push(format!("removing {}: {e}", self.work.display()));
            }
        }
        errors
    }

    /// PIDs of shims serving our socket and processes in our pod cgroups.
    fn stray_processes(&self) -> Vec<i32> {
        let sock = self.cri.sock.display().to_string();
        let cgroup = format!(":{}/", self.cgroup_parent);
        let mut pids = Vec::new();
        let Ok(procs) = fs::read_dir("/proc") else {
            return pids;
        };
        for entry in procs.flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let cmdline = fs::read(entry.path().join("cmdline")).unwrap_or_default();
            let args: Vec<String> = cmdline
                .split(|b| *b == 0)
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            let our_shim = args.windows(2).any(|w| w[0] == "-address" && w[1] == sock);
            let in_cgroup = fs::read_to_string(entry.path().join("cgroup"))
                .map(|c| c.contains(&cgroup))
                .unwrap_or(false);
            if our_shim || in_cgroup {
                pids.push(pid);
            }
        }
        pids
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
            let _ = Command::new("umount").arg("-l").arg(p).status();
        }
    }

    /// Removes this node's cgroup parent in every hierarchy, children first.
    /// (On a real node kubelet removes pod cgroups; here nobody else would.)
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

/// rmdir a cgroup directory tree bottom-up (cgroupfs only allows rmdir of
/// empty groups; the control files vanish with the directory).
fn remove_cgroup_tree(dir: &Path) -> std::io::Result<()> {
    for e in fs::read_dir(dir)?.flatten() {
        if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            remove_cgroup_tree(&e.path())?;
        }
    }
    fs::remove_dir(dir)
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
    pub fn shutdown(mut self) -> Result<()> {
        let errors = self.teardown();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(anyhow!("teardown had to clean up: {}", errors.join("; ")))
        }
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
