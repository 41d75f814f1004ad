//! `vnic` IPAM: hands a pod the cloud address of the VNIC whose device
//! host-device is moving, so one NetworkAttachmentDefinition works on every
//! node and the pod keeps the IP the VCN routes to that VNIC.
//!
//! ADD reads as steps: parse the config → find which device the delegate
//! config names (`device`, `hwaddr`, `kernelpath`, `pciBusID`,
//! `runtimeConfig.deviceID`, in host-device's order) → resolve its MAC/PCI in
//! the node's sysfs → look it up in the agent's state file (PCI, then MAC,
//! then host name) → only when the file is missing or has no match, ask IMDS
//! by MAC (throttled; a burst of pods must not hit it) → answer IP/prefix,
//! gateway (`virtualRouterIp`) and routes.
//!
//! host-device (like other plugins that move a device) runs IPAM *after* the
//! move, so the device is usually gone from the node: sysfs hides netdevs of
//! other namespaces. Its MAC then comes from `CNI_IFNAME` inside `CNI_NETNS`
//! ([`PodLinks`]; a moved device keeps its MAC), read only when the state
//! file cannot answer by PCI.
//!
//! Seams: [`MetadataConnector`] (IMDS), [`PodLinks`] (the pod's netlink).
//! DEL is a no-op (nothing is allocated); CHECK verifies `prevResult` holds
//! the VNIC's address. No async runtime: start-up stays in the microseconds.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use plexus_cni::result::{IpConfig, Route};
use plexus_cni::skel::{CmdArgs, Plugin};
use plexus_cni::{CniError, CniResult, NetConf};
use plexus_host_device::config::{Config as HostDeviceConfig, Selector as HostDeviceSelector};
use plexus_imds::node_state::{NodeState, VnicState, DEFAULT_STATE_PATH};
use plexus_imds::{ClientConfig, ImdsError, MetadataSource, NoopObserver, RetryPolicy, StateError};
use plexus_netlink::Handle;
use plexus_netns::NetNs;
use plexus_sysfs::pci::PciError;
use serde::Deserialize;

/// Text printed on stderr when run without `CNI_COMMAND`.
pub const ABOUT: &str = concat!("CNI vnic IPAM plugin (plexus) v", env!("CARGO_PKG_VERSION"));

/// Everything that can go wrong; mapped to CNI codes in [`VnicError::to_cni`].
#[derive(Debug, thiserror::Error)]
pub enum VnicError {
    /// No `ipam` section, or it does not parse.
    #[error("invalid vnic IPAM config: {0}")]
    Config(String),
    /// The delegate config names no device.
    #[error("vnic IPAM: the config names no device: set \"device\", \"hwaddr\", \"kernelpath\", \"pciBusID\" or runtimeConfig.deviceID")]
    NoDeviceSelector,
    /// sysfs lookups failed.
    #[error("vnic IPAM: sysfs: {0}")]
    Sysfs(#[from] PciError),
    /// The state file exists but cannot be used.
    #[error("vnic IPAM: {0}")]
    State(#[from] StateError),
    /// IMDS failed (after its own retries).
    #[error("vnic IPAM: {0}")]
    Imds(#[from] ImdsError),
    /// Neither the state file nor IMDS knows the device.
    #[error("no VNIC for device {device}")]
    NoVnic {
        /// Device description: name, MAC, PCI.
        device: String,
    },
    /// Not in the state file and its MAC cannot be read, on the node nor
    /// in the pod.
    #[error(
        "device {device} is not in the state file and its MAC is unknown ({why}), so IMDS cannot be asked"
    )]
    NoMac {
        /// Device description.
        device: String,
        /// Why no MAC: what was looked at.
        why: String,
    },
    /// The device is the node's primary VNIC: never hand it to a pod.
    #[error("device {device} is the node's primary VNIC {vnic_id}; refusing to give its address to a pod")]
    Primary {
        /// Device description.
        device: String,
        /// Its OCID.
        vnic_id: String,
    },
    /// CHECK: prevResult lacks the VNIC's address.
    #[error("prevResult does not contain the VNIC address {expected}")]
    CheckMismatch {
        /// The expected address.
        expected: IpNet,
    },
    /// CHECK without prevResult.
    #[error("required prevResult missing")]
    MissingPrevResult,
}

impl VnicError {
    /// The CNI error code for this failure.
    pub fn to_cni(&self) -> CniError {
        let msg = self.to_string();
        match self {
            Self::Config(_) | Self::NoDeviceSelector => CniError::invalid_config(msg),
            Self::Sysfs(_) | Self::State(_) => CniError::io(msg),
            // IMDS trouble is transient by nature (throttling, maintenance).
            Self::Imds(_) => CniError::try_again(msg),
            Self::NoVnic { .. } | Self::NoMac { .. } | Self::Primary { .. } => {
                CniError::generic(msg)
            }
            Self::CheckMismatch { .. } | Self::MissingPrevResult => CniError::generic(msg),
        }
    }
}

/// A route in `ipam.routes`; `gw` defaults to the VNIC gateway when
/// host-device applies it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ConfRoute {
    /// Destination.
    pub dst: IpNet,
    /// Next hop.
    #[serde(default)]
    pub gw: Option<IpAddr>,
}

