//! The reconcile pass behind `plexus-agent run`: repair, configure, publish.
//!
//! IMDS is eventually consistent and VFs come and go (attach/detach, pods),
//! so the agent never does one-shot setup: every pass re-reads IMDS,
//! renames stranded VFs back ([`crate::repair`]), re-plans and applies the
//! host VNIC configuration ([`crate::vnic`]), recomputes the device plugin's
//! VF list and rewrites the node state file when its content changed.
//! A pass whose IMDS read fails changes nothing and is retried next tick.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use plexus_imds::node_state::NodeState;
use plexus_imds::MetadataSource;
use plexus_sysfs::Discovery;

use crate::deviceplugin::VfDevice;
use crate::inventory::{self, CniCacheLocations, Inventory, Location, PodLocationSource};
use crate::metrics::{Metrics, VfCounts};
use crate::repair::{
    apply_repair, known_vfs, plan_repair, read_records, CacheRecord, RepairOps, RepairPlan,
};
use crate::vnic::{self, ApplyReport, NetOps, Plan, VnicConfig};

/// Paths and knobs of a pass.
#[derive(Debug, Clone)]
pub struct ReconcileConfig {
    pub vnic: VnicConfig,
    pub sysfs_root: PathBuf,
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

/// MACs host-device records as inside live pods.
fn in_pod_macs(records: &[CacheRecord]) -> BTreeSet<String> {
    records
        .iter()
        .filter(|r| r.netns_alive)
        .filter_map(|r| r.mac.clone())
        .collect()
}

/// Pure: host link names the inventory matched to each VNIC MAC, which
/// disambiguate a MAC shared by several links (net_failover).
pub fn link_hints(inv: &Inventory) -> BTreeMap<String, BTreeSet<String>> {
    let mut hints: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for e in &inv.entries {
        if let (Some(v), Some(name), Location::Host) = (&e.vnic, &e.ifname, &e.location) {
            hints.entry(v.mac_lower()).or_default().insert(name.clone());
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

/// The IOMMU group of a PCI function under `sysfs_root`.
pub fn iommu_group_of(sysfs_root: &Path, pci: &str) -> Option<String> {
    let link = std::fs::read_link(
        sysfs_root
            .join("bus/pci/devices")
            .join(pci)
            .join("iommu_group"),
    )
    .ok()?;
    link.file_name().map(|n| n.to_string_lossy().into_owned())
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
    let vnics = seams.metadata.vnics().map_err(vnic::VnicError::from)?;
    let previous = match NodeState::read(&cfg.state_path) {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(error = %e, "ignoring unreadable node state file");
            None
        }
    };
    let hd = read_records(&cfg.host_device_dir);
    let meta = read_records(&cfg.meta_cache_dir);
    let mut report = PassReport::default();

    // 1. Stranded VFs back to their names, dead pods' records collected.
    match seams.repair.links() {
        Ok(links) => {
            report.repair = plan_repair(&links, &known_vfs(&vnics, previous.as_ref()), &hd, &meta);
            report.repair_failures = apply_repair(seams.repair, &report.repair)
                .into_iter()
                .map(|(a, e)| format!("{a:?}: {e}"))
                .collect();
        }
        Err(e) => report.repair_failures.push(format!("listing links: {e}")),
    }

    // 2. Inventory (after repair: names are right, collected records gone).
    let discovery = match plexus_sysfs::discover(&cfg.sysfs_root) {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(error = %e, root = %cfg.sysfs_root.display(), "sysfs discovery failed");
            Discovery {
                functions: Vec::new(),
            }
        }
    };
    let caches = CniCacheLocations {
        host_device_dir: cfg.host_device_dir.clone(),
        plexus_dir: cfg.meta_cache_dir.clone(),
    };
    let claims = caches.pod_claims().unwrap_or_else(|e| {
        tracing::warn!(error = %e, "reading CNI caches");
        Vec::new()
    });
    let inv = inventory::join(&discovery, &vnics, &claims, previous.as_ref());

    // 3. Host configuration of the secondary VNICs present on the host.
    let current = seams.net.current(&cfg.vnic)?;
    report.plan = vnic::plan_with_hints(
        &cfg.vnic,
        &vnics,
        &current,
        &in_pod_macs(&hd),
        &link_hints(&inv),
    );
    report.applied = vnic::apply(seams.net, &report.plan);

    // 4. Devices for the plugin, VF counts, node state.
    let root = cfg.sysfs_root.clone();
    report.devices = vf_devices(&inv, &discovery, &|pci| iommu_group_of(&root, pci));
    report.counts = inv.counts();
    report.state_written =
        crate::state::persist(&cfg.state_path, &inv, SystemTime::now(), seams.metrics)?;
    report.inventory = Some(inv);
    Ok(report)
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
