//! The reconcile pass behind `plexus-agent run`: repair, configure, publish.
//!
//! IMDS is eventually consistent and VFs come and go (attach/detach, pods),
//! so the agent never does one-shot setup: every pass re-reads IMDS,
//! renames stranded VFs back ([`crate::repair`]), re-plans and applies the
//! host VNIC configuration ([`crate::vnic`]), recomputes the device plugin's
//! VF list and rewrites the node state file when its content changed.
//! A pass whose IMDS read fails changes nothing and is retried next tick.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use plexus_imds::node_state::{NodeState, VnicState};
use plexus_imds::{MetadataSource, Vnic};
use plexus_sysfs::{Binding, Discovery};

use crate::deviceplugin::VfDevice;
use crate::metrics::VfCounts;
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
}

/// Errors that abort a pass before it changed anything.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error(transparent)]
    Vnic(#[from] vnic::VnicError),
    #[error("writing node state: {0}")]
    State(#[from] plexus_imds::StateError),
}

/// MACs and PCI addresses held by live pods, per host-device's records.
fn in_pod(records: &[CacheRecord]) -> (BTreeSet<String>, BTreeSet<String>) {
    let live = records.iter().filter(|r| r.netns_alive);
    let macs = live.clone().filter_map(|r| r.mac.clone()).collect();
    let pcis = live.filter_map(|r| r.pci.clone()).collect();
    (macs, pcis)
}

/// Pure: the device plugin's VFs. Every VF except the primary VNIC's; a
/// VF is healthy when it is usable: bound to vfio, or kernel-bound with its
/// link on the host or inside a live pod. A kernel VF whose link is nowhere
/// (or an unbound one) is reported unhealthy so the kubelet stops handing
/// it out.
pub fn vf_devices(
    discovery: &Discovery,
    vnics: &[Vnic],
    in_pod_pcis: &BTreeSet<String>,
    iommu_group: &dyn Fn(&str) -> Option<String>,
) -> (Vec<VfDevice>, VfCounts) {
    let primary = vnics.first().map(Vnic::mac_lower);
    let mut counts = VfCounts::default();
    let mut out = Vec::new();
    for f in discovery.functions.iter().filter(|f| f.is_vf()) {
        if primary.as_deref().is_some_and(|m| f.has_mac(m)) {
            continue;
        }
        let pci = f.pci.to_string();
        let netdev = f.netdev().map(|n| n.name.clone());
        let healthy = match f.binding {
            Binding::Userspace => {
                counts.userspace += 1;
                true
            }
            Binding::Kernel if netdev.is_some() => {
                counts.host += 1;
                true
            }
            Binding::Kernel if in_pod_pcis.contains(&pci) => {
                counts.pod += 1;
                true
            }
            _ => {
                counts.unknown += 1;
                false
            }
        };
        out.push(VfDevice {
            iommu_group: iommu_group(&pci),
            numa_node: f.numa_node.map(i64::from),
            driver: f.driver.clone(),
            netdev,
            pci,
            healthy,
        });
    }
    (out, counts)
}

/// Pure: the node state entries. VNICs whose VF is not visible (inside a
/// pod) keep the PCI address and host name the previous state recorded, so
/// the IPAM plugin and repair still find them.
pub fn state_entries(
    discovery: &Discovery,
    vnics: &[Vnic],
    previous: Option<&NodeState>,
    mtu: u32,
) -> Vec<VnicState> {
    let mut out = Vec::new();
    for (i, v) in vnics.iter().enumerate() {
        let is_primary = i == 0;
        let mtu = (!is_primary).then_some(mtu);
        let funcs = discovery.by_mac(&v.mac_lower());
        if funcs.is_empty() {
            let old: Vec<&VnicState> = previous
                .map(|p| p.vnics.iter().filter(|s| s.mac == v.mac_lower()).collect())
                .unwrap_or_default();
            if old.is_empty() {
                out.push(VnicState::from_vnic(v, is_primary, None, None, mtu));
            }
            for o in old {
                out.push(VnicState::from_vnic(
                    v,
                    is_primary,
                    o.ifname.clone(),
                    o.pci.clone(),
                    mtu,
                ));
            }
            continue;
        }
        for f in funcs {
            let ifname = f
                .netdevs
                .iter()
                .find(|n| n.mac.as_deref() == Some(v.mac_lower().as_str()))
                .map(|n| n.name.clone());
            out.push(VnicState::from_vnic(
                v,
                is_primary,
                ifname,
                Some(f.pci.to_string()),
                mtu,
            ));
        }
    }
    out
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

    // 2. Host configuration of the secondary VNICs present on the host.
    let (pod_macs, pod_pcis) = in_pod(&hd);
    let current = seams.net.current(&cfg.vnic)?;
    report.plan = vnic::plan(&cfg.vnic, &vnics, &current, &pod_macs);
    report.applied = vnic::apply(seams.net, &report.plan);

    // 3. Devices and node state from sysfs.
    let discovery = match plexus_sysfs::discover(&cfg.sysfs_root) {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(error = %e, root = %cfg.sysfs_root.display(), "sysfs discovery failed");
            Discovery {
                functions: Vec::new(),
            }
        }
    };
    let root = cfg.sysfs_root.clone();
    let (devices, counts) = vf_devices(&discovery, &vnics, &pod_pcis, &|pci| {
        iommu_group_of(&root, pci)
    });
    report.devices = devices;
    report.counts = counts;
    let entries = state_entries(&discovery, &vnics, previous.as_ref(), cfg.vnic.mtu);
    if previous.as_ref().map(|p| &p.vnics) != Some(&entries) {
        NodeState::new(entries, SystemTime::now()).write_atomic(&cfg.state_path)?;
        report.state_written = true;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use plexus_sysfs::{NetDev, PciAddr, PciFunction, Role};

    fn func(pci: &str, mac: Option<&str>, binding: Binding) -> PciFunction {
        PciFunction {
            pci: pci.parse::<PciAddr>().unwrap(),
            vendor: "15b3".into(),
            device: "101e".into(),
            class: None,
            driver: Some(match binding {
                Binding::Userspace => "vfio-pci".into(),
                _ => "mlx5_core".into(),
            }),
            binding,
            numa_node: Some(0),
            role: Role::Vf { pf: None },
            vf_model: None,
            netdevs: mac
                .map(|m| {
                    vec![NetDev {
                        name: format!("ens{}", &pci[pci.len() - 3..pci.len() - 2]),
                        mac: Some(m.into()),
                        operstate: None,
                        mtu: None,
                    }]
                })
                .unwrap_or_default(),
        }
    }

    fn vnic(mac: &str, ip: &str) -> Vnic {
        serde_json::from_value(serde_json::json!({
            "vnicId": format!("ocid1.vnic.{mac}"), "privateIp": ip, "macAddr": mac,
            "virtualRouterIp": "203.0.113.1", "subnetCidrBlock": "203.0.113.0/24"}))
        .unwrap()
    }

    #[test]
    fn devices_skip_primary_and_health_follows_link_presence() {
        let d = Discovery {
            functions: vec![
                func("0000:00:03.0", Some("02:00:00:00:00:01"), Binding::Kernel),
                func("0000:00:05.0", Some("02:00:00:00:00:02"), Binding::Kernel),
                func("0000:00:06.0", None, Binding::Kernel),
                func("0000:00:07.0", None, Binding::Kernel),
                func("0000:00:08.0", None, Binding::Userspace),
            ],
        };
        let vnics = vec![vnic("02:00:00:00:00:01", "203.0.113.2")];
        let pods = BTreeSet::from(["0000:00:06.0".to_string()]);
        let (devs, counts) = vf_devices(&d, &vnics, &pods, &|_| Some("9".into()));
        let got: Vec<_> = devs.iter().map(|v| (v.pci.as_str(), v.healthy)).collect();
        assert_eq!(
            got,
            vec![
                ("0000:00:05.0", true),
                ("0000:00:06.0", true),
                ("0000:00:07.0", false),
                ("0000:00:08.0", true)
            ]
        );
        assert_eq!(
            counts,
            VfCounts {
                host: 1,
                pod: 1,
                userspace: 1,
                unknown: 1
            }
        );
    }

    #[test]
    fn state_keeps_pci_of_vf_inside_a_pod() {
        let vnics = vec![
            vnic("02:00:00:00:00:01", "203.0.113.2"),
            vnic("02:00:00:00:00:02", "203.0.113.3"),
        ];
        let on_host = Discovery {
            functions: vec![func(
                "0000:00:05.0",
                Some("02:00:00:00:00:02"),
                Binding::Kernel,
            )],
        };
        let first = state_entries(&on_host, &vnics, None, 9000);
        assert_eq!(first[1].pci.as_deref(), Some("0000:00:05.0"));
        assert_eq!(first[1].ifname.as_deref(), Some("ens5"));
        assert!(first[0].is_primary && first[0].pci.is_none());
        let prev = NodeState::new(first.clone(), SystemTime::now());
        let in_pod = Discovery {
            functions: vec![func("0000:00:05.0", None, Binding::Kernel)],
        };
        let second = state_entries(&in_pod, &vnics, Some(&prev), 9000);
        assert_eq!(second, first);
    }
}
