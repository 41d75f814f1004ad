//! Self-repair of what destroyed pods leave behind.
//!
//! When a pod's namespace dies before host-device's DEL ran (force delete,
//! runtime crash, Multus #1134), the kernel returns the physical VF to the
//! host under the name it had in the pod (`net1`) and down. We rename such a
//! VF back to its host name and let the VNIC apply path restore its MTU,
//! address, table and rule. A VF is ours only if its MAC belongs to a
//! secondary VNIC: nothing else is ever renamed.
//!
//! The original name comes from host-device's per-attachment records (read
//! in host-device's own type, see [`crate::caches`]) and, failing that, from
//! the name the node state file recorded for the VNIC. Records of the meta
//! plugin and of host-device whose pod namespace no longer exists are
//! collected.
//!
//! [`plan_repair`] is pure; [`apply_repair`] performs the plan through
//! [`RepairOps`].

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use plexus_imds::normalize_mac;
use serde::Serialize;

use crate::caches::{CacheEntry, CniCaches, HostDeviceRecord, Stored};
/// Records of dead pods are kept this long: the kubelet still calls DEL for
/// a sandbox whose namespace is gone, and DEL needs the record to release
/// what ADD took. Only leftovers nobody cleaned up are collected.
pub const COLLECT_GRACE: Duration = Duration::from_secs(300);

/// A host link, as far as repair cares.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HostLink {
    pub name: String,
    /// Lower-case MAC.
    pub mac: String,
    /// PCI address of the parent device, if any (veths have none).
    pub pci: Option<String>,
}

/// One cache or state file and what it says about its pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CacheRecord {
    pub path: PathBuf,
    /// `CNI_NETNS` of the attachment, if recorded.
    pub netns: Option<PathBuf>,
    /// Whether `netns` still exists (resolved by the reader).
    pub netns_alive: bool,
    /// Time since the file was last written.
    pub age: Duration,
    /// host-device only: the device's PCI address, MAC and host name.
    pub pci: Option<String>,
    pub mac: Option<String>,
    pub host_name: Option<String>,
}

/// A secondary VNIC the node knows: its MAC and the host name it should have.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KnownVf {
    pub mac: String,
    pub pci: Option<String>,
    /// Name recorded by the inventory (fallback when no host-device record).
    pub host_name: Option<String>,
}

/// What repair does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum RepairAction {
    /// Set down and rename; the VNIC apply path brings it up configured.
    Rename { from: String, to: String },
    /// Remove a cache/state file of a pod whose namespace is gone.
    Collect { path: PathBuf },
}

/// Findings that need a human or a later pass.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RepairNote {
    pub link: String,
    pub reason: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RepairPlan {
    pub actions: Vec<RepairAction>,
    pub notes: Vec<RepairNote>,
}

impl RepairPlan {
    pub fn is_empty(&self) -> bool {
        self.actions.is_empty()
    }
}

/// Pure: renames for VFs that sit on the host under a name that is not
/// theirs, then collection of records of dead pods.
pub fn plan_repair(
    links: &[HostLink],
    known: &[KnownVf],
    host_device: &[CacheRecord],
    meta_cache: &[CacheRecord],
) -> RepairPlan {
    let mut plan = RepairPlan::default();
    let taken: BTreeSet<&str> = links.iter().map(|l| l.name.as_str()).collect();
    let mut claimed: BTreeSet<String> = BTreeSet::new();
    for link in links {
        let Some(vf) = known.iter().find(|k| {
            k.mac == link.mac || (k.pci.is_some() && k.pci.as_deref() == link.pci.as_deref())
        }) else {
            continue;
        };
        // Records of live pods describe VFs that are (still) inside them.
        let record = host_device
            .iter()
            .filter(|r| !r.netns_alive)
            .find(|r| {
                (r.pci.is_some() && r.pci == link.pci)
                    || r.mac.as_deref() == Some(link.mac.as_str())
            })
            .and_then(|r| r.host_name.clone());
        let Some(want) = record.or_else(|| vf.host_name.clone()) else {
            continue;
        };
        if want == link.name {
            continue;
        }
        if taken.contains(want.as_str()) || !claimed.insert(want.clone()) {
            plan.notes.push(RepairNote {
                link: link.name.clone(),
                reason: format!("should be named {want}, but that name is taken"),
            });
            continue;
        }
        plan.actions.push(RepairAction::Rename {
            from: link.name.clone(),
            to: want,
        });
    }
    let mut stale: Vec<&CacheRecord> = host_device
        .iter()
        .chain(meta_cache)
        .filter(|r| r.netns.is_some() && !r.netns_alive && r.age >= COLLECT_GRACE)
        .collect();
    stale.sort_by(|a, b| a.path.cmp(&b.path));
    plan.actions
        .extend(stale.into_iter().map(|r| RepairAction::Collect {
            path: r.path.clone(),
        }));
    plan
}

