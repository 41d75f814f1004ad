//! Flags of `plexus-agent` (each also settable by an environment variable)
//! and the real seams built from them: the metadata source, netlink handles,
//! the CNI cache locations, and the library's configs.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::Args;
use plexus_agent::caches::{CniCacheLocations, HOST_DEVICE_DIR, META_CACHE_DIR};
use plexus_agent::deviceplugin::DEFAULT_RESOURCE;
use plexus_agent::hostroot;
use plexus_agent::install::{InstallConfig, DEFAULT_BINARIES, DEFAULT_CONF_NAME};
use plexus_agent::reconcile::ReconcileConfig;
use plexus_agent::repair::NetlinkRepair;
use plexus_agent::vnic::{netns_path, NetlinkOps, VnicConfig};
use plexus_imds::node_state::DEFAULT_STATE_PATH;
use plexus_imds::{ClientConfig, MetadataSource, NoopObserver, DEFAULT_BASE_URL};

#[derive(Args, Debug, Clone)]
pub(crate) struct Paths {
    /// Filesystem root holding the host's sys/ [default: /]; /host in the
    /// DaemonSet, which mounts the host's /sys at /host/sys.
    #[arg(long, env = "PLEXUS_HOST_ROOT", value_name = "DIR", global = true)]
    pub(crate) host_root: Option<PathBuf>,
    /// Deprecated: the sysfs mount itself, e.g. /host/sys (its last
    /// component must be `sys`); the root is its parent. Use --host-root.
    #[arg(long, env = "PLEXUS_SYSFS_ROOT", value_name = "DIR", global = true)]
    pub(crate) sysfs_root: Option<PathBuf>,
    /// Instance metadata base URL.
    #[arg(long, env = "PLEXUS_IMDS_URL", default_value = DEFAULT_BASE_URL, global = true)]
    pub(crate) imds_url: String,
    /// Node state file read by the vnic IPAM plugin.
    #[arg(long, env = "PLEXUS_STATE_FILE", default_value = DEFAULT_STATE_PATH, global = true)]
    pub(crate) state_file: PathBuf,
    /// Host CNI bin dir as mounted here.
    #[arg(
        long,
        env = "PLEXUS_CNI_BIN_DIR",
        default_value = "/opt/cni/bin",
        global = true
    )]
    pub(crate) cni_bin_dir: PathBuf,
    /// Host CNI conf dir as mounted here.
    #[arg(
        long,
        env = "PLEXUS_CNI_CONF_DIR",
        default_value = "/etc/cni/net.d",
        global = true
    )]
    pub(crate) cni_conf_dir: PathBuf,
    /// The CNI conf dir as the host sees it (paths written into configs).
    #[arg(
        long,
        env = "PLEXUS_HOST_CNI_CONF_DIR",
        default_value = "/etc/cni/net.d",
        global = true
    )]
    pub(crate) host_cni_conf_dir: PathBuf,
    /// host-device's per-attachment state files.
    #[arg(long, env = "PLEXUS_HOST_DEVICE_DIR", default_value = HOST_DEVICE_DIR, global = true)]
    pub(crate) host_device_dir: PathBuf,
    /// The meta plugin's cache dir.
    #[arg(long, env = "PLEXUS_META_CACHE_DIR", default_value = META_CACHE_DIR, global = true)]
    pub(crate) meta_cache_dir: PathBuf,
    /// The kubelet's root dir; the device-plugin dir and the PodResources
    /// socket follow from it (mounted at the same path in the DaemonSet).
    #[arg(
        long,
        env = "PLEXUS_KUBELET_ROOT",
        default_value = "/var/lib/kubelet",
        global = true
    )]
    pub(crate) kubelet_root: PathBuf,
    /// Network namespace (name under /run/netns or a path) to act in
    /// instead of the current one.
    #[arg(long, env = "PLEXUS_NETNS", global = true)]
    pub(crate) netns: Option<String>,
    #[command(flatten)]
    pub(crate) vnic: VnicFlags,
}

