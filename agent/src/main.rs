//! `plexus-agent`: CLI of the node agent. Parses flags (each also settable
//! by an environment variable), builds the real seams and calls the library.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use plexus_agent::daemon::{self, DaemonConfig};
use plexus_agent::deviceplugin::{DevicePluginConfig, DEFAULT_RESOURCE};
use plexus_agent::hostroot;
use plexus_agent::install::{InstallConfig, Installer, DEFAULT_BINARIES, DEFAULT_CONF_NAME};
use plexus_agent::inventory::{self, CniCacheLocations};
use plexus_agent::metrics::Metrics;
use plexus_agent::reconcile::{self, ReconcileConfig};
use plexus_agent::repair::{
    apply_repair, known_vfs, plan_repair, read_records, NetlinkRepair, RepairOps,
    HOST_DEVICE_STATE_DIR, META_CACHE_DIR,
};
use plexus_agent::status;
use plexus_agent::uninstall::{self, Verdict};
use plexus_agent::vnic::{self, netns_path, Mode, NetlinkOps, VnicConfig};
use plexus_imds::node_state::{NodeState, DEFAULT_STATE_PATH};
use plexus_imds::{ClientConfig, OciImds, DEFAULT_BASE_URL};

#[derive(Parser, Debug)]
#[command(name = "plexus-agent", version = plexus_buildinfo::LONG, about = "Plexus node agent")]
struct Cli {
    #[command(flatten)]
    paths: Paths,
    #[command(subcommand)]
    cmd: Cmd,
}

/// Paths and endpoints shared by the subcommands.
#[derive(Args, Debug, Clone)]
struct Paths {
    /// Filesystem root holding the host's sys/ [default: /]; /host in the
    /// DaemonSet, which mounts the host's /sys at /host/sys.
    #[arg(long, env = "PLEXUS_HOST_ROOT", value_name = "DIR", global = true)]
    host_root: Option<PathBuf>,
    /// Deprecated: the sysfs mount itself, e.g. /host/sys (its last
    /// component must be `sys`); the root is its parent. Use --host-root.
    #[arg(long, env = "PLEXUS_SYSFS_ROOT", value_name = "DIR", global = true)]
    sysfs_root: Option<PathBuf>,
    /// Instance metadata base URL.
    #[arg(long, env = "PLEXUS_IMDS_URL", default_value = DEFAULT_BASE_URL, global = true)]
    imds_url: String,
    /// Node state file read by the vnic IPAM plugin.
    #[arg(long, env = "PLEXUS_STATE_FILE", default_value = DEFAULT_STATE_PATH, global = true)]
    state_file: PathBuf,
    /// Host CNI bin dir as mounted here.
    #[arg(
        long,
        env = "PLEXUS_CNI_BIN_DIR",
        default_value = "/opt/cni/bin",
        global = true
    )]
    cni_bin_dir: PathBuf,
    /// Host CNI conf dir as mounted here.
    #[arg(
        long,
        env = "PLEXUS_CNI_CONF_DIR",
        default_value = "/etc/cni/net.d",
        global = true
    )]
    cni_conf_dir: PathBuf,
    /// The CNI conf dir as the host sees it (paths written into configs).
    #[arg(
        long,
        env = "PLEXUS_HOST_CNI_CONF_DIR",
        default_value = "/etc/cni/net.d",
        global = true
    )]
    host_cni_conf_dir: PathBuf,
    /// host-device's per-attachment state files.
    #[arg(long, env = "PLEXUS_HOST_DEVICE_DIR", default_value = HOST_DEVICE_STATE_DIR, global = true)]
    host_device_dir: PathBuf,
    /// The meta plugin's cache dir.
    #[arg(long, env = "PLEXUS_META_CACHE_DIR", default_value = META_CACHE_DIR, global = true)]
    meta_cache_dir: PathBuf,
    /// The kubelet's root dir; the device-plugin dir and the PodResources
    /// socket follow from it (mounted at the same path in the DaemonSet).
    #[arg(
        long,
        env = "PLEXUS_KUBELET_ROOT",
        default_value = "/var/lib/kubelet",
        global = true
    )]
    kubelet_root: PathBuf,
    /// Network namespace (name under /run/netns or a path) to act in
    /// instead of the current one.
    #[arg(long, env = "PLEXUS_NETNS", global = true)]
    netns: Option<String>,
    #[command(flatten)]
    vnic: VnicFlags,
}