/// The `ipam` section.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IpamConfig {
    /// Must be `vnic`.
    #[serde(rename = "type")]
    pub plugin_type: String,
    /// State file written by the agent.
    #[serde(default = "default_state_file")]
    pub state_file: PathBuf,
    /// Filesystem root holding `sys/` (tests point it at a fixture).
    #[serde(default = "default_sysfs_root")]
    pub sysfs_root: PathBuf,
    /// IMDS base URL for the fallback.
    #[serde(default = "default_imds_url")]
    pub imds_url: String,
    /// Extra routes (the subnet route is implicit).
    #[serde(default)]
    pub routes: Vec<ConfRoute>,
    /// Add `0.0.0.0/0 via virtualRouterIp`: for pods whose only egress is
    /// this VNIC; off by default so the cluster interface keeps the default.
    #[serde(default)]
    pub default_route: bool,
}

fn default_state_file() -> PathBuf {
    PathBuf::from(DEFAULT_STATE_PATH)
}

fn default_sysfs_root() -> PathBuf {
    PathBuf::from("/")
}

fn default_imds_url() -> String {
    plexus_imds::DEFAULT_BASE_URL.to_string()
}

/// Which device the delegate (host-device) config names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// `device`: host interface name.
    Name(String),
    /// `hwaddr`.
    Mac(String),
    /// `kernelpath`.
    KernelPath(String),
    /// `pciBusID` or `runtimeConfig.deviceID`.
    Pci(String),
}

/// The parsed stdin: IPAM settings plus the device selector.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// The full network config.
    pub conf: NetConf,
    /// `ipam` section.
    pub ipam: IpamConfig,
    /// Device named by the delegate config.
    pub selector: Selector,
}

/// Parses stdin. The device is chosen by host-device's own config parser,
/// so both plugins always agree on which device is meant (an allocated
/// `deviceID` wins over `device`, then `hwaddr`, `kernelpath`, `pciBusID`).
pub fn parse_request(stdin: &[u8]) -> Result<Request, CniError> {
    let hd = HostDeviceConfig::load(stdin).map_err(CniError::from)?;
    let conf = hd.net;
    let ipam_value = conf
        .ipam
        .clone()
        .ok_or_else(|| VnicError::Config("missing \"ipam\"".into()).to_cni())?;
    let ipam: IpamConfig = serde_json::from_value(ipam_value)
        .map_err(|e| VnicError::Config(e.to_string()).to_cni())?;
    let selector = match hd.selector {
        HostDeviceSelector::DeviceId(a) | HostDeviceSelector::PciBusId(a) => {
            Selector::Pci(a.to_string())
        }
        HostDeviceSelector::Name(n) => Selector::Name(n),
        HostDeviceSelector::Mac(m) => Selector::Mac(m.to_string()),
        HostDeviceSelector::KernelPath(p) => Selector::KernelPath(p),
    };
    Ok(Request {
        conf,
        ipam,
        selector,
    })
}

mod device;
#[cfg(test)]
mod tests;

pub use device::{find_in_state, needs_pod_mac, resolve_device, DeviceRef};

