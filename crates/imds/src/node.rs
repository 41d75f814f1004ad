//! This node's NICs in our own terms, whatever cloud described them.
//!
//! The agent plans host configuration with [`NodeNic`], the node state file
//! is built from it and the `vnic` plugin answers from it. A provider (OCI
//! IMDS today, [`crate::types`]) translates its wire format into these types
//! at the edge, so a second cloud adds a provider, not a new code path.
//!
//! Addressing is a [`NicAddress`] (address, subnet, gateway) so further
//! families are a list of the same type beside [`NodeNic::address`].

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::types::normalize_mac;

/// One address the cloud assigned to a NIC, with its subnet and gateway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NicAddress {
    /// The address.
    pub ip: IpAddr,
    /// The subnet it belongs to; its prefix length is the address'.
    pub subnet: IpNet,
    /// The subnet's gateway, when the cloud names one.
    pub gateway: Option<IpAddr>,
}

impl NicAddress {
    /// Prefix length of the address (from the subnet).
    pub fn prefix_len(&self) -> u8 {
        self.subnet.prefix_len()
    }

    /// `ip/prefix`, as configured on an interface.
    pub fn cidr(&self) -> IpNet {
        IpNet::new(self.ip, self.prefix_len()).unwrap_or(IpNet::from(self.ip))
    }
}

/// One NIC of this node. Providers list the primary NIC first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeNic {
    /// The cloud's identifier of the NIC (OCI: the VNIC OCID).
    pub id: String,
    /// MAC, lower-case, as sysfs and netlink print it.
    pub mac: String,
    /// The NIC's primary private address.
    pub address: NicAddress,
    /// VLAN tag, where the cloud uses one (OCI bare metal).
    pub vlan: Option<u32>,
    /// Physical NIC the VNIC sits on (OCI bare metal).
    pub nic_index: Option<u32>,
    /// MTU the cloud's network carries on this NIC, when known.
    pub mtu: Option<u32>,
}

impl NodeNic {
    /// True when `mac` is this NIC's MAC, whatever its case or padding.
    pub fn matches_mac(&self, mac: &str) -> bool {
        self.mac == normalize_mac(mac)
    }
}