#[derive(Args, Debug, Clone)]
struct VnicFlags {
    /// Routing table of the VNIC at IMDS index i is table_base + i.
    #[arg(long, env = "PLEXUS_TABLE_BASE", default_value_t = 100, global = true)]
    table_base: u32,
    /// Priority of the `from <ip>` rules (the metadata guard uses one less).
    #[arg(
        long,
        env = "PLEXUS_RULE_PRIORITY",
        default_value_t = 1000,
        global = true
    )]
    rule_priority: u32,
    /// MTU of secondary VNIC links.
    #[arg(long, env = "PLEXUS_MTU", default_value_t = 9000, global = true)]
    mtu: u32,
}

#[derive(Args, Debug, Clone)]
struct InstallFlags {
    /// Where the image keeps the binaries to install.
    #[arg(long, env = "PLEXUS_SOURCE_BIN_DIR", default_value = "/usr/local/bin")]
    source_bin_dir: PathBuf,
    /// Name of the meta plugin's config in the conf dir.
    #[arg(long, env = "PLEXUS_CONF_NAME", default_value = DEFAULT_CONF_NAME)]
    conf_name: String,
    /// Projected service-account token to keep copied.
    #[arg(
        long,
        env = "PLEXUS_TOKEN_FILE",
        default_value = "/var/run/secrets/kubernetes.io/serviceaccount/token"
    )]
    token_file: PathBuf,
    /// Cluster CA of the service account.
    #[arg(
        long,
        env = "PLEXUS_CA_FILE",
        default_value = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"
    )]
    ca_file: PathBuf,
    /// API server URL; default from KUBERNETES_SERVICE_HOST/PORT.
    #[arg(long, env = "PLEXUS_API_SERVER")]
    api_server: Option<String>,
    /// Primary network's readiness file the meta plugin waits for.
    #[arg(long, env = "PLEXUS_READINESS_INDICATOR_FILE")]
    readiness_indicator_file: Option<PathBuf>,
    /// Written when install completed (DaemonSet readiness probe).
    #[arg(long, env = "PLEXUS_READY_FILE", default_value = "/run/plexus/ready")]
    ready_file: PathBuf,
    /// PodResources socket as the host sees it [default: <kubelet-root>/pod-resources/kubelet.sock].
    #[arg(long, env = "PLEXUS_POD_RESOURCES_SOCKET")]
    pod_resources_socket: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct UninstallFlags {
    #[command(flatten)]
    install: InstallFlags,
    #[arg(long)]
    json: bool,
    /// After uninstalling, write this file and wait for SIGTERM (a
    /// DaemonSet pod must keep running; the file is its readiness).
    #[arg(long, env = "PLEXUS_UNINSTALL_DONE_FILE")]
    wait_with_done_file: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Install binaries, meta config, kubeconfig and token once.
    Install(InstallFlags),
    /// Run the agent: install watch, reconcile loop, device plugin, metrics.
    Run(RunFlags),
    /// Remove Plexus from this node: conflist, binaries, kubeconfig, token,
    /// ready file, VNIC configuration and state file.
    Uninstall(UninstallFlags),
    /// Secondary VNIC host configuration.
    Vnic {
        #[command(subcommand)]
        cmd: VnicCmd,
    },
    /// One row per device: interface, PCI, MAC, VNIC, IP, where it is now.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Rename stranded VFs back, restore them, collect dead pods' records.
    Repair {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
enum VnicCmd {
    /// Show what apply would change; changes nothing.
    Plan {
        #[arg(long)]
        json: bool,
    },
    /// Configure secondary VNICs (idempotent) and write the node state file.
    Apply {
        #[arg(long)]
        json: bool,
    },
    /// Remove exactly what apply added.
    Deconfigure {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args, Debug)]
struct RunFlags {
    #[command(flatten)]
    install: InstallFlags,
    /// Do not install/watch CNI files (e.g. managed elsewhere).
    #[arg(long, env = "PLEXUS_NO_INSTALL")]
    no_install: bool,
    /// Seconds between reconcile passes.
    #[arg(long, env = "PLEXUS_INTERVAL", default_value_t = 10)]
    interval: u64,
    /// Seconds between install/token checks.
    #[arg(long, env = "PLEXUS_INSTALL_INTERVAL", default_value_t = 2)]
    install_interval: u64,
    /// Device plugin dir (holds kubelet.sock) [default: <kubelet-root>/device-plugins].
    #[arg(long, env = "PLEXUS_DEVICE_PLUGIN_DIR")]
    device_plugin_dir: Option<PathBuf>,
    /// Our DaemonSet's name and namespace: on SIGTERM the agent asks the
    /// API for it and uninstalls only when it is being removed.
    #[arg(long, env = "PLEXUS_DAEMONSET", requires = "namespace")]
    daemonset: Option<String>,
    #[arg(long, env = "POD_NAMESPACE")]
    namespace: Option<String>,
    /// Device-info root written at Allocate; empty disables.
    #[arg(
        long,
        env = "PLEXUS_DEVICE_INFO_DIR",
        default_value = "/var/run/k8s.cni.cncf.io/devinfo"
    )]
    device_info_dir: String,
    /// Extended resource name of the VFs.
    #[arg(long, env = "PLEXUS_RESOURCE_NAME", default_value = DEFAULT_RESOURCE)]
    resource_name: String,
    /// Do not serve the device plugin.
    #[arg(long, env = "PLEXUS_NO_DEVICE_PLUGIN")]
    no_device_plugin: bool,
    /// Address of the /metrics endpoint; empty disables it.
    #[arg(long, env = "PLEXUS_METRICS_ADDR", default_value = "0.0.0.0:9120")]
    metrics_addr: String,
}

