//! The node inventory: every network PCI function from sysfs, joined with
//! the cloud's VNICs by MAC, and where each device is now (host, a pod,
//! userspace).
//!
//! Join rules (oci.md §0.6, §4.4): MACs compare case-insensitively; one MAC
//! may belong to several devices. When exactly one of them is a VF, the VF
//! is the VNIC (a paravirtual standby or failover master with the same MAC
//! never is). When several VFs share the MAC (one VNIC presented as 2–4 VFs,
//! as on PCA/C3) all of them carry the VNIC and a warning says so; when only
//! non-VFs share it, nothing is assigned and the ambiguity is reported —
//! never a guess. A VNIC no device matches is reported too (IMDS and the OS
//! disagree for a while after attach/detach).
//!
//! Side effects sit behind seams: sysfs is a root path,
//! [`MetadataSource`] the cloud, [`PodLocationSource`] the CNI caches.
//! [`join`] is pure.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use plexus_imds::node_state::{NodeState, VnicState};
use plexus_imds::{ImdsError, MetadataSource, NodeNic};
use plexus_sysfs::{PciAddr, PciError};
use serde::Serialize;

use crate::metrics::VfCounts;

mod issue;
mod join;
#[cfg(test)]
pub(crate) mod sample;
#[cfg(test)]
mod tests;

pub use issue::Issue;
pub use join::join;

/// Errors building the inventory.
#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    /// sysfs could not be read.
    #[error("device discovery: {0}")]
    Sysfs(#[from] PciError),
    /// The metadata service failed.
    #[error("{0}")]
    Imds(#[from] ImdsError),
    /// A CNI cache directory could not be listed.
    #[error("CNI cache {path}: {source}")]
    Cache {
        /// The directory.
        path: PathBuf,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
}

/// The pod (container) holding a device.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PodRef {
    /// Sandbox container ID.
    pub container_id: String,
    /// `namespace/name`, when the meta plugin's cache knows it.
    pub pod: Option<String>,
    /// Interface name inside the pod.
    pub ifname: Option<String>,
    /// Network namespace path.
    pub netns: Option<String>,
}

/// One device claimed by a pod, as the CNI caches remember it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodClaim {
    /// PCI address, when recorded.
    pub pci: Option<PciAddr>,
    /// MAC on the host, lower-case.
    pub mac: Option<String>,
    /// Host interface name before the move.
    pub host_ifname: Option<String>,
    /// Who holds it.
    pub pod: PodRef,
}

/// Where devices are held by pods.
pub trait PodLocationSource {
    /// All current claims.
    fn pod_claims(&self) -> Result<Vec<PodClaim>, InventoryError>;
}

/// Fixed claims, for tests and for callers that already collected them.
#[derive(Debug, Clone, Default)]
pub struct StaticPodLocations(pub Vec<PodClaim>);

impl PodLocationSource for StaticPodLocations {
    fn pod_claims(&self) -> Result<Vec<PodClaim>, InventoryError> {
        Ok(self.0.clone())
    }
}

impl PodLocationSource for crate::caches::CniCacheLocations {
    fn pod_claims(&self) -> Result<Vec<PodClaim>, InventoryError> {
        Ok(self.read()?.pod_claims())
    }
}

/// Where a device is now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Location {
    /// Netdev visible in the host namespace.
    Host,
    /// Held by a pod.
    Pod(PodRef),
    /// Bound to a userspace driver and claimed by no pod.
    Userspace,
    /// Kernel-bound but its netdev is not here and no pod claims it
    /// (a stranded VF, or a namespace we do not know).
    Unknown,
}

/// One network device and its VNIC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    /// PCI address.
    pub pci: PciAddr,
    /// Host interface name (now, or before a pod took it).
    pub ifname: Option<String>,
    /// MAC, lower-case (from sysfs, a pod claim, or the previous state).
    pub mac: Option<String>,
    /// Kernel driver.
    pub driver: Option<String>,
    /// `vendor:device`.
    pub pci_id: String,
    /// Known VF model.
    pub model: Option<String>,
    /// SR-IOV VF.
    pub is_vf: bool,
    /// SR-IOV PF (bare metal).
    pub is_pf: bool,
    /// Current MTU when visible.
    pub mtu: Option<u32>,
    /// The matched VNIC.
    pub vnic: Option<NodeNic>,
    /// The matched VNIC is the primary (first IMDS entry).
    pub is_primary: bool,
    /// Where it is.
    pub location: Location,
}

/// A VNIC no device carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnmatchedVnic {
    /// The VNIC.
    pub vnic: NodeNic,
    /// It is the primary VNIC.
    pub is_primary: bool,
}

/// The joined view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Inventory {
    /// Devices, sorted by PCI address.
    pub entries: Vec<Entry>,
    /// VNICs with no device here (still written to the state file).
    pub unmatched_vnics: Vec<UnmatchedVnic>,
    /// Warnings.
    pub issues: Vec<Issue>,
}

impl Inventory {
    /// VF counts by location, for metrics.
    pub fn counts(&self) -> VfCounts {
        let mut c = VfCounts::default();
        for e in self.entries.iter().filter(|e| e.is_vf) {
            match e.location {
                Location::Host => c.host += 1,
                Location::Pod(_) => c.pod += 1,
                Location::Userspace => c.userspace += 1,
                Location::Unknown => c.unknown += 1,
            }
        }
        c
    }

    /// The state file content: one entry per device with a VNIC, then one
    /// per VNIC with no device (so the plugin can still match its MAC).
    pub fn to_node_state(&self, now: SystemTime) -> NodeState {
        let mut vnics: Vec<VnicState> = self
            .entries
            .iter()
            .filter_map(|e| {
                let v = e.vnic.as_ref()?;
                Some(VnicState::from_nic(
                    v,
                    e.is_primary,
                    e.ifname.clone(),
                    Some(e.pci.to_string()),
                ))
            })
            .collect();
        vnics.extend(
            self.unmatched_vnics
                .iter()
                .map(|u| VnicState::from_nic(&u.vnic, u.is_primary, None, None)),
        );
        NodeState::new(vnics, now)
    }
}

/// Reads sysfs (under `host_root/sys`), IMDS and the CNI caches and joins
/// them. `previous` (the
/// last state file) supplies MACs of devices whose netdev is gone.
pub fn build(
    host_root: &Path,
    metadata: &dyn MetadataSource,
    pods: &dyn PodLocationSource,
    previous: Option<&NodeState>,
) -> Result<Inventory, InventoryError> {
    let discovery = plexus_sysfs::discover(host_root)?;
    let vnics = metadata.nics()?;
    let claims = pods.pod_claims()?;
    Ok(join(&discovery, &vnics, &claims, previous))
}
