//! Wire types of OCI IMDS v2 (`/opc/v2/vnics/`, `/opc/v2/instance/`).
//!
//! Field names are camelCase as IMDS sends them. Everything the docs mark as
//! shape-dependent (`vlanTag`, `nicIndex`, IPv6 keys) is optional because VM
//! responses omit them; unknown keys are ignored so new IMDS fields never
//! break parsing.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::node::{NicAddress, NodeNic};

/// MTU of OCI VNICs (jumbo frames on the VCN), which IMDS does not report.
pub const OCI_VNIC_MTU: u32 = 9000;

/// One entry of `GET /opc/v2/vnics/`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Vnic {
    /// OCID of the VNIC.
    pub vnic_id: String,
    /// Primary private IPv4 of the VNIC, inside `subnet_cidr_block`.
    pub private_ip: IpAddr,
    /// Oracle-assigned VLAN tag; missing on some VM VNICs and meaningless there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vlan_tag: Option<u32>,
    /// MAC as IMDS prints it (usually upper-case); compare with [`Vnic::matches_mac`].
    pub mac_addr: String,
    /// Subnet gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub virtual_router_ip: Option<IpAddr>,
    /// Subnet CIDR; its prefix length is the VNIC address' prefix length.
    pub subnet_cidr_block: IpNet,
    /// Physical NIC (0/1); only present on bare metal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nic_index: Option<u32>,
    /// IPv6 subnet, when the VNIC has IPv6.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6_subnet_cidr_block: Option<IpNet>,
    /// IPv6 gateway (usually link-local).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6_virtual_router_ip: Option<IpAddr>,
    /// IPv6 addresses assigned to the VNIC.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ipv6_addresses: Vec<IpAddr>,
}

impl Vnic {
    /// True when `mac` is this VNIC's MAC. Case-insensitive because IMDS
    /// returns upper-case MACs while sysfs prints lower-case ones.
    pub fn matches_mac(&self, mac: &str) -> bool {
        normalize_mac(&self.mac_addr) == normalize_mac(mac)
    }

    /// The MAC in the lower-case form sysfs uses.
    pub fn mac_lower(&self) -> String {
        normalize_mac(&self.mac_addr)
    }

    /// Prefix length of the VNIC's IPv4 address (from the subnet CIDR).
    pub fn prefix_len(&self) -> u8 {
        self.subnet_cidr_block.prefix_len()
    }
}

impl From<&Vnic> for NodeNic {
    fn from(v: &Vnic) -> Self {
        Self {
            id: v.vnic_id.clone(),
            mac: v.mac_lower(),
            address: NicAddress {
                ip: v.private_ip,
                subnet: v.subnet_cidr_block,
                gateway: v.virtual_router_ip,
            },
            vlan: v.vlan_tag,
            nic_index: v.nic_index,
            mtu: Some(OCI_VNIC_MTU),
        }
    }
}

/// Lower-cases a MAC and trims surrounding whitespace.
pub fn normalize_mac(mac: &str) -> String {
    mac.trim().to_ascii_lowercase()
}

/// The primary VNIC: the **first** entry of the `/vnics/` array.
///
/// IMDS lists the primary VNIC first and the rest in creation order (OCI's
/// secondary-VNIC script relies on this). `nicIndex` is not a primary marker:
/// it names the physical NIC on bare metal, several VNICs share `nicIndex 0`
/// (the docs' own example does), and VM responses omit it. So position wins.
pub fn primary_vnic(vnics: &[Vnic]) -> Option<&Vnic> {
    vnics.first()
}

/// True when the response looks like bare metal: the first entry has
/// `nicIndex` (the heuristic cloud-init and OCI's script use).
pub fn is_bare_metal(vnics: &[Vnic]) -> bool {
    vnics.first().is_some_and(|v| v.nic_index.is_some())
}

/// Fields of `GET /opc/v2/instance/` the agent uses. All optional except the
/// OCID because custom images and older instances omit some of them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Instance {
    /// Instance OCID.
    pub id: String,
    /// Console display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// Hostname of the primary VNIC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Region, short (`phx`) or full.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Full region identifier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canonical_region_name: Option<String>,
    /// Availability domain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub availability_domain: Option<String>,
    /// Fault domain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault_domain: Option<String>,
    /// Compartment OCID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compartment_id: Option<String>,
    /// Shape name, e.g. `VM.Standard.E4.Flex`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shape: Option<String>,
    /// Lifecycle state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// Creation time, epoch milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_created: Option<u64>,
    /// Shape limits, inline in real responses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shape_config: Option<ShapeConfig>,
    /// Region naming used to build API endpoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region_info: Option<RegionInfo>,
}

/// `shapeConfig` of an instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ShapeConfig {
    /// OCPU count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ocpus: Option<f64>,
    /// Memory in GB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_in_gbs: Option<f64>,
    /// Network bandwidth in Gbps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub networking_bandwidth_in_gbps: Option<f64>,
    /// How many VNICs the shape can attach.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_vnic_attachments: Option<u32>,
}

/// `regionInfo` of an instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegionInfo {
    /// Realm key, e.g. `OC1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub realm_key: Option<String>,
    /// Realm domain, e.g. `oraclecloud.com`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub realm_domain_component: Option<String>,
    /// Region key, e.g. `PHX`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region_key: Option<String>,
    /// Region identifier, e.g. `us-phoenix-1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region_identifier: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vnic(mac: &str, nic_index: Option<u32>) -> Vnic {
        Vnic {
            vnic_id: "ocid1.vnic.oc1..x".into(),
            private_ip: "198.51.100.5".parse().unwrap(),
            vlan_tag: None,
            mac_addr: mac.into(),
            virtual_router_ip: None,
            subnet_cidr_block: "198.51.100.0/24".parse().unwrap(),
            nic_index,
            ipv6_subnet_cidr_block: None,
            ipv6_virtual_router_ip: None,
            ipv6_addresses: vec![],
        }
    }

    #[test]
    fn mac_match_ignores_case_and_whitespace() {
        let v = vnic("02:00:17:05:D1:DB", None);
        assert!(v.matches_mac("02:00:17:05:d1:db"));
        assert!(v.matches_mac(" 02:00:17:05:D1:DB\n"));
        assert!(!v.matches_mac("02:00:17:05:d1:dc"));
        assert_eq!(v.mac_lower(), "02:00:17:05:d1:db");
        assert_eq!(v.prefix_len(), 24);
    }

    #[test]
    fn node_nic_is_the_vnic_in_our_terms() {
        let nic = NodeNic::from(&vnic("02:00:17:05:D1:DB", Some(1)));
        assert_eq!(nic.mac, "02:00:17:05:d1:db");
        assert!(nic.matches_mac("02:00:17:05:D1:DB"));
        assert_eq!(nic.address.cidr().to_string(), "198.51.100.5/24");
        assert_eq!((nic.nic_index, nic.mtu), (Some(1), Some(OCI_VNIC_MTU)));
    }

    #[test]
    fn primary_is_first_entry_even_when_nic_index_repeats() {
        let list = vec![
            vnic("aa:00:00:00:00:01", Some(0)),
            vnic("aa:00:00:00:00:02", Some(0)),
        ];
        assert_eq!(
            primary_vnic(&list).map(|v| v.mac_addr.as_str()),
            Some("aa:00:00:00:00:01")
        );
        assert!(is_bare_metal(&list));
        let vm = vec![vnic("aa:00:00:00:00:01", None)];
        assert!(!is_bare_metal(&vm));
        assert!(primary_vnic(&[]).is_none());
    }
}