/// The result for a VNIC: its address on the interface, the gateway, and
/// the configured routes (the subnet route comes with the address).
pub fn build_result(vnic: &VnicState, ipam: &IpamConfig) -> Result<CniResult, VnicError> {
    let address = IpNet::new(vnic.ip, vnic.prefix_len)
        .map_err(|e| VnicError::Config(format!("VNIC {} prefix: {e}", vnic.vnic_id)))?;
    let mut routes: Vec<Route> = ipam
        .routes
        .iter()
        .map(|r| Route::new(r.dst, r.gw))
        .collect();
    if ipam.default_route {
        let any: IpNet = match vnic.ip {
            IpAddr::V4(_) => IpNet::V4(ipnet::Ipv4Net::default()),
            IpAddr::V6(_) => IpNet::V6(ipnet::Ipv6Net::default()),
        };
        if !routes.iter().any(|r| r.dst == any) {
            routes.push(Route::new(any, vnic.gateway));
        }
    }
    Ok(CniResult {
        ips: vec![IpConfig {
            interface: None,
            address,
            gateway: vnic.gateway,
        }],
        routes,
        ..CniResult::default()
    })
}

/// Builds a metadata client for a base URL; a seam so handler tests can
/// answer without HTTP.
pub trait MetadataConnector {
    /// A source talking to `base_url`.
    fn connect(&self, base_url: &str) -> Box<dyn MetadataSource>;
}

/// The real connector: OCI IMDS with timeouts sized for a CNI call (the
/// runtime's own ADD timeout is minutes, but pods should fail in seconds).
#[derive(Debug, Default)]
pub struct OciConnector;

impl MetadataConnector for OciConnector {
    fn connect(&self, base_url: &str) -> Box<dyn MetadataSource> {
        plexus_imds::connect(
            ClientConfig {
                base_url: base_url.to_string(),
                connect_timeout: Duration::from_secs(1),
                read_timeout: Duration::from_secs(3),
                retry: RetryPolicy {
                    max_attempts: 4,
                    initial_backoff: Duration::from_millis(200),
                    max_backoff: Duration::from_secs(2),
                    budget: Duration::from_secs(10),
                },
            },
            Arc::new(NoopObserver),
        )
    }
}

/// Where the delegate put the device: `CNI_NETNS` and `CNI_IFNAME`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PodIface<'a> {
    /// The pod's network namespace path.
    pub netns: &'a str,
    /// The device's name inside it.
    pub ifname: &'a str,
}

impl<'a> From<&'a CmdArgs> for PodIface<'a> {
    fn from(args: &'a CmdArgs) -> Self {
        Self {
            netns: &args.netns,
            ifname: &args.ifname,
        }
    }
}

/// Reads a link's MAC inside the pod: the one kernel query vnic makes.
pub trait PodLinks {
    /// The MAC (lower-case) of `pod.ifname` in `pod.netns`; `Ok(None)` when
    /// the namespace or the link is not there, or the link has no MAC.
    fn mac_of(&self, pod: PodIface<'_>) -> Result<Option<String>, plexus_netlink::Error>;
}

/// The real [`PodLinks`]: one rtnetlink socket opened inside the pod's
/// namespace (only `socket(2)` runs there), one `RTM_GETLINK` by name.
#[derive(Debug, Default)]
pub struct KernelPodLinks;

impl PodLinks for KernelPodLinks {
    fn mac_of(&self, pod: PodIface<'_>) -> Result<Option<String>, plexus_netlink::Error> {
        let ns = match NetNs::open(pod.netns) {
            Ok(ns) => ns,
            Err(plexus_netns::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let link = match Handle::open_in(&ns)?.link_by_name(pod.ifname) {
            Ok(link) => link,
            Err(e) if e.is_not_found() => return Ok(None),
            Err(e) => return Err(e),
        };
        // The current address, as sysfs `address` would show it; all-zero
        // (a MAC-less device) counts as none.
        Ok(link
            .mac
            .filter(|m| m.as_bytes().iter().any(|b| *b != 0))
            .map(|m| m.to_string()))
    }
}

/// The plugin with its metadata and pod seams.
pub struct VnicIpam<'a> {
    imds: &'a dyn MetadataConnector,
    pod: &'a dyn PodLinks,
}

impl std::fmt::Debug for VnicIpam<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VnicIpam").finish_non_exhaustive()
    }
}

