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
use plexus_sysfs::{Binding, Discovery, PciAddr, PciError};
use serde::Serialize;

use crate::metrics::VfCounts;

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

/// Something the operator should know; never fatal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Issue {
    /// IMDS lists a VNIC whose MAC no device has (attach lag, or the VF is
    /// bound to a userspace driver with no remembered MAC).
    VnicWithoutDevice {
        /// VNIC OCID.
        vnic_id: String,
        /// Its MAC, lower-case.
        mac: String,
    },
    /// Several devices carry one VNIC's MAC.
    SharedMac {
        /// The MAC.
        mac: String,
        /// VNIC OCID.
        vnic_id: String,
        /// All devices with the MAC.
        devices: Vec<PciAddr>,
        /// Devices given the VNIC (VFs), empty when none could be chosen.
        assigned: Vec<PciAddr>,
    },
    /// A device whose MAC cannot be known (userspace-bound or moved without
    /// a cache record), so it cannot be matched.
    UnknownMac {
        /// The device.
        pci: PciAddr,
    },
}

impl std::fmt::Display for Issue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let list = |v: &[PciAddr]| {
            v.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        match self {
            Issue::VnicWithoutDevice { vnic_id, mac } => {
                write!(f, "VNIC {vnic_id} (MAC {mac}) matches no device on this node")
            }
            Issue::SharedMac {
                mac,
                vnic_id,
                devices,
                assigned,
            } if assigned.is_empty() => write!(
                f,
                "MAC {mac} of VNIC {vnic_id} is on {} devices ({}) and none is a VF: not assigned",
                devices.len(),
                list(devices)
            ),
            Issue::SharedMac {
                mac,
                vnic_id,
                devices,
                assigned,
            } if assigned.len() > 1 => write!(
                f,
                "VNIC {vnic_id} (MAC {mac}) is presented as {} VFs ({}): give a pod all of them or bond them; one VF alone shares the VNIC's address",
                assigned.len(),
                list(assigned)
            ),
            Issue::SharedMac {
                mac,
                vnic_id,
                devices,
                assigned,
            } => write!(
                f,
                "MAC {mac} of VNIC {vnic_id} is on {} devices ({}); the VF {} carries the VNIC",
                devices.len(),
                list(devices),
                list(assigned)
            ),
            Issue::UnknownMac { pci } => {
                write!(f, "device {pci} has no readable MAC; cannot match it to a VNIC")
            }
        }
    }
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

fn claim_for<'a>(
    claims: &'a [PodClaim],
    pci: &PciAddr,
    mac: Option<&str>,
    ifname: Option<&str>,
) -> Option<&'a PodClaim> {
    claims
        .iter()
        .find(|c| c.pci.as_ref() == Some(pci))
        .or_else(|| {
            let mac = mac?;
            claims
                .iter()
                .find(|c| c.pci.is_none() && c.mac.as_deref() == Some(mac))
        })
        .or_else(|| {
            let name = ifname?;
            claims.iter().find(|c| {
                c.pci.is_none() && c.mac.is_none() && c.host_ifname.as_deref() == Some(name)
            })
        })
}

