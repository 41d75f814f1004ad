//! Wire types of OCI IMDS v2 (`/opc/v2/vnics/`, `/opc/v2/instance/`).
//!
//! Field names are camelCase as IMDS sends them. Everything the docs mark as
//! shape-dependent (`vlanTag`, `nicIndex`, IPv6 keys) is optional because VM
//! responses omit them; unknown keys are ignored so new IMDS fields never
//! break parsing.

use std::net::IpAddr;

use ipnet::IpNet;
use plexus_cni::MacAddr;
use serde::{Deserialize, Serialize};

use crate::error::ImdsError;
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
    /// MAC; IMDS prints it upper-case, [`MacAddr`] parses any case.
    pub mac_addr: MacAddr,
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
        parse_mac(mac) == Some(self.mac_addr)
    }

    /// The MAC in the lower-case form sysfs uses.
    pub fn mac_lower(&self) -> String {
        self.mac_addr.to_string()
    }

    /// Prefix length of the VNIC's IPv4 address (from the subnet CIDR).
    pub fn prefix_len(&self) -> u8 {
        self.subnet_cidr_block.prefix_len()
    }
}

impl TryFrom<&Vnic> for NodeNic {
    type Error = ImdsError;

    /// Our terms for a VNIC; its IPv6 fields are checked on the way in
    /// ([`ipv6_addresses`]) so no consumer configures half of a bad answer.
    fn try_from(v: &Vnic) -> Result<Self, ImdsError> {
        let ipv6 = ipv6_addresses(v).map_err(|reason| ImdsError::InvalidVnic {
            vnic_id: v.vnic_id.clone(),
            reason,
        })?;
        Ok(Self {
            id: v.vnic_id.clone(),
            mac: v.mac_addr,
            address: NicAddress {
                ip: v.private_ip,
                subnet: v.subnet_cidr_block,
                gateway: v.virtual_router_ip,
            },
            ipv6,
            vlan: v.vlan_tag,
            nic_index: v.nic_index,
            mtu: Some(OCI_VNIC_MTU),
        })
    }
}

/// The VNIC's IPv6 addresses with their subnet and gateway, validated:
/// every address is IPv6 and inside `ipv6SubnetCidrBlock` (which must be
/// there when addresses are), and the gateway is an IPv6 unicast address,
/// link-local (OCI's `fe80::…` virtual router) or inside the subnet.
/// A subnet without addresses is a VNIC without IPv6 yet: empty, not an error.
pub fn ipv6_addresses(v: &Vnic) -> Result<Vec<NicAddress>, String> {
    if v.ipv6_addresses.is_empty() {
        return Ok(Vec::new());
    }
    let subnet = match v.ipv6_subnet_cidr_block {
        Some(s @ IpNet::V6(_)) => s,
        Some(other) => return Err(format!("ipv6SubnetCidrBlock {other} is not IPv6")),
        None => return Err("ipv6Addresses without ipv6SubnetCidrBlock".into()),
    };
    if let Some(gw) = v.ipv6_virtual_router_ip {
        let ok = match gw {
            IpAddr::V6(g) => {
                !g.is_unspecified()
                    && !g.is_loopback()
                    && !g.is_multicast()
                    && (is_link_local_v6(&gw) || subnet.contains(&gw))
            }
            IpAddr::V4(_) => false,
        };
        if !ok {
            return Err(format!(
                "ipv6VirtualRouterIp {gw} is neither link-local nor in {subnet}"
            ));
        }
    }
    let mut out: Vec<NicAddress> = Vec::new();
    for ip in &v.ipv6_addresses {
        if !ip.is_ipv6() || !subnet.contains(ip) || *ip == subnet.network() {
            return Err(format!("IPv6 address {ip} is not a host in {subnet}"));
        }
        if out.iter().all(|a| a.ip != *ip) {
            out.push(NicAddress {
                ip: *ip,
                subnet: subnet.trunc(),
                gateway: v.ipv6_virtual_router_ip,
            });
        }
    }
    Ok(out)
}

/// True for `fe80::/10`, where OCI puts the IPv6 virtual router.
pub fn is_link_local_v6(ip: &IpAddr) -> bool {
    matches!(ip, IpAddr::V6(v) if (v.segments()[0] & 0xffc0) == 0xfe80)
}