/// The one place that writes to stdout: command results (tables, JSON).
#[allow(clippy::print_stdout)]
fn emit(text: &str) {
    print!("{text}");
    if !text.ends_with('\n') {
        println!();
    }
}

fn json<T: serde::Serialize>(v: &T) -> Result<String> {
    Ok(serde_json::to_string_pretty(v)?)
}

impl Paths {
    /// The root sysfs is read under (see `plexus_agent::hostroot`).
    fn host_root(&self) -> Result<PathBuf> {
        let root = hostroot::resolve(self.host_root.as_deref(), self.sysfs_root.as_deref())?;
        if let Some(sys) = self
            .sysfs_root
            .as_deref()
            .filter(|_| self.host_root.is_none())
        {
            // The old flag's fixtures held sys/ one level down: fail, never
            // silently discover nothing.
            if !sys.join("class/net").is_dir() {
                bail!(
                    "--sysfs-root {}: no class/net under it, so it is not a sysfs mount; \
                     use --host-root (PLEXUS_HOST_ROOT) for the directory holding sys/",
                    sys.display()
                );
            }
            tracing::warn!(sysfs_root = %sys.display(), host_root = %root.display(),
                "--sysfs-root (PLEXUS_SYSFS_ROOT) is deprecated; use --host-root (PLEXUS_HOST_ROOT)");
        }
        Ok(root)
    }
    fn netns(&self) -> Option<PathBuf> {
        self.netns.as_deref().map(netns_path)
    }
    fn vnic_config(&self) -> VnicConfig {
        VnicConfig {
            table_base: self.vnic.table_base,
            rule_priority: self.vnic.rule_priority,
            mtu: self.vnic.mtu,
        }
    }
    fn imds(&self) -> ClientConfig {
        ClientConfig {
            base_url: self.imds_url.trim_end_matches('/').to_string(),
            ..ClientConfig::default()
        }
    }
    fn netlink(&self) -> Result<NetlinkOps> {
        Ok(match self.netns() {
            Some(p) => NetlinkOps::in_netns(&p)?,
            None => NetlinkOps::host()?,
        })
    }
    fn repair_ops(&self) -> Result<NetlinkRepair> {
        let handle = match self.netns() {
            Some(p) => plexus_netlink::Handle::open_in(&plexus_netns::NetNs::open(&p)?)?,
            None => plexus_netlink::Handle::new()?,
        };
        Ok(NetlinkRepair::new(handle))
    }
    fn install(&self, f: &InstallFlags) -> Result<InstallConfig> {
        let api_server = match &f.api_server {
            Some(s) => s.clone(),
            None => {
                let host = std::env::var("KUBERNETES_SERVICE_HOST")
                    .context("KUBERNETES_SERVICE_HOST unset; pass --api-server")?;
                let port =
                    std::env::var("KUBERNETES_SERVICE_PORT").unwrap_or_else(|_| "443".into());
                if host.contains(':') {
                    format!("https://[{host}]:{port}")
                } else {
                    format!("https://{host}:{port}")
                }
            }
        };
        Ok(InstallConfig {
            source_bin_dir: f.source_bin_dir.clone(),
            cni_bin_dir: self.cni_bin_dir.clone(),
            cni_conf_dir: self.cni_conf_dir.clone(),
            host_cni_conf_dir: self.host_cni_conf_dir.clone(),
            binaries: DEFAULT_BINARIES.iter().map(|s| s.to_string()).collect(),
            conf_name: f.conf_name.clone(),
            token_source: f.token_file.clone(),
            ca_source: f.ca_file.clone(),
            api_server,
            primary_readiness_file: f.readiness_indicator_file.clone(),
            ready_file: f.ready_file.clone(),
            pod_resources_socket: f
                .pod_resources_socket
                .clone()
                .unwrap_or_else(|| self.kubelet_root.join("pod-resources/kubelet.sock")),
        })
    }
    /// Takes Plexus off the node (see `plexus_agent::uninstall`).
    fn remove_node(&self, install: &InstallConfig) -> Result<uninstall::NodeRemoval> {
        let ops = self.netlink()?;
        let imds = OciImds::new(self.imds());
        let r = uninstall::remove_node(&uninstall::Removal {
            install,
            vnic: &self.vnic_config(),
            state_path: &self.state_file,
            ops: &ops,
            metadata: &imds,
        })?;
        tracing::info!(?r, "uninstalled");
        Ok(r)
    }
    fn reconcile(&self) -> Result<ReconcileConfig> {
        Ok(ReconcileConfig {
            vnic: self.vnic_config(),
            host_root: self.host_root()?,
            state_path: self.state_file.clone(),
            host_device_dir: self.host_device_dir.clone(),
            meta_cache_dir: self.meta_cache_dir.clone(),
        })
    }
    /// MACs host-device reports inside live pods.
    fn in_pod_macs(&self) -> BTreeSet<String> {
        read_records(&self.host_device_dir)
            .into_iter()
            .filter(|r| r.netns_alive)
            .filter_map(|r| r.mac)
            .collect()
    }
}