/// The pure join of discovery, VNICs and pod claims.
pub fn join(
    discovery: &Discovery,
    vnics: &[NodeNic],
    claims: &[PodClaim],
    previous: Option<&NodeState>,
) -> Inventory {
    let mut issues = Vec::new();
    let mut entries: Vec<Entry> = discovery
        .functions
        .iter()
        .map(|f| {
            let net = f.netdev();
            let visible_mac = net.and_then(|n| n.mac.clone());
            let visible_name = net.map(|n| n.name.clone());
            let claim = claim_for(
                claims,
                &f.pci,
                visible_mac.as_deref(),
                visible_name.as_deref(),
            );
            let remembered = previous.and_then(|s| s.find_by_pci(&f.pci.to_string()));
            let mac = visible_mac
                .or_else(|| claim.and_then(|c| c.mac.clone()))
                .or_else(|| remembered.map(|r| r.mac.clone()));
            let ifname = visible_name
                .or_else(|| claim.and_then(|c| c.host_ifname.clone()))
                .or_else(|| remembered.and_then(|r| r.ifname.clone()));
            let location = match (claim, f.binding, net) {
                (Some(c), _, _) => Location::Pod(c.pod.clone()),
                (None, Binding::Userspace, _) => Location::Userspace,
                (None, _, Some(_)) => Location::Host,
                (None, _, None) => Location::Unknown,
            };
            Entry {
                pci: f.pci,
                ifname,
                mac,
                driver: f.driver.clone(),
                pci_id: format!("{}:{}", f.vendor, f.device),
                model: f.vf_model.clone(),
                is_vf: f.is_vf(),
                is_pf: matches!(f.role, plexus_sysfs::Role::Pf { .. }),
                mtu: net.and_then(|n| n.mtu),
                vnic: None,
                is_primary: false,
                location,
            }
        })
        .collect();

    let mut unmatched_vnics = Vec::new();
    for (i, vnic) in vnics.iter().enumerate() {
        let mac = vnic.mac.clone();
        let holders: Vec<usize> = entries
            .iter()
            .enumerate()
            .filter(|(_, e)| e.mac.as_deref() == Some(mac.as_str()))
            .map(|(idx, _)| idx)
            .collect();
        if holders.is_empty() {
            issues.push(Issue::VnicWithoutDevice {
                vnic_id: vnic.id.clone(),
                mac,
            });
            unmatched_vnics.push(UnmatchedVnic {
                vnic: vnic.clone(),
                is_primary: i == 0,
            });
            continue;
        }
        let assigned: Vec<usize> = if holders.len() == 1 {
            holders.clone()
        } else {
            holders
                .iter()
                .copied()
                .filter(|&idx| entries[idx].is_vf)
                .collect()
        };
        if holders.len() > 1 {
            issues.push(Issue::SharedMac {
                mac,
                vnic_id: vnic.id.clone(),
                devices: holders.iter().map(|&idx| entries[idx].pci).collect(),
                assigned: assigned.iter().map(|&idx| entries[idx].pci).collect(),
            });
        }
        if assigned.is_empty() {
            unmatched_vnics.push(UnmatchedVnic {
                vnic: vnic.clone(),
                is_primary: i == 0,
            });
        }
        for idx in assigned {
            entries[idx].vnic = Some(vnic.clone());
            entries[idx].is_primary = i == 0;
        }
    }
    for e in &entries {
        if e.mac.is_none() && e.is_vf {
            issues.push(Issue::UnknownMac { pci: e.pci });
        }
    }
    Inventory {
        entries,
        unmatched_vnics,
        issues,
    }
}

/// A sample node for this module's and `status`' tests.
#[cfg(test)]
pub(crate) mod sample {
    use super::*;
    use plexus_imds::Vnic;
    use plexus_sysfs::testing::{macs, oci_vm_node};

    /// MAC of the VF at 0000:00:08.0, now in a pod.
    pub const MAC_IN_POD: &str = "02:00:17:00:00:08";
    /// A VNIC no device carries.
    pub const MAC_MISSING: &str = "02:00:17:00:00:77";

    pub fn vnic(id: &str, mac: &str, ip: &str, subnet: &str, gw: &str) -> Vnic {
        serde_json::from_value(serde_json::json!({
            "vnicId": format!("ocid1.vnic.oc1.phx.{id}"), "privateIp": ip, "macAddr": mac.to_uppercase(),
            "virtualRouterIp": gw, "subnetCidrBlock": subnet
        }))
        .unwrap()
    }