/// Side effects of repair.
pub trait RepairOps {
    /// Links of the namespace with a MAC, for [`plan_repair`].
    fn links(&self) -> Result<Vec<HostLink>, String>;
    fn rename(&self, from: &str, to: &str) -> Result<(), String>;
    fn remove(&self, path: &Path) -> Result<(), String>;
}

/// Performs every action, past single failures (teardown is best-effort);
/// returns the failures.
pub fn apply_repair(ops: &dyn RepairOps, plan: &RepairPlan) -> Vec<(RepairAction, String)> {
    let mut failed = Vec::new();
    for a in &plan.actions {
        let res = match a {
            RepairAction::Rename { from, to } => ops.rename(from, to),
            RepairAction::Collect { path } => ops.remove(path),
        };
        match res {
            Ok(()) => tracing::info!(action = ?a, "repaired"),
            Err(e) => {
                tracing::warn!(action = ?a, error = %e, "repair failed");
                failed.push((a.clone(), e));
            }
        }
    }
    failed
}

impl CacheRecord {
    fn of<T>(s: &Stored<T>, netns: &str) -> Self {
        Self {
            path: s.path.clone(),
            netns: Some(PathBuf::from(netns)).filter(|p| !p.as_os_str().is_empty()),
            netns_alive: s.netns_alive,
            age: s.age,
            pci: None,
            mac: None,
            host_name: None,
        }
    }
}

impl From<&Stored<HostDeviceRecord>> for CacheRecord {
    fn from(s: &Stored<HostDeviceRecord>) -> Self {
        let host = &s.record.host;
        Self {
            pci: host.pci.map(|p| p.to_string()),
            mac: host.mac.as_deref().map(normalize_mac),
            host_name: Some(host.name.clone()).filter(|n| !n.is_empty()),
            ..Self::of(s, &s.record.netns)
        }
    }
}

impl From<&Stored<CacheEntry>> for CacheRecord {
    fn from(s: &Stored<CacheEntry>) -> Self {
        Self::of(s, &s.record.netns)
    }
}

impl CniCaches {
    /// host-device's records as [`plan_repair`] reads them.
    pub fn host_device_records(&self) -> Vec<CacheRecord> {
        self.host_device.iter().map(CacheRecord::from).collect()
    }

    /// The meta plugin's entries as [`plan_repair`] reads them.
    pub fn meta_records(&self) -> Vec<CacheRecord> {
        self.meta.iter().map(CacheRecord::from).collect()
    }
}

/// Paths a plan removes, to drop them from a snapshot read before it ran.
pub fn collected(plan: &RepairPlan) -> BTreeSet<PathBuf> {
    plan.actions
        .iter()
        .filter_map(|a| match a {
            RepairAction::Collect { path } => Some(path.clone()),
            RepairAction::Rename { .. } => None,
        })
        .collect()
}

/// Real [`RepairOps`]: netlink in the target namespace plus the filesystem.
pub struct NetlinkRepair {
    handle: plexus_netlink::Handle,
}

impl std::fmt::Debug for NetlinkRepair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetlinkRepair").finish_non_exhaustive()
    }
}

impl NetlinkRepair {
    pub fn new(handle: plexus_netlink::Handle) -> Self {
        Self { handle }
    }
}

impl RepairOps for NetlinkRepair {
    fn links(&self) -> Result<Vec<HostLink>, String> {
        let links = self.handle.links().map_err(|e| e.to_string())?;
        Ok(links
            .into_iter()
            .filter_map(|l| {
                Some(HostLink {
                    mac: l.mac.as_ref()?.to_string(),
                    pci: l
                        .parent_dev
                        .filter(|_| l.parent_bus.as_deref() == Some("pci")),
                    name: l.name,
                })
            })
            .collect())
    }

