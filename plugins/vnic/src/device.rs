//! Which device the delegate config names, resolved in the node's sysfs,
//! and its entry in the agent's state file.

use std::path::Path;

use plexus_imds::node_state::{NodeState, VnicState};
use plexus_sysfs::discover::{mac_of_netdev, netdevs_with_mac};
use plexus_sysfs::pci::{self, PciAddr};

use crate::{Selector, VnicError};

/// What is known about the device after looking at sysfs (and, when it
/// has left the node, at the pod).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceRef {
    /// Host interface name.
    pub ifname: Option<String>,
    /// MAC, lower-case.
    pub mac: Option<String>,
    /// PCI address.
    pub pci: Option<PciAddr>,
    /// Whether a netdev for the selector is visible on the node.
    pub on_host: bool,
    /// The pod interface the MAC was read from, when not from the node.
    pub mac_from_pod: Option<String>,
}

impl std::fmt::Display for DeviceRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let dash = |o: Option<String>| o.unwrap_or_else(|| "-".into());
        let from = match &self.mac_from_pod {
            Some(i) => format!(" (of {i} in the pod)"),
            None => String::new(),
        };
        write!(
            f,
            "(name {}, MAC {}{from}, PCI {})",
            dash(self.ifname.clone()),
            dash(self.mac.clone()),
            dash(self.pci.map(|p| p.to_string()))
        )
    }
}

/// Fills in what the node's sysfs knows. host-device has usually moved the
/// netdev into the pod already (it runs IPAM after the move), so a name or
/// PCI address may no longer resolve to a netdev here; that is not an error
/// (`on_host` stays false and [`PodLinks`] is asked for the MAC).
pub fn resolve_device(root: &Path, selector: &Selector) -> Result<DeviceRef, VnicError> {
    let mut dev = DeviceRef::default();
    let visible = |name: &str| root.join("sys/class/net").join(name).exists();
    match selector {
        Selector::Name(name) => {
            dev.ifname = Some(name.clone());
            if visible(name) {
                dev.on_host = true;
                dev.mac = mac_of_netdev(root, name)?;
                dev.pci = pci::pci_of_netdev(root, name)?;
            }
        }
        Selector::Mac(mac) => {
            dev.mac = Some(mac.trim().to_ascii_lowercase());
            if let Some(name) = netdevs_with_mac(root, mac)?.into_iter().next() {
                dev.on_host = true;
                dev.pci = pci::pci_of_netdev(root, &name)?;
                dev.ifname = Some(name);
            }
        }
        Selector::KernelPath(path) => {
            dev.pci = Path::new(path)
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.parse().ok());
            if let Ok(name) = pci::netdev_of_kernelpath(root, path) {
                dev.on_host = true;
                dev.mac = mac_of_netdev(root, &name)?;
                dev.ifname = Some(name);
            }
        }
        Selector::Pci(id) => {
            let addr: PciAddr = id.parse()?;
            dev.pci = Some(addr);
            if pci::pci_exists(root, &addr) {
                if let Some(name) = pci::netdevs_of_pci(root, &addr)?.into_iter().next() {
                    dev.on_host = true;
                    dev.mac = mac_of_netdev(root, &name)?;
                    dev.ifname = Some(name);
                }
            }
        }
    }
    Ok(dev)
}

/// The state entry for `dev`: by PCI, then MAC, then host name.
pub fn find_in_state<'a>(state: &'a NodeState, dev: &DeviceRef) -> Option<&'a VnicState> {
    dev.pci
        .and_then(|p| state.find_by_pci(&p.to_string()))
        .or_else(|| dev.mac.as_deref().and_then(|m| state.find_by_mac(m)))
        .or_else(|| {
            let name = dev.ifname.as_deref()?;
            state
                .vnics
                .iter()
                .find(|v| v.ifname.as_deref() == Some(name))
        })
}

/// Whether the MAC must come from the pod: the device is not on the node,
/// sysfs gave no MAC, and the state file cannot answer by PCI. A PCI match
/// wins first and costs no namespace access.
pub fn needs_pod_mac(state: Option<&NodeState>, dev: &DeviceRef) -> bool {
    let by_pci = || {
        let (s, p) = (state?, dev.pci?);
        s.find_by_pci(&p.to_string())
    };
    !dev.on_host && dev.mac.is_none() && by_pci().is_none()
}