    pub fn vnics() -> Vec<Vnic> {
        vec![
            vnic(
                "primary",
                macs::PRIMARY,
                "198.51.100.10",
                "198.51.100.0/24",
                "198.51.100.1",
            ),
            vnic(
                "single",
                macs::SINGLE_VF,
                "198.51.100.20",
                "198.51.100.0/24",
                "198.51.100.1",
            ),
            vnic(
                "shared",
                macs::SHARED,
                "203.0.113.30",
                "203.0.113.0/25",
                "203.0.113.1",
            ),
            vnic(
                "inpod",
                MAC_IN_POD,
                "198.51.100.40",
                "198.51.100.0/24",
                "198.51.100.1",
            ),
            vnic(
                "missing",
                MAC_MISSING,
                "203.0.113.50",
                "203.0.113.0/25",
                "203.0.113.1",
            ),
        ]
    }

    pub fn claims() -> Vec<PodClaim> {
        vec![PodClaim {
            pci: Some("0000:00:08.0".parse().unwrap()),
            mac: Some(MAC_IN_POD.into()),
            host_ifname: Some("ens8".into()),
            pod: PodRef {
                container_id: "c0ffee".into(),
                pod: Some("default/web-1".into()),
                ifname: Some("net1".into()),
                netns: Some("/var/run/netns/cni-1".into()),
            },
        }]
    }

    /// [`vnics`] as the provider hands them to the agent.
    pub fn nics() -> Vec<NodeNic> {
        vnics().iter().map(NodeNic::from).collect()
    }

    /// The generated OCI VM node joined with [`vnics`] and [`claims`].
    pub fn inventory() -> Inventory {
        let dir = tempfile::tempdir().unwrap();
        let node = oci_vm_node(dir.path()).unwrap();
        let d = plexus_sysfs::discover(node.root()).unwrap();
        join(&d, &nics(), &claims(), None)
    }
}

#[cfg(test)]
mod tests {
    use super::sample::*;
    use super::*;
    use plexus_imds::testing::StaticMetadata;
    use plexus_sysfs::testing::{macs, oci_vm_node, FakeSysfs, FunctionSpec};
    use std::time::UNIX_EPOCH;

    fn pci(s: &str) -> PciAddr {
        s.parse().unwrap()
    }

