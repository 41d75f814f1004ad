//! The `k8s.v1.cni.cncf.io/network-status` annotation: one entry per pod
//! interface, built from each delegate's CNI result exactly as the NAD
//! client's `CreateNetworkStatuses` does, and encoded byte-for-byte like
//! Multus writes it (each element indented by four spaces, joined by `,`).

use plexus_cni::result::Route;
use plexus_cni::CniResult;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A CNI result the status cannot be built from.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error("invalid CNI result for network {network:?}: {reason}")]
    InvalidResult { network: String, reason: String },
    #[error("cannot encode network-status: {0}")]
    Encode(#[from] serde_json::Error),
}

/// DNS settings: the CNI result's own type (serialized as `{}` when empty).
pub use plexus_cni::result::Dns;

/// `device-info.pci`: every key optional, named in kebab-case.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", default)]
pub struct PciDevice {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub pci_address: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub vhost_net: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub rdma_device: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub pf_pci_address: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub representor_device: String,
}

/// `device-info.vdpa`: every key optional, named in kebab-case.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", default)]
pub struct VdpaDevice {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub parent_device: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub driver: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub path: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub pci_address: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub pf_pci_address: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub representor_device: String,
}

/// `device-info.vhost-user`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VhostDevice {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mode: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub path: String,
}

/// `device-info.memif`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemifDevice {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub role: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub path: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mode: String,
}

/// The device-info spec (v1.1.0) shared by device plugins, CNI and Multus.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceInfo {
    /// `pci`, `vdpa`, `vhost-user` or `memif`.
    #[serde(rename = "type", default, skip_serializing_if = "String::is_empty")]
    pub type_: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pci: Option<PciDevice>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vdpa: Option<VdpaDevice>,
    #[serde(
        rename = "vhost-user",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub vhost_user: Option<VhostDevice>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memif: Option<MemifDevice>,
}

impl DeviceInfo {
    /// Device-info spec version written by Plexus.
    pub const VERSION: &'static str = "1.1.0";

    /// A `pci` device-info for a VF handed to a pod.
    pub fn pci(pci_address: &str, pf_pci_address: Option<&str>) -> Self {
        Self {
            type_: "pci".into(),
            version: Self::VERSION.into(),
            pci: Some(PciDevice {
                pci_address: pci_address.into(),
                pf_pci_address: pf_pci_address.unwrap_or_default().into(),
                ..PciDevice::default()
            }),
            ..Self::default()
        }
    }
}

/// One element of the network-status annotation. Field order and omission
/// rules follow the NAD client's Go struct tags.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkStatus {
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub interface: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ips: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mac: String,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub mtu: u32,
    #[serde(default, skip_serializing_if = "is_false")]
    pub default: bool,
    #[serde(default)]
    pub dns: Dns,
    #[serde(
        rename = "device-info",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub device_info: Option<DeviceInfo>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gateway: Vec<String>,
}

fn is_zero(v: &u32) -> bool {
    *v == 0
}

fn is_false(v: &bool) -> bool {
    !*v
}

/// Multus counts `0.0.0.0/x` and `::/x` as default routes, whatever `x` is.
fn is_default_route(route: &Route) -> bool {
    route.dst.addr().is_unspecified()
}

/// Builds the network-status entries for one delegate's result JSON of any
/// version (decoded by [`CniResult::from_json_any`]); see
/// [`network_statuses_from_cni_result`].
pub fn network_statuses_from_result(
    result: &Value,
    network: &str,
    is_default: bool,
    device_info: Option<&DeviceInfo>,
) -> Result<Vec<NetworkStatus>, StatusError> {
    let r = CniResult::from_json_any(result).map_err(|e| StatusError::InvalidResult {
        network: network.to_owned(),
        reason: e.msg,
    })?;
    network_statuses_from_cni_result(&r, network, is_default, device_info)
}