/// `mac` as a [`MacAddr`], ignoring surrounding whitespace (sysfs files end
/// in a newline); `None` when it is not one.
pub fn parse_mac(mac: &str) -> Option<MacAddr> {
    mac.trim().parse().ok()
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
            mac_addr: mac.parse().unwrap(),
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
        let nic = NodeNic::try_from(&vnic("02:00:17:05:D1:DB", Some(1))).unwrap();
        assert_eq!(nic.mac, "02:00:17:05:d1:db");
        assert!(nic.matches_mac("02:00:17:05:D1:DB"));
        assert_eq!(nic.address.cidr().to_string(), "198.51.100.5/24");
        assert_eq!((nic.nic_index, nic.mtu), (Some(1), Some(OCI_VNIC_MTU)));
        assert!(nic.ipv6.is_empty());
    }

    fn v6(addrs: &[&str], subnet: Option<&str>, gw: Option<&str>) -> Vnic {
        let mut v = vnic("02:00:17:05:D1:DB", None);
        v.ipv6_addresses = addrs.iter().map(|a| a.parse().unwrap()).collect();
        v.ipv6_subnet_cidr_block = subnet.map(|s| s.parse().unwrap());
        v.ipv6_virtual_router_ip = gw.map(|g| g.parse().unwrap());
        v
    }

    #[test]
    fn ipv6_fields_become_addresses_of_the_subnet() {
        let one = v6(
            &["2001:db8:0:1::10"],
            Some("2001:db8:0:1::/64"),
            Some("fe80::a:b:c:d"),
        );
        let nic = NodeNic::try_from(&one).unwrap();
        assert_eq!(nic.ipv6.len(), 1);
        assert_eq!(nic.ipv6[0].cidr().to_string(), "2001:db8:0:1::10/64");
        assert_eq!(nic.ipv6[0].gateway, Some("fe80::a:b:c:d".parse().unwrap()));
        // Several addresses, a global gateway in the subnet, duplicates folded.
        let many = v6(
            &["2001:db8:0:1::10", "2001:db8:0:1::11", "2001:db8:0:1::10"],
            Some("2001:db8:0:1::/64"),
            Some("2001:db8:0:1::1"),
        );
        let ips: Vec<String> = NodeNic::try_from(&many)
            .unwrap()
            .ipv6
            .iter()
            .map(|a| a.ip.to_string())
            .collect();
        assert_eq!(ips, ["2001:db8:0:1::10", "2001:db8:0:1::11"]);
        // A subnet without addresses (or nothing at all) is no IPv6.
        let none = v6(&[], Some("2001:db8:0:1::/64"), Some("fe80::1"));
        assert!(NodeNic::try_from(&none).unwrap().ipv6.is_empty());
    }

    #[test]
    fn bad_ipv6_fields_are_errors_naming_the_vnic() {
        let cases = [
            v6(&["2001:db8:0:2::10"], Some("2001:db8:0:1::/64"), None),
            v6(&["2001:db8:0:1::10"], None, None),
            v6(&["2001:db8:0:1::10"], Some("198.51.100.0/24"), None),
            v6(&["198.51.100.7"], Some("2001:db8:0:1::/64"), None),
            v6(&["2001:db8:0:1::"], Some("2001:db8:0:1::/64"), None),
            v6(
                &["2001:db8:0:1::10"],
                Some("2001:db8:0:1::/64"),
                Some("2001:db8:0:2::1"),
            ),
            v6(
                &["2001:db8:0:1::10"],
                Some("2001:db8:0:1::/64"),
                Some("ff02::2"),
            ),
            v6(
                &["2001:db8:0:1::10"],
                Some("2001:db8:0:1::/64"),
                Some("198.51.100.1"),
            ),
        ];
        for v in &cases {
            match NodeNic::try_from(v) {
                Err(ImdsError::InvalidVnic { vnic_id, .. }) => assert_eq!(vnic_id, v.vnic_id),
                other => panic!("{v:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn ipv6_wire_fields_are_optional() {
        let base = r#""vnicId":"ocid1.vnic.oc1..x","privateIp":"198.51.100.5","macAddr":"02:00:17:05:D1:DB","subnetCidrBlock":"198.51.100.0/24""#;
        let absent: Vnic = serde_json::from_str(&format!("{{{base}}}")).unwrap();
        let empty: Vnic =
            serde_json::from_str(&format!("{{{base},\"ipv6Addresses\":[]}}")).unwrap();
        assert_eq!(absent, empty);
        let full: Vnic = serde_json::from_str(&format!(
            "{{{base},\"ipv6Addresses\":[\"2001:db8::5\"],\"ipv6SubnetCidrBlock\":\"2001:db8::/64\",\"ipv6VirtualRouterIp\":\"fe80::a:b:c:d\"}}"
        ))
        .unwrap();
        assert_eq!(NodeNic::try_from(&full).unwrap().ipv6.len(), 1);
        // A malformed gateway is a parse error of the whole answer.
        let bad = format!("{{{base},\"ipv6VirtualRouterIp\":\"fe80::zz\"}}");
        assert!(serde_json::from_str::<Vnic>(&bad).is_err());
    }

    #[test]
    fn primary_is_first_entry_even_when_nic_index_repeats() {
        let list = vec![
            vnic("aa:00:00:00:00:01", Some(0)),
            vnic("aa:00:00:00:00:02", Some(0)),
        ];
        assert_eq!(
            primary_vnic(&list).map(|v| v.mac_addr.to_string()),
            Some("aa:00:00:00:00:01".to_string())
        );
        assert!(is_bare_metal(&list));
        let vm = vec![vnic("aa:00:00:00:00:01", None)];
        assert!(!is_bare_metal(&vm));
        assert!(primary_vnic(&[]).is_none());
    }
}