/// `vnic apply`: configure, then write the state file as `run` does.
fn cmd_vnic_apply(paths: &Paths, as_json: bool) -> Result<()> {
    let cfg = paths.reconcile()?;
    let imds = OciImds::new(paths.imds());
    let ops = paths.netlink()?;
    let r = reconcile::apply_once(&cfg, &imds, &ops, &Metrics::new())?;
    let written = r.state.as_ref().ok().copied();
    if as_json {
        emit(&json(&serde_json::json!({
            "plan": r.plan,
            "applied": r.applied.applied.len(),
            "failed": r.applied.failed.iter().map(|(a, e)| serde_json::json!({"action": a, "error": e})).collect::<Vec<_>>(),
            "state_file": {
                "path": cfg.state_path,
                "written": written,
                "error": r.state.as_ref().err().map(ToString::to_string),
            },
        }))?);
    } else {
        emit(&r.plan.render_table());
        emit(&format!(
            "applied {} action(s), {} failed",
            r.applied.applied.len(),
            r.applied.failed.len()
        ));
        emit(&format!(
            "state file {}: {}",
            cfg.state_path.display(),
            match &r.state {
                Ok(true) => "written".to_string(),
                Ok(false) => "unchanged".to_string(),
                Err(e) => format!("write failed: {e}"),
            }
        ));
    }
    r.applied.into_result()?;
    r.state.context("writing the node state file")?;
    Ok(())
}

