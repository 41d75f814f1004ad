//! The reconcile pass behind `plexus-agent run`: repair, configure, publish.
//!
//! IMDS is eventually consistent and VFs come and go (attach/detach, pods),
//! so the agent never does one-shot setup: every pass re-reads IMDS,
//! renames stranded VFs back ([`crate::repair`]), re-plans and applies the
//! host VNIC configuration ([`crate::vnic`]), recomputes the device plugin's
//! VF list and rewrites the node state file when its content changed.
//! A pass whose IMDS read fails changes nothing and is retried next tick.
//!
//! [`apply_once`] is the one-shot `plexus-agent vnic apply`: the same VNIC
//! step and the same inventory → state-file step, without repair or device
//! plugin, so a node configured once (cloud-init, the tutorial's Task 1)
//! also has the state file the `vnic` IPAM plugin reads.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use plexus_imds::node_state::NodeState;
use plexus_imds::{MetadataSource, NodeNic};
use plexus_sysfs::Discovery;

use crate::caches::{CniCacheLocations, CniCaches};
use crate::deviceplugin::VfDevice;
use crate::inventory::{self, Inventory, Location};
use crate::metrics::{Metrics, VfCounts};
use crate::repair::{apply_repair, collected, known_vfs, plan_repair, RepairOps, RepairPlan};
use crate::vnic::{self, ApplyReport, NetOps, Plan, VnicConfig};

/// Paths and knobs of a pass.
#[derive(Debug, Clone)]
pub struct ReconcileConfig {
    pub vnic: VnicConfig,
    /// Filesystem root holding `sys/` (`/`, or `/host` in the DaemonSet).
    pub host_root: PathBuf,
    pub state_path: PathBuf,
    pub host_device_dir: PathBuf,
    pub meta_cache_dir: PathBuf,
}

/// What one pass found and did.
#[derive(Debug, Default)]
pub struct PassReport {
    pub repair: RepairPlan,
    pub repair_failures: Vec<String>,
    pub plan: Plan,
    pub applied: ApplyReport,
    pub devices: Vec<VfDevice>,
    pub counts: VfCounts,
    pub state_written: bool,
    pub inventory: Option<Inventory>,
}

/// Errors that abort a pass before it changed anything.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error(transparent)]
    Vnic(#[from] vnic::VnicError),
    #[error("writing node state: {0}")]
    State(#[from] plexus_imds::StateError),
}

/// Pure: host link names the inventory matched to each VNIC MAC, which
/// disambiguate a MAC shared by several links (net_failover).
pub fn link_hints(inv: &Inventory) -> BTreeMap<String, BTreeSet<String>> {
    let mut hints: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for e in &inv.entries {
        if let (Some(v), Some(name), Location::Host) = (&e.vnic, &e.ifname, &e.location) {
            hints.entry(v.mac.clone()).or_default().insert(name.clone());
        }
    }
    hints
}

/// Pure: the device plugin's VFs from the inventory: every VF except the
/// primary VNIC's. Healthy when usable: its link on the host, inside a pod,
/// or bound to vfio; a kernel VF whose link is nowhere is unhealthy so the
/// kubelet stops handing it out.
pub fn vf_devices(
    inv: &Inventory,
    discovery: &Discovery,
    iommu_group: &dyn Fn(&str) -> Option<String>,
) -> Vec<VfDevice> {
    inv.entries
        .iter()
        .filter(|e| e.is_vf && !e.is_primary)
        .map(|e| {
            let pci = e.pci.to_string();
            VfDevice {
                iommu_group: iommu_group(&pci),
                numa_node: discovery
                    .function(&e.pci)
                    .and_then(|f| f.numa_node)
                    .map(i64::from),
                driver: e.driver.clone(),
                netdev: matches!(e.location, Location::Host)
                    .then(|| e.ifname.clone())
                    .flatten(),
                healthy: !matches!(e.location, Location::Unknown),
                pci,
            }
        })
        .collect()
}

/// The IOMMU group of a PCI function under `host_root` (`<root>/sys/...`).
pub fn iommu_group_of(host_root: &Path, pci: &str) -> Option<String> {
    plexus_sysfs::pci::iommu_group(host_root, &pci.parse().ok()?)
}

/// The previous state file, or `None` (an unreadable one is replaced).
fn previous_state(path: &Path) -> Option<NodeState> {
    NodeState::read(path).unwrap_or_else(|e| {
        tracing::warn!(error = %e, "ignoring unreadable node state file");
        None
    })
}

impl ReconcileConfig {
    /// The CNI caches, read once per pass (empty, with a warning, when a
    /// directory cannot be listed).
    fn caches(&self) -> CniCaches {
        let at = CniCacheLocations {
            host_device_dir: self.host_device_dir.clone(),
            plexus_dir: self.meta_cache_dir.clone(),
        };
        at.read().unwrap_or_else(|e| {
            tracing::warn!(error = %e, "reading CNI caches");
            CniCaches::default()
        })
    }
}

/// Sysfs discovery (empty, with a warning, when sysfs is unreadable) joined
/// with the VNICs, the CNI caches' pod claims and the previous state.
fn inventory_of(
    cfg: &ReconcileConfig,
    vnics: &[NodeNic],
    caches: &CniCaches,
    previous: Option<&NodeState>,
) -> (Discovery, Inventory) {
    let discovery = match plexus_sysfs::discover(&cfg.host_root) {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(error = %e, root = %cfg.host_root.display(), "sysfs discovery failed");
            Discovery {
                functions: Vec::new(),
            }
        }
    };
    let inv = inventory::join(&discovery, vnics, &caches.pod_claims(), previous);
    (discovery, inv)
}

