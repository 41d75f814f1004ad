//! Starting the node's containerd: its config (CRI plugin, CNI dirs, runc,
//! metrics on the node's loopback), the process in the node's namespaces,
//! the pause image, and the wait for CRI readiness.

use std::fs;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::nodefs::MountNs;
use super::{
    assets, conditions_ready, metrics, run, RuntimeNode, PAUSE_IMAGE, PYTHON, START_TIMEOUT,
};

impl RuntimeNode {
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
            .arg(self.cri.pb_dir())
            .arg(assets.join("cri_min.proto")))
        .context("compiling cri_min.proto")?;
        let config = self.footprint.config();
        fs::write(&config, self.containerd_config())
            .with_context(|| format!("writing {}", config.display()))?;

        let log_path = self.work.join("logs/containerd.log");
        let log = fs::File::create(&log_path)
            .with_context(|| format!("creating {}", log_path.display()))?;
        let log_err = log.try_clone().context("dup log fd")?;
        let mut nsenter = Command::new("nsenter");
        if let Some(fs) = &self.node_fs {
            let mntns = MountNs::create(&self.work, fs).context("the node's mount namespace")?;
            nsenter.arg(format!("--mount={}", mntns.pin().display()));
            self.mntns = Some(mntns);
        }
        // nsenter execs containerd without forking (no PID namespace asked),
        // so the child's PID is containerd's. Its own process group keeps a
        // Ctrl-C of the test runner from reaching it before our teardown.
        let child = nsenter
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
        let pid = child.id();
        self.containerd = Some(child);
        self.footprint
            .write_containerd_pid(pid)
            .context("recording containerd's PID")?;

        let deadline = Instant::now() + START_TIMEOUT;
        while !self.cri.sock().exists() {
            self.check_alive()?;
            if Instant::now() > deadline {
                bail!("containerd socket never appeared; {}", self.log_tail());
            }
            sleep(Duration::from_millis(50));
        }
        run(Command::new("ctr")
            .arg("--address")
            .arg(self.cri.sock())
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

    /// containerd's CRI network-setup histogram (see [`metrics`]).
    pub fn network_setup_metric(&self) -> Result<metrics::Histogram> {
        let text = self.in_node_netns(|| metrics::scrape(metrics::METRICS_ADDR))??;
        metrics::histogram(&text, "sandbox_create_network")
    }

    /// containerd's config: version 2, everything it owns in the work dir.
    fn containerd_config(&self) -> String {
        let w = self.work.display();
        let metrics = metrics::METRICS_ADDR;
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
# On the node netns' loopback: per-sandbox CNI setup time (metrics.rs).
[metrics]
  address = "{metrics}"

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
}