    fn entry<'a>(inv: &'a Inventory, p: &str) -> &'a Entry {
        inv.entries.iter().find(|e| e.pci == pci(p)).unwrap()
    }

    #[test]
    fn joins_devices_vnics_and_pods() {
        let inv = inventory();
        assert_eq!(inv.entries.len(), 10);
        let primary = entry(&inv, "0000:00:03.0");
        assert!(primary.is_primary && !primary.is_vf);
        assert_eq!(primary.location, Location::Host);
        let single = entry(&inv, "0000:00:04.0");
        assert_eq!(
            single.vnic.as_ref().unwrap().id,
            "ocid1.vnic.oc1.phx.single"
        );
        for p in ["0000:00:05.0", "0000:00:06.0"] {
            assert_eq!(
                entry(&inv, p).vnic.as_ref().unwrap().id,
                "ocid1.vnic.oc1.phx.shared"
            );
        }
        assert_eq!(entry(&inv, "0000:00:07.0").location, Location::Userspace);
        let in_pod = entry(&inv, "0000:00:08.0");
        assert_eq!(in_pod.mac.as_deref(), Some(MAC_IN_POD));
        assert_eq!(in_pod.ifname.as_deref(), Some("ens8"));
        assert!(
            matches!(&in_pod.location, Location::Pod(p) if p.pod.as_deref() == Some("default/web-1"))
        );
        assert_eq!(
            in_pod.vnic.as_ref().unwrap().address.ip.to_string(),
            "198.51.100.40"
        );
        assert!(entry(&inv, "0000:3b:00.2").vnic.is_none());
        assert_eq!(
            inv.counts(),
            VfCounts {
                host: 6,
                pod: 1,
                userspace: 1,
                unknown: 0
            }
        );
        assert_eq!(inv.unmatched_vnics.len(), 1);
        let text: Vec<String> = inv.issues.iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            vec![
                "VNIC ocid1.vnic.oc1.phx.shared (MAC 02:00:17:00:00:03) is presented as 2 VFs (0000:00:05.0, 0000:00:06.0): give a pod all of them or bond them; one VF alone shares the VNIC's address",
                "VNIC ocid1.vnic.oc1.phx.missing (MAC 02:00:17:00:00:77) matches no device on this node",
                "device 0000:00:07.0 has no readable MAC; cannot match it to a VNIC",
                "device 0000:00:09.0 has no readable MAC; cannot match it to a VNIC",
            ]
        );
    }

    #[test]
    fn failover_standby_never_wins_over_the_vf_and_non_vfs_are_not_guessed() {
        let dir = tempfile::tempdir().unwrap();
        let s = FakeSysfs::new(dir.path()).unwrap();
        let mac = "02:00:17:00:00:aa";
        let virtio = |p: &str, n: &str| FunctionSpec {
            virtio: true,
            ..FunctionSpec::new(p, 0x1af4, 0x1000)
                .driver("virtio-pci")
                .netdev(n, Some(mac))
        };
        s.add_function(&virtio("0000:00:03.0", "ens3")).unwrap();
        s.add_function(
            &FunctionSpec::new("0000:00:04.0", 0x15b3, 0x101e)
                .driver("mlx5_core")
                .netdev("ens4", Some(mac)),
        )
        .unwrap();
        let d = plexus_sysfs::discover(s.root()).unwrap();
        let v = vec![NodeNic::from(&vnic(
            "p",
            mac,
            "198.51.100.10",
            "198.51.100.0/24",
            "198.51.100.1",
        ))];
        let inv = join(&d, &v, &[], None);
        assert!(entry(&inv, "0000:00:04.0").vnic.is_some());
        assert!(entry(&inv, "0000:00:03.0").vnic.is_none());
        assert!(inv.issues[0]
            .to_string()
            .contains("the VF 0000:00:04.0 carries the VNIC"));

        let dir = tempfile::tempdir().unwrap();
        let s = FakeSysfs::new(dir.path()).unwrap();
        s.add_function(&virtio("0000:00:03.0", "ens3")).unwrap();
        s.add_function(&virtio("0000:00:04.0", "ens4")).unwrap();
        let d = plexus_sysfs::discover(s.root()).unwrap();
        let inv = join(&d, &v, &[], None);
        assert!(inv.entries.iter().all(|e| e.vnic.is_none()));
        assert!(
            inv.issues[0]
                .to_string()
                .contains("none is a VF: not assigned"),
            "{}",
            inv.issues[0]
        );
        assert_eq!(inv.unmatched_vnics.len(), 1);
    }

    #[test]
    fn previous_state_remembers_macs_of_moved_devices() {
        let dir = tempfile::tempdir().unwrap();
        let node = oci_vm_node(dir.path()).unwrap();
        let before = join(
            &plexus_sysfs::discover(node.root()).unwrap(),
            &nics(),
            &[],
            None,
        );
        let state = before.to_node_state(UNIX_EPOCH);
        node.hide_netdev("ens4").unwrap();
        let after = join(
            &plexus_sysfs::discover(node.root()).unwrap(),
            &nics(),
            &[],
            Some(&state),
        );
        let e = entry(&after, "0000:00:04.0");
        assert_eq!(e.location, Location::Unknown);
        assert_eq!(e.mac.as_deref(), Some(macs::SINGLE_VF));
        assert_eq!(e.ifname.as_deref(), Some("ens4"));
        assert!(e.vnic.is_some());
        // 0000:00:08.0 too: kernel-bound, no netdev, no pod claim given here.
        assert_eq!(after.counts().unknown, 2);
    }

    #[test]
    fn node_state_has_devices_then_unmatched_vnics() {
        let state = inventory().to_node_state(UNIX_EPOCH);
        let rows: Vec<(Option<&str>, String, bool)> = state
            .vnics
            .iter()
            .map(|v| (v.pci.as_deref(), v.ip.to_string(), v.is_primary))
            .collect();
        assert_eq!(
            rows,
            vec![
                (Some("0000:00:03.0"), "198.51.100.10".into(), true),
                (Some("0000:00:04.0"), "198.51.100.20".into(), false),
                (Some("0000:00:05.0"), "203.0.113.30".into(), false),
                (Some("0000:00:06.0"), "203.0.113.30".into(), false),
                (Some("0000:00:08.0"), "198.51.100.40".into(), false),
                (None, "203.0.113.50".into(), false),
            ]
        );
        assert!(state.vnics.iter().all(|v| v.mtu == Some(9000)));
        assert_eq!(
            state.find_by_pci("0000:00:08.0").unwrap().ifname.as_deref(),
            Some("ens8")
        );
    }

    #[test]
    fn build_reads_all_three_sources() {
        let dir = tempfile::tempdir().unwrap();
        let node = oci_vm_node(dir.path()).unwrap();
        let meta = StaticMetadata::new(vnics(), None);
        let inv = build(node.root(), &meta, &StaticPodLocations(claims()), None).unwrap();
        assert_eq!(inv, inventory());
        let err = build(
            node.root(),
            &StaticMetadata::failing(429),
            &StaticPodLocations::default(),
            None,
        )
        .unwrap_err();
        assert!(err.to_string().contains("HTTP 429"), "{err}");
    }

    #[test]
    fn reads_host_device_records_and_meta_plugin_cache() {
        let dir = tempfile::tempdir().unwrap();
        let hd = dir.path().join("hd");
        let meta = dir.path().join("plexus");
        std::fs::create_dir_all(&hd).unwrap();
        std::fs::create_dir_all(&meta).unwrap();
        std::fs::write(
            hd.join("c0ffee-net1.json"),
            serde_json::json!({"containerId": "c0ffee", "ifname": "net1", "netns": "/var/run/netns/cni-1",
                "host": {"name": "ens8", "mac": "02:00:17:00:00:08", "pci": "0000:00:08.0", "mtu": 9000, "up": true,
                         "addresses": [], "routes": []}, "userspace": false})
            .to_string(),
        )
        .unwrap();
        std::fs::write(
            hd.join("dpdk-net2.json"),
            serde_json::json!({"containerId": "dpdk", "ifname": "net2", "netns": "/x",
                "host": {"name": "", "pci": "0000:00:07.0", "mtu": 0, "up": false}, "userspace": true})
            .to_string(),
        )
        .unwrap();
        std::fs::write(hd.join("garbage.json"), "{oops").unwrap();
        std::fs::write(hd.join("c0ffee.lock"), "").unwrap();
        std::fs::write(
            meta.join("c0ffee-eth0.json"),
            serde_json::json!({"kind": "plexusCacheV1", "containerId": "c0ffee", "ifname": "eth0",
                "pod": {"namespace": "default", "name": "web-1", "uid": "u"}, "attachments": []})
            .to_string(),
        )
        .unwrap();
        let src = crate::caches::CniCacheLocations {
            host_device_dir: hd,
            plexus_dir: meta,
        };
        let claims = src.pod_claims().unwrap();
        assert_eq!(claims.len(), 2);
        assert_eq!(claims[0], sample::claims()[0]);
        assert_eq!(claims[1].pci, Some(pci("0000:00:07.0")));
        assert_eq!(claims[1].pod.pod, None);
        assert_eq!(claims[1].host_ifname, None);
        let missing = crate::caches::CniCacheLocations {
            host_device_dir: dir.path().join("nope"),
            plexus_dir: dir.path().join("nope2"),
        };
        assert!(missing.pod_claims().unwrap().is_empty());
    }
}