#[derive(Args, Debug, Clone)]
pub(crate) struct VnicFlags {
    /// Routing table of the VNIC at IMDS index i is table_base + i.
    #[arg(long, env = "PLEXUS_TABLE_BASE", default_value_t = 100, global = true)]
    pub(crate) table_base: u32,
    /// Priority of the `from <ip>` rules (the metadata guard uses one less).
    #[arg(
        long,
        env = "PLEXUS_RULE_PRIORITY",
        default_value_t = 1000,
        global = true
    )]
    pub(crate) rule_priority: u32,
    /// MTU of secondary VNIC links.
    #[arg(long, env = "PLEXUS_MTU", default_value_t = 9000, global = true)]
    pub(crate) mtu: u32,
}

/// Written by install, checked by `ready` (the DaemonSet's readiness probe).
pub(crate) const DEFAULT_READY_FILE: &str = "/run/plexus/ready";

#[derive(Args, Debug, Clone)]
pub(crate) struct InstallFlags {
    /// Where the image keeps the binaries to install.
    #[arg(long, env = "PLEXUS_SOURCE_BIN_DIR", default_value = "/usr/local/bin")]
    pub(crate) source_bin_dir: PathBuf,
    /// Name of the meta plugin's config in the conf dir.
    #[arg(long, env = "PLEXUS_CONF_NAME", default_value = DEFAULT_CONF_NAME)]
    pub(crate) conf_name: String,
    /// Projected service-account token to keep copied.
    #[arg(
        long,
        env = "PLEXUS_TOKEN_FILE",
        default_value = "/var/run/secrets/kubernetes.io/serviceaccount/token"
    )]
    pub(crate) token_file: PathBuf,
    /// Cluster CA of the service account.
    #[arg(
        long,
        env = "PLEXUS_CA_FILE",
        default_value = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"
    )]
    pub(crate) ca_file: PathBuf,
    /// API server URL; default from KUBERNETES_SERVICE_HOST/PORT.
    #[arg(long, env = "PLEXUS_API_SERVER")]
    pub(crate) api_server: Option<String>,
    /// Primary network's readiness file the meta plugin waits for.
    #[arg(long, env = "PLEXUS_READINESS_INDICATOR_FILE")]
    pub(crate) readiness_indicator_file: Option<PathBuf>,
    /// Written when install completed (DaemonSet readiness probe).
    #[arg(long, env = "PLEXUS_READY_FILE", default_value = DEFAULT_READY_FILE)]
    pub(crate) ready_file: PathBuf,
    /// PodResources socket as the host sees it [default: <kubelet-root>/pod-resources/kubelet.sock].
    #[arg(long, env = "PLEXUS_POD_RESOURCES_SOCKET")]
    pub(crate) pod_resources_socket: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub(crate) struct UninstallFlags {
    #[command(flatten)]
    pub(crate) install: InstallFlags,
    #[arg(long)]
    pub(crate) json: bool,
    /// After uninstalling, write this file and wait for SIGTERM (a
    /// DaemonSet pod must keep running; the file is its readiness).
    #[arg(long, env = "PLEXUS_UNINSTALL_DONE_FILE")]
    pub(crate) wait_with_done_file: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub(crate) struct RunFlags {
    #[command(flatten)]
    pub(crate) install: InstallFlags,
    /// Do not install/watch CNI files (e.g. managed elsewhere).
    #[arg(long, env = "PLEXUS_NO_INSTALL")]
    pub(crate) no_install: bool,
    /// Seconds between reconcile passes.
    #[arg(long, env = "PLEXUS_INTERVAL", default_value_t = 10)]
    pub(crate) interval: u64,
    /// Seconds between install/token checks.
    #[arg(long, env = "PLEXUS_INSTALL_INTERVAL", default_value_t = 2)]
    pub(crate) install_interval: u64,
    /// Device plugin dir (holds kubelet.sock) [default: <kubelet-root>/device-plugins].
    #[arg(long, env = "PLEXUS_DEVICE_PLUGIN_DIR")]
    pub(crate) device_plugin_dir: Option<PathBuf>,
    /// Our DaemonSet's name and namespace: on SIGTERM the agent asks the
    /// API for it and uninstalls only when it is being removed.
    #[arg(long, env = "PLEXUS_DAEMONSET", requires = "namespace")]
    pub(crate) daemonset: Option<String>,
    #[arg(long, env = "POD_NAMESPACE")]
    pub(crate) namespace: Option<String>,
    /// Device-info root written at Allocate; empty disables.
    #[arg(
        long,
        env = "PLEXUS_DEVICE_INFO_DIR",
        default_value = "/var/run/k8s.cni.cncf.io/devinfo"
    )]
    pub(crate) device_info_dir: String,
    /// Extended resource name of the VFs.
    #[arg(long, env = "PLEXUS_RESOURCE_NAME", default_value = DEFAULT_RESOURCE)]
    pub(crate) resource_name: String,
    /// Do not serve the device plugin.
    #[arg(long, env = "PLEXUS_NO_DEVICE_PLUGIN")]
    pub(crate) no_device_plugin: bool,
    /// Address of the /metrics endpoint; empty disables it.
    #[arg(long, env = "PLEXUS_METRICS_ADDR", default_value = "0.0.0.0:9120")]
    pub(crate) metrics_addr: String,
}