/// Builds the network-status entries for one delegate's result. `network`
/// is `ns/nad` for NAD networks or the delegate name for the cluster
/// network; `is_default` marks the cluster (master) network.
///
/// Mirrors `CreateNetworkStatuses`: a single-interface result yields one entry
/// carrying every IP; otherwise one entry per sandbox interface, IPs mapped by
/// their `interface` index (unindexed IPs go to the last entry), and a result
/// without sandbox interfaces yields nothing. Gateways are the `gw`s of
/// default routes; routes without a `gw` are skipped (Go would print `<nil>`).
pub fn network_statuses_from_cni_result(
    r: &CniResult,
    network: &str,
    is_default: bool,
    device_info: Option<&DeviceInfo>,
) -> Result<Vec<NetworkStatus>, StatusError> {
    let gateways: Vec<String> = r
        .routes
        .iter()
        .filter(|rt| is_default_route(rt))
        .filter_map(|rt| rt.gw.map(|g| g.to_string()))
        .collect();
    let base = NetworkStatus {
        name: network.to_owned(),
        dns: r.dns.clone(),
        device_info: device_info.cloned(),
        gateway: gateways,
        ..NetworkStatus::default()
    };
    if r.interfaces.len() == 1 {
        let mut st = NetworkStatus {
            default: is_default,
            ips: r
                .ips
                .iter()
                .map(|ip| ip.address.addr().to_string())
                .collect(),
            ..base
        };
        if let Some(iface) = r.interfaces.iter().find(|i| !i.sandbox.is_empty()) {
            st.interface = iface.name.clone();
            st.mac = iface.mac.clone();
            st.mtu = iface.mtu.unwrap_or(0);
        }
        return Ok(vec![st]);
    }
    // The default network marks the interface owning the first gateway, or
    // else its first sandbox interface.
    let gw_iface = if is_default {
        r.ips
            .iter()
            .find(|ip| ip.gateway.is_some() && ip.interface.is_some())
            .and_then(|ip| ip.interface)
    } else {
        None
    };
    let mut statuses: Vec<NetworkStatus> = Vec::new();
    let mut index_map = std::collections::HashMap::new();
    let mut marked = false;
    for (i, iface) in r.interfaces.iter().enumerate() {
        if iface.sandbox.is_empty() {
            continue;
        }
        let default = is_default
            && !marked
            && match gw_iface {
                Some(g) => g == i,
                None => true,
            };
        marked |= default;
        index_map.insert(i, statuses.len());
        statuses.push(NetworkStatus {
            interface: iface.name.clone(),
            mac: iface.mac.clone(),
            mtu: iface.mtu.unwrap_or(0),
            default,
            ..base.clone()
        });
    }
    let last = statuses.len().checked_sub(1);
    for ip in &r.ips {
        let target = match ip.interface {
            Some(idx) => index_map.get(&idx).copied(),
            None => last,
        };
        if let Some(t) = target {
            statuses[t].ips.push(ip.address.addr().to_string());
        }
    }
    Ok(statuses)
}

/// Encodes the annotation value exactly as the NAD client does: every element
/// pretty-printed with a four-space indent, joined by `,` inside `[` `]`.
pub fn encode_network_status(statuses: &[NetworkStatus]) -> Result<String, StatusError> {
    let mut parts = Vec::with_capacity(statuses.len());
    for st in statuses {
        let mut buf = Vec::new();
        let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
        let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
        st.serialize(&mut ser)?;
        parts.push(String::from_utf8_lossy(&buf).into_owned());
    }
    Ok(format!("[{}]", parts.join(",")))
}