/// Side effects one pass needs, passed in (real ones built in `main`).
pub struct Seams<'a> {
    pub metadata: &'a dyn MetadataSource,
    pub metrics: &'a Metrics,
    pub net: &'a dyn NetOps,
    pub repair: &'a dyn RepairOps,
}

impl std::fmt::Debug for Seams<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Seams").finish_non_exhaustive()
    }
}

/// One reconcile pass; see the module docs.
pub fn reconcile_once(
    cfg: &ReconcileConfig,
    seams: &Seams<'_>,
) -> Result<PassReport, ReconcileError> {
    let vnics = seams.metadata.nics().map_err(vnic::VnicError::from)?;
    let previous = previous_state(&cfg.state_path);
    let caches = cfg.caches();
    let mut report = PassReport::default();

    // 1. Stranded VFs back to their names, dead pods' records collected.
    match seams.repair.links() {
        Ok(links) => {
            let known = known_vfs(&vnics, previous.as_ref());
            let (hd, meta) = (caches.host_device_records(), caches.meta_records());
            report.repair = plan_repair(&links, &known, &hd, &meta);
            report.repair_failures = apply_repair(seams.repair, &report.repair)
                .into_iter()
                .map(|(a, e)| format!("{a:?}: {e}"))
                .collect();
        }
        Err(e) => report.repair_failures.push(format!("listing links: {e}")),
    }

    // 2. Inventory (after repair: names are right, collected records gone).
    let in_pod = caches.in_pod_macs();
    let caches = caches.without(&collected(&report.repair));
    let (discovery, inv) = inventory_of(cfg, &vnics, &caches, previous.as_ref());

    // 3. Host configuration of the secondary VNICs present on the host.
    let current = seams.net.current(&cfg.vnic)?;
    report.plan = vnic::plan_with_hints(&cfg.vnic, &vnics, &current, &in_pod, &link_hints(&inv));
    report.applied = vnic::apply(seams.net, &report.plan);

    // 4. Devices for the plugin, VF counts, node state.
    let root = cfg.host_root.clone();
    report.devices = vf_devices(&inv, &discovery, &|pci| iommu_group_of(&root, pci));
    report.counts = inv.counts();
    report.state_written =
        crate::state::persist(&cfg.state_path, &inv, SystemTime::now(), seams.metrics)?;
    report.inventory = Some(inv);
    Ok(report)
}

/// What the one-shot `vnic apply` did.
#[derive(Debug)]
pub struct ApplyOnceReport {
    pub plan: Plan,
    pub applied: ApplyReport,
    /// Whether the state file was rewritten; a failed write leaves the
    /// applied host configuration in place and is reported by the caller.
    pub state: Result<bool, plexus_imds::StateError>,
    pub inventory: Inventory,
}

/// `plexus-agent vnic apply`: IMDS → VNIC plan/apply (as `vnic plan` shows
/// it) → inventory → state file, the last two exactly as in a pass. IMDS is
/// read first: when it is down nothing is touched and nothing is written.
pub fn apply_once(
    cfg: &ReconcileConfig,
    metadata: &dyn MetadataSource,
    net: &dyn NetOps,
    metrics: &Metrics,
) -> Result<ApplyOnceReport, ReconcileError> {
    let vnics = metadata.nics().map_err(vnic::VnicError::from)?;
    let previous = previous_state(&cfg.state_path);
    let caches = cfg.caches();
    let in_pod = caches.in_pod_macs();
    let (plan, applied) = vnic::run_with(vnic::Mode::Apply, &cfg.vnic, &vnics, net, &in_pod)?;
    let (_, inventory) = inventory_of(cfg, &vnics, &caches, previous.as_ref());
    let state = crate::state::persist(&cfg.state_path, &inventory, SystemTime::now(), metrics);
    Ok(ApplyOnceReport {
        plan,
        applied,
        state,
        inventory,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::sample;

    #[test]
    fn devices_skip_primary_and_health_follows_location() {
        let inv = sample::inventory();
        let disc = Discovery {
            functions: Vec::new(),
        };
        let devs = vf_devices(&inv, &disc, &|_| Some("7".into()));
        assert!(!devs.is_empty());
        for d in &devs {
            let e = inv
                .entries
                .iter()
                .find(|e| e.pci.to_string() == d.pci)
                .unwrap();
            assert!(e.is_vf && !e.is_primary);
            assert_eq!(d.healthy, !matches!(e.location, Location::Unknown));
            assert_eq!(
                d.netdev.is_some(),
                matches!(e.location, Location::Host) && e.ifname.is_some()
            );
            assert_eq!(d.iommu_group.as_deref(), Some("7"));
        }
        let vfs = inv
            .entries
            .iter()
            .filter(|e| e.is_vf && !e.is_primary)
            .count();
        assert_eq!(devs.len(), vfs);
    }
}