    fn rename(&self, from: &str, to: &str) -> Result<(), String> {
        let link = self.handle.link_by_name(from).map_err(|e| e.to_string())?;
        // The kernel refuses to rename a running device.
        self.handle
            .set_link_up(link.index, false)
            .map_err(|e| e.to_string())?;
        self.handle
            .rename(link.index, to)
            .map_err(|e| e.to_string())
    }

    fn remove(&self, path: &Path) -> Result<(), String> {
        match fs::remove_file(path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(format!("{}: {e}", path.display())),
        }
    }
}

/// Known secondary VFs from the node's NICs (primary excluded) and the names the
/// node state file last recorded for them.
pub fn known_vfs(
    vnics: &[plexus_imds::NodeNic],
    state: Option<&plexus_imds::node_state::NodeState>,
) -> Vec<KnownVf> {
    let names: BTreeMap<String, (Option<String>, Option<String>)> = state
        .map(|s| {
            s.vnics
                .iter()
                .map(|v| (v.mac.clone(), (v.ifname.clone(), v.pci.clone())))
                .collect()
        })
        .unwrap_or_default();
    vnics
        .iter()
        .skip(1)
        .map(|v| {
            let mac = v.mac.clone();
            let (host_name, pci) = names.get(&mac).cloned().unwrap_or((None, None));
            KnownVf {
                mac,
                pci,
                host_name,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(name: &str, mac: &str) -> HostLink {
        HostLink {
            name: name.into(),
            mac: mac.into(),
            pci: None,
        }
    }

    fn rec(path: &str, alive: bool, mac: Option<&str>, name: Option<&str>) -> CacheRecord {
        CacheRecord {
            path: path.into(),
            netns: Some("/run/netns/x".into()),
            netns_alive: alive,
            age: COLLECT_GRACE,
            pci: None,
            mac: mac.map(String::from),
            host_name: name.map(String::from),
        }
    }

    #[test]
    fn renames_only_known_vfs_and_collects_dead_pods() {
        let links = vec![
            link("eth0", "02:00:00:00:00:01"),
            link("net1", "02:00:00:00:00:02"),
            link("net2", "02:00:00:00:00:03"),
            link("ens7", "02:00:00:00:00:04"),
        ];
        let known = vec![
            KnownVf {
                mac: "02:00:00:00:00:02".into(),
                pci: None,
                host_name: Some("from-inventory".into()),
            },
            KnownVf {
                mac: "02:00:00:00:00:03".into(),
                pci: None,
                host_name: Some("ens6".into()),
            },
            KnownVf {
                mac: "02:00:00:00:00:04".into(),
                pci: None,
                host_name: Some("ens7".into()),
            },
        ];
        let hd = vec![
            rec("/hd/a.json", false, Some("02:00:00:00:00:02"), Some("ens5")),
            rec("/hd/b.json", true, Some("02:00:00:00:00:04"), Some("ens9")),
        ];
        let meta = vec![
            rec("/m/c.json", false, None, None),
            rec("/m/d.json", true, None, None),
        ];
        let p = plan_repair(&links, &known, &hd, &meta);
        assert_eq!(
            p.actions,
            vec![
                RepairAction::Rename {
                    from: "net1".into(),
                    to: "ens5".into()
                },
                RepairAction::Rename {
                    from: "net2".into(),
                    to: "ens6".into()
                },
                RepairAction::Collect {
                    path: "/hd/a.json".into()
                },
                RepairAction::Collect {
                    path: "/m/c.json".into()
                },
            ]
        );
    }

    #[test]
    fn taken_name_is_a_note_not_a_collision() {
        let links = vec![
            link("net1", "02:00:00:00:00:02"),
            link("ens5", "aa:00:00:00:00:09"),
        ];
        let known = vec![KnownVf {
            mac: "02:00:00:00:00:02".into(),
            pci: None,
            host_name: Some("ens5".into()),
        }];
        let p = plan_repair(&links, &known, &[], &[]);
        assert!(p.actions.is_empty());
        assert_eq!(p.notes.len(), 1);
    }
}