impl<'a> VnicIpam<'a> {
    /// A plugin asking `imds` when the state file has no answer, and `pod`
    /// for the MAC of a device that already left the node.
    pub fn new(imds: &'a dyn MetadataConnector, pod: &'a dyn PodLinks) -> Self {
        Self { imds, pod }
    }

    /// Finds the VNIC for the request: state file first (PCI, MAC, host
    /// name), IMDS by MAC second. The MAC comes from the node's sysfs, else
    /// from `pod` (the device moved there before IPAM ran).
    pub fn find_vnic(&self, req: &Request, pod: PodIface<'_>) -> Result<VnicState, VnicError> {
        let mut dev = resolve_device(&req.ipam.sysfs_root, &req.selector)?;
        let state = NodeState::read(&req.ipam.state_file)?;
        let mut why_no_mac = "the node's netdev has none".to_string();
        if needs_pod_mac(state.as_ref(), &dev) {
            why_no_mac = self.read_pod_mac(&mut dev, pod);
        }
        let found = match state.as_ref().and_then(|s| find_in_state(s, &dev)) {
            Some(v) => v.clone(),
            None => self.ask_imds(&req.ipam.imds_url, &dev, why_no_mac)?,
        };
        if found.is_primary {
            return Err(VnicError::Primary {
                device: dev.to_string(),
                vnic_id: found.vnic_id,
            });
        }
        Ok(found)
    }

    /// Fills `dev.mac` from the device in the pod; returns why it could not.
    fn read_pod_mac(&self, dev: &mut DeviceRef, pod: PodIface<'_>) -> String {
        let (netns, ifname) = (pod.netns, pod.ifname);
        if netns.is_empty() {
            return "not on the node, and CNI_NETNS is empty".into();
        }
        match self.pod.mac_of(pod) {
            Ok(Some(mac)) => {
                dev.mac = Some(mac);
                dev.mac_from_pod = Some(ifname.to_string());
                String::new()
            }
            Ok(None) => format!("not on the node, and no {ifname:?} with a MAC in {netns}"),
            Err(e) => format!("not on the node, and reading {ifname:?} in {netns}: {e}"),
        }
    }

    fn ask_imds(
        &self,
        url: &str,
        dev: &DeviceRef,
        why_no_mac: String,
    ) -> Result<VnicState, VnicError> {
        let Some(mac) = dev.mac.as_deref() else {
            return Err(VnicError::NoMac {
                device: dev.to_string(),
                why: why_no_mac,
            });
        };
        let nics = self.imds.connect(url).nics()?;
        nics.iter()
            .position(|n| n.matches_mac(mac))
            .map(|i| {
                VnicState::from_nic(
                    &nics[i],
                    i == 0,
                    dev.ifname.clone(),
                    dev.pci.map(|p| p.to_string()),
                )
            })
            .ok_or_else(|| VnicError::NoVnic {
                device: dev.to_string(),
            })
    }
}

impl Plugin for VnicIpam<'_> {
    fn add(&self, args: &CmdArgs) -> Result<serde_json::Value, CniError> {
        let req = parse_request(&args.stdin)?;
        let vnic = self
            .find_vnic(&req, PodIface::from(args))
            .map_err(|e| e.to_cni())?;
        let result = build_result(&vnic, &req.ipam).map_err(|e| e.to_cni())?;
        result.to_json(req.conf.version())
    }

    fn del(&self, _args: &CmdArgs) -> Result<(), CniError> {
        // Nothing was allocated: the address belongs to the VNIC.
        Ok(())
    }

    fn check(&self, args: &CmdArgs) -> Result<(), CniError> {
        let req = parse_request(&args.stdin)?;
        let prev = req
            .conf
            .parse_prev_result()?
            .ok_or_else(|| VnicError::MissingPrevResult.to_cni())?;
        let vnic = self
            .find_vnic(&req, PodIface::from(args))
            .map_err(|e| e.to_cni())?;
        let expected = build_result(&vnic, &req.ipam).map_err(|e| e.to_cni())?;
        for want in &expected.ips {
            if !prev.ips.iter().any(|ip| ip.address == want.address) {
                return Err(VnicError::CheckMismatch {
                    expected: want.address,
                }
                .to_cni());
            }
        }
        Ok(())
    }
}