impl Paths {
    /// The root sysfs is read under (see `plexus_agent::hostroot`).
    pub(crate) fn host_root(&self) -> Result<PathBuf> {
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
    pub(crate) fn netns(&self) -> Option<PathBuf> {
        self.netns.as_deref().map(netns_path)
    }
    pub(crate) fn vnic_config(&self) -> VnicConfig {
        VnicConfig {
            table_base: self.vnic.table_base,
            rule_priority: self.vnic.rule_priority,
            mtu: self.vnic.mtu,
        }
    }
    /// This node's metadata source (the provider is chosen by
    /// `plexus_imds::connect`); one-shot commands are not counted in metrics.
    pub(crate) fn metadata(&self) -> Box<dyn MetadataSource> {
        plexus_imds::connect(self.imds(), Arc::new(NoopObserver))
    }
    pub(crate) fn imds(&self) -> ClientConfig {
        ClientConfig {
            base_url: self.imds_url.trim_end_matches('/').to_string(),
            ..ClientConfig::default()
        }
    }
    pub(crate) fn netlink(&self) -> Result<NetlinkOps> {
        Ok(match self.netns() {
            Some(p) => NetlinkOps::in_netns(&p)?,
            None => NetlinkOps::host()?,
        })
    }
    pub(crate) fn repair_ops(&self) -> Result<NetlinkRepair> {
        let handle = match self.netns() {
            Some(p) => plexus_netlink::Handle::open_in(&plexus_netns::NetNs::open(&p)?)?,
            None => plexus_netlink::Handle::new()?,
        };
        Ok(NetlinkRepair::new(handle))
    }
    pub(crate) fn install(&self, f: &InstallFlags) -> Result<InstallConfig> {
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
    /// The device-plugin dir: the flag, or the kubelet root's.
    pub(crate) fn device_plugin_dir(&self, f: &RunFlags) -> PathBuf {
        (f.device_plugin_dir.clone()).unwrap_or_else(|| self.kubelet_root.join("device-plugins"))
    }
    pub(crate) fn reconcile(&self) -> Result<ReconcileConfig> {
        Ok(ReconcileConfig {
            vnic: self.vnic_config(),
            host_root: self.host_root()?,
            state_path: self.state_file.clone(),
            host_device_dir: self.host_device_dir.clone(),
            meta_cache_dir: self.meta_cache_dir.clone(),
        })
    }
    pub(crate) fn caches(&self) -> CniCacheLocations {
        CniCacheLocations {
            host_device_dir: self.host_device_dir.clone(),
            plexus_dir: self.meta_cache_dir.clone(),
        }
    }
    /// MACs host-device reports inside live pods.
    pub(crate) fn in_pod_macs(&self) -> Result<BTreeSet<String>> {
        Ok(self.caches().read()?.in_pod_macs())
    }
}