fn cmd_vnic(paths: &Paths, cmd: &VnicCmd) -> Result<()> {
    let (mode, as_json) = match cmd {
        VnicCmd::Plan { json } => (Mode::Plan, *json),
        VnicCmd::Apply { json } => return cmd_vnic_apply(paths, *json),
        VnicCmd::Deconfigure { json } => (Mode::Deconfigure, *json),
    };
    let imds = OciImds::new(paths.imds());
    let ops = paths.netlink()?;
    let (plan, report) = vnic::run(
        mode,
        &paths.vnic_config(),
        &imds,
        &ops,
        &paths.in_pod_macs(),
    )?;
    if as_json {
        emit(&json(&serde_json::json!({
            "plan": plan,
            "applied": report.applied.len(),
            "failed": report.failed.iter().map(|(a, e)| serde_json::json!({"action": a, "error": e})).collect::<Vec<_>>(),
        }))?);
    } else {
        emit(&plan.render_table());
        if mode != Mode::Plan {
            emit(&format!(
                "applied {} action(s), {} failed",
                report.applied.len(),
                report.failed.len()
            ));
        }
    }
    report.into_result()?;
    Ok(())
}

fn cmd_repair(paths: &Paths, as_json: bool) -> Result<()> {
    let imds = OciImds::new(paths.imds());
    let vnics = plexus_imds::MetadataSource::vnics(&imds)?;
    let state = NodeState::read(&paths.state_file).ok().flatten();
    let ops = paths.repair_ops()?;
    let links = ops.links().map_err(anyhow::Error::msg)?;
    let plan = plan_repair(
        &links,
        &known_vfs(&vnics, state.as_ref()),
        &read_records(&paths.host_device_dir),
        &read_records(&paths.meta_cache_dir),
    );
    let failed = apply_repair(&ops, &plan);
    // Renamed VFs get their host configuration back through the VNIC path.
    let net = paths.netlink()?;
    let (_, restored) = vnic::run(
        Mode::Apply,
        &paths.vnic_config(),
        &imds,
        &net,
        &paths.in_pod_macs(),
    )?;
    if as_json {
        emit(&json(&serde_json::json!({
            "repair": plan,
            "failed": failed.iter().map(|(a, e)| serde_json::json!({"action": a, "error": e})).collect::<Vec<_>>(),
            "restored": restored.applied,
        }))?);
    } else {
        for a in &plan.actions {
            emit(&format!("{a:?}"));
        }
        for n in &plan.notes {
            emit(&format!("note: {}: {}", n.link, n.reason));
        }
        emit(&format!(
            "{} repair action(s), {} failed; {} VNIC action(s) to restore",
            plan.actions.len(),
            failed.len(),
            restored.applied.len()
        ));
    }
    if !failed.is_empty() {
        bail!("{} repair action(s) failed", failed.len());
    }
    restored.into_result()?;
    Ok(())
}

fn cmd_status(paths: &Paths, as_json: bool) -> Result<()> {
    let imds = OciImds::new(paths.imds());
    let previous = NodeState::read(&paths.state_file).ok().flatten();
    let caches = CniCacheLocations {
        host_device_dir: paths.host_device_dir.clone(),
        plexus_dir: paths.meta_cache_dir.clone(),
    };
    let inv = inventory::build(&paths.host_root()?, &imds, &caches, previous.as_ref())?;
    let agent = plexus_buildinfo::line("plexus-agent");
    emit(&if as_json {
        status::render_json(&inv, &agent)
    } else {
        status::render_table(&inv, &agent)
    });
    Ok(())
}