/// Parses a network-status annotation value (for status readers and tests).
pub fn decode_network_status(value: &str) -> Result<Vec<NetworkStatus>, StatusError> {
    Ok(serde_json::from_str(value)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fixture(name: &str) -> String {
        let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    #[test]
    fn golden_tutorial_pod_status() {
        // Cluster network (flannel, 1.0.0 result) plus a host-device NAD (0.3.1).
        let flannel = json!({
            "cniVersion": "1.0.0",
            "interfaces": [{"name": "eth0", "mac": "aa:bb:cc:00:00:01", "sandbox": "/var/run/netns/x"}],
            "ips": [{"address": "203.0.113.5/24", "gateway": "203.0.113.1", "interface": 0}],
            "routes": [{"dst": "0.0.0.0/0", "gw": "203.0.113.1"}, {"dst": "203.0.113.0/24"}],
            "dns": {}
        });
        let vnic = json!({
            "cniVersion": "0.3.1",
            "interfaces": [{"name": "net1", "mac": "02:00:17:00:aa:01", "sandbox": "/var/run/netns/x"}],
            "ips": [{"version": "4", "address": "198.51.100.93/24", "interface": 0}],
            "routes": [{"dst": "198.51.100.0/24", "gw": "0.0.0.0"}],
            "dns": {}
        });
        let dev = DeviceInfo::pci("0000:00:05.0", None);
        let mut all = network_statuses_from_result(&flannel, "cbr0", true, None).unwrap();
        all.extend(
            network_statuses_from_result(&vnic, "default/sriov-vnic-1", false, Some(&dev)).unwrap(),
        );
        let encoded = encode_network_status(&all).unwrap();
        assert_eq!(encoded, fixture("network_status_tutorial.txt").trim_end());
        assert_eq!(decode_network_status(&encoded).unwrap(), all);
    }

    #[test]
    fn canonical_cni_result_gives_the_same_status() {
        let v = json!({
            "cniVersion": "0.3.1",
            "interfaces": [{"name": "net1", "mac": "02:00:17:00:aa:01", "sandbox": "/ns"}],
            "ips": [{"version": "4", "address": "198.51.100.93/24", "gateway": "198.51.100.1", "interface": 0}],
            "routes": [{"dst": "0.0.0.0/0", "gw": "198.51.100.1"}]
        });
        let canonical = plexus_cni::CniResult::from_json(&v).unwrap();
        let dev = DeviceInfo::pci("0000:00:05.0", None);
        assert_eq!(
            network_statuses_from_cni_result(&canonical, "default/n", false, Some(&dev)).unwrap(),
            network_statuses_from_result(&v, "default/n", false, Some(&dev)).unwrap()
        );
    }

    #[test]
    fn multi_interface_result_maps_ips_by_index() {
        let result = json!({
            "cniVersion": "1.1.0",
            "interfaces": [
                {"name": "br0", "mac": "aa:00:00:00:00:01"},
                {"name": "eth0", "mac": "aa:00:00:00:00:02", "mtu": 9000, "sandbox": "/ns"},
                {"name": "eth1", "mac": "aa:00:00:00:00:03", "sandbox": "/ns"}
            ],
            "ips": [
                {"address": "198.51.100.2/24", "interface": 2, "gateway": "198.51.100.1"},
                {"address": "2001:db8::2/64", "interface": 1},
                {"address": "203.0.113.9/24"}
            ],
            "routes": [{"dst": "::/0", "gw": "2001:db8::1"}],
            "dns": {"nameservers": ["198.51.100.53"], "search": ["example.com"]}
        });
        let st = network_statuses_from_result(&result, "ns/multi", true, None).unwrap();
        assert_eq!(st.len(), 2);
        assert_eq!(st[0].interface, "eth0");
        assert_eq!(st[0].mtu, 9000);
        assert_eq!(st[0].ips, ["2001:db8::2"]);
        assert!(!st[0].default, "default goes to the gateway's interface");
        assert_eq!(st[1].interface, "eth1");
        assert_eq!(st[1].ips, ["198.51.100.2", "203.0.113.9"]);
        assert!(st[1].default);
        assert_eq!(st[1].gateway, ["2001:db8::1"]);
        assert_eq!(st[1].dns.nameservers, ["198.51.100.53"]);
    }

    #[test]
    fn legacy_020_result_without_interfaces_yields_nothing() {
        let result = json!({"cniVersion": "0.2.0", "ip4": {"ip": "198.51.100.5/24", "gateway": "198.51.100.1"}});
        assert!(network_statuses_from_result(&result, "d/x", false, None)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn invalid_results_are_errors() {
        assert!(network_statuses_from_result(&json!([]), "d/x", false, None).is_err());
        let bad =
            json!({"interfaces": [{"name": "a", "sandbox": "/n"}], "ips": [{"address": "nope"}]});
        let err = network_statuses_from_result(&bad, "d/x", false, None).unwrap_err();
        assert!(err.to_string().contains("\"nope\""), "{err}");
    }

    #[test]
    fn device_info_round_trips_every_type() {
        let text = fixture("devinfo_vdpa.json");
        let dev: DeviceInfo = serde_json::from_str(&text).unwrap();
        assert_eq!(dev.type_, "vdpa");
        assert_eq!(dev.vdpa.as_ref().unwrap().pf_pci_address, "0000:00:04.0");
        let back: Value = serde_json::to_value(&dev).unwrap();
        assert_eq!(back, serde_json::from_str::<Value>(&text).unwrap());
    }
}
