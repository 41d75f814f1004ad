//! This node's NICs in our own terms, whatever cloud described them.
//!
//! The agent plans host configuration with [`NodeNic`], the node state file
//! is built from it and the `vnic` plugin answers from it. A provider (OCI
//! IMDS today, [`crate::types`]) translates its wire format into these types
//! at the edge, so a second cloud adds a provider, not a new code path.
//!
//! Addressing is a [`NicAddress`] (address, subnet, gateway): the primary
//! private address in [`NodeNic::address`], IPv6 ones in [`NodeNic::ipv6`].

use std::net::IpAddr;

use ipnet::IpNet;
use plexus_cni::MacAddr;
use serde::{Deserialize, Serialize};

use crate::types::parse_mac;

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
    /// MAC (serialized lower-case, as sysfs and netlink print it).
    pub mac: MacAddr,
    /// The NIC's primary private address (IPv4 on OCI).
    pub address: NicAddress,
    /// IPv6 addresses, each with the IPv6 subnet and gateway; empty when
    /// the NIC has none. Validated by the provider (in subnet, sane gateway).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ipv6: Vec<NicAddress>,
    /// VLAN tag, where the cloud uses one (OCI bare metal).
    pub vlan: Option<u32>,
    /// Physical NIC the VNIC sits on (OCI bare metal).
    pub nic_index: Option<u32>,
    /// MTU the cloud's network carries on this NIC, when known.
    pub mtu: Option<u32>,
}

impl NodeNic {
    /// Every address of the NIC: the primary one, then the IPv6 ones.
    pub fn addresses(&self) -> impl Iterator<Item = &NicAddress> {
        std::iter::once(&self.address).chain(&self.ipv6)
    }

    /// True when `mac` is this NIC's MAC, whatever its case or padding.
    pub fn matches_mac(&self, mac: &str) -> bool {
        parse_mac(mac) == Some(self.mac)
    }
}