fn cmd_uninstall(paths: &Paths, f: &UninstallFlags) -> Result<()> {
    let mut flags = f.install.clone();
    // The uninstall makes no API call.
    flags.api_server.get_or_insert_with(String::new);
    let r = paths.remove_node(&paths.install(&flags)?)?;
    if f.json {
        emit(&json(&r)?);
    }
    let problems = r.problems();
    if !problems.is_empty() {
        bail!("uninstall incomplete: {}", problems.join("; "));
    }
    if let Some(done) = &f.wait_with_done_file {
        std::fs::write(done, b"uninstalled\n").with_context(|| done.display().to_string())?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(async {
            use tokio::signal::unix::{signal, SignalKind};
            signal(SignalKind::terminate())?.recv().await;
            std::io::Result::Ok(())
        })?;
    }
    Ok(())
}

/// On SIGTERM: uninstall only when the API says our DaemonSet is going.
fn after_stop(paths: &Paths, f: &RunFlags, install: &InstallConfig) -> Result<()> {
    let (Some(name), Some(ns)) = (&f.daemonset, &f.namespace) else {
        return Ok(());
    };
    let api = uninstall::owner_api(install);
    match uninstall::decide(&api, ns, name) {
        Verdict::Keep(why) => tracing::info!(%why, "stopping; node keeps Plexus"),
        Verdict::Remove(why) => {
            tracing::warn!(%why, "DaemonSet is being removed; uninstalling from this node");
            let problems = paths.remove_node(install)?.problems();
            if !problems.is_empty() {
                bail!("uninstall incomplete: {}", problems.join("; "));
            }
        }
    }
    Ok(())
}

fn cmd_run(paths: &Paths, f: &RunFlags) -> Result<()> {
    let install = if f.no_install {
        None
    } else {
        let inst = Installer::new(paths.install(&f.install)?);
        // Nothing changes on a node the agent cannot see (mounts missing).
        inst.preflight()?;
        inst.begin()?;
        Some(inst)
    };
    let metrics_addr: Option<SocketAddr> = if f.metrics_addr.is_empty() {
        None
    } else {
        Some(f.metrics_addr.parse().context("--metrics-addr")?)
    };
    let cfg = DaemonConfig {
        reconcile: paths.reconcile()?,
        imds: paths.imds(),
        netns: paths.netns(),
        install: install.clone(),
        device_plugin: (!f.no_device_plugin).then(|| {
            let dir = (f.device_plugin_dir.clone())
                .unwrap_or_else(|| paths.kubelet_root.join("device-plugins"));
            let mut dp = DevicePluginConfig::new(&f.resource_name, &dir);
            dp.devinfo_dir =
                (!f.device_info_dir.is_empty()).then(|| PathBuf::from(&f.device_info_dir));
            dp
        }),
        metrics_addr,
        interval: Duration::from_secs(f.interval.max(1)),
        install_interval: Duration::from_secs(f.install_interval.max(1)),
    };
    tracing::info!(?cfg, "starting");
    daemon::run(cfg, Arc::new(AtomicBool::new(false)))?;
    match &install {
        Some(inst) => after_stop(paths, f, inst.config()),
        None => Ok(()),
    }
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let cli = Cli::parse();
    match &cli.cmd {
        Cmd::Install(f) => {
            let inst = Installer::new(cli.paths.install(f)?);
            inst.preflight()?;
            inst.begin()?;
            let r = inst.sync()?;
            tracing::info!(?r, "installed");
            Ok(())
        }
        Cmd::Run(f) => cmd_run(&cli.paths, f),
        Cmd::Uninstall(f) => cmd_uninstall(&cli.paths, f),
        Cmd::Vnic { cmd } => cmd_vnic(&cli.paths, cmd),
        Cmd::Status { json } => cmd_status(&cli.paths, *json),
        Cmd::Repair { json } => cmd_repair(&cli.paths, *json),
    }
}
