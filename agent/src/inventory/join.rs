//! The pure join of sysfs discovery, the node's NICs and pod claims.

use plexus_imds::node_state::NodeState;
use plexus_imds::NodeNic;
use plexus_sysfs::{Binding, Discovery, PciAddr, PciFunction};

use super::{Entry, Inventory, Issue, Location, PodClaim, UnmatchedVnic};

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

/// One device: what sysfs shows, else what a pod claim or the previous
/// state file remembers about it.
fn entry_of(f: &PciFunction, claims: &[PodClaim], previous: Option<&NodeState>) -> Entry {
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
}

/// The pure join of discovery, VNICs and pod claims.
pub fn join(
    discovery: &Discovery,
    vnics: &[NodeNic],
    claims: &[PodClaim],
    previous: Option<&NodeState>,
) -> Inventory {
    let mut inv = Inventory {
        entries: (discovery.functions.iter())
            .map(|f| entry_of(f, claims, previous))
            .collect(),
        unmatched_vnics: Vec::new(),
        issues: Vec::new(),
    };
    for (i, vnic) in vnics.iter().enumerate() {
        inv.assign(vnic, i == 0);
    }
    let unknown: Vec<PciAddr> = (inv.entries.iter())
        .filter(|e| e.mac.is_none() && e.is_vf)
        .map(|e| e.pci)
        .collect();
    (inv.issues).extend(unknown.into_iter().map(|pci| Issue::UnknownMac { pci }));
    inv
}

impl Inventory {
    /// Gives `vnic` to the device carrying its MAC; of several, to the VFs
    /// among them (see the module docs), reporting what it could not decide.
    fn assign(&mut self, vnic: &NodeNic, is_primary: bool) {
        let mac = vnic.mac.clone();
        let holders: Vec<usize> = (self.entries.iter().enumerate())
            .filter(|(_, e)| e.mac.as_deref() == Some(mac.as_str()))
            .map(|(idx, _)| idx)
            .collect();
        let unmatched = UnmatchedVnic {
            vnic: vnic.clone(),
            is_primary,
        };
        if holders.is_empty() {
            self.issues.push(Issue::VnicWithoutDevice {
                vnic_id: vnic.id.clone(),
                mac,
            });
            self.unmatched_vnics.push(unmatched);
            return;
        }
        let assigned: Vec<usize> = if holders.len() == 1 {
            holders.clone()
        } else {
            let vfs = holders.iter().copied();
            vfs.filter(|&idx| self.entries[idx].is_vf).collect()
        };
        if holders.len() > 1 {
            let pcis = |ids: &[usize]| ids.iter().map(|&idx| self.entries[idx].pci).collect();
            self.issues.push(Issue::SharedMac {
                mac,
                vnic_id: vnic.id.clone(),
                devices: pcis(&holders),
                assigned: pcis(&assigned),
            });
        }
        if assigned.is_empty() {
            self.unmatched_vnics.push(unmatched);
        }
        for idx in assigned {
            self.entries[idx].vnic = Some(vnic.clone());
            self.entries[idx].is_primary = is_primary;
        }
    }
}
