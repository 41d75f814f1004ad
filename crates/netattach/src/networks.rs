//! The pod's `k8s.v1.cni.cncf.io/networks` annotation: which NADs to attach,
//! in order, with per-attachment requests. Accepts both forms Multus accepts:
//! the comma list (`[ns/]name[@ifname]`) and the JSON list of
//! `NetworkSelectionElement`s. Every error quotes the offending text so a
//! user can find it in a long annotation.

use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Linux `IFNAMSIZ - 1`.
const MAX_IFNAME_LEN: usize = 15;
/// DNS-1123 label length limit (namespaces, comma-form names).
const MAX_LABEL_LEN: usize = 63;
/// DNS-1123 subdomain length limit (object names).
const MAX_SUBDOMAIN_LEN: usize = 253;

/// Most networks one pod may ask for (interfaces `net1`..`net32`): each
/// costs a delegate exec, an API read and a VF, so a tenant's annotation must
/// not turn one ADD into thousands of them. Multus has no limit; ours is
/// documented in docs/security.md.
pub const MAX_NETWORKS: usize = 32;

/// An invalid networks annotation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnnotationError {
    #[error("the networks annotation is empty")]
    Empty,
    #[error("failed to parse the networks annotation as a JSON list: {0}")]
    Json(String),
    #[error("invalid network {item:?}: {reason}")]
    Item { item: String, reason: &'static str },
    #[error("the networks annotation asks for {0} networks, at most {MAX_NETWORKS} are allowed")]
    TooMany(usize),
    #[error("network #{index} in the JSON list has no \"name\"")]
    MissingName { index: usize },
    #[error("invalid {field} {value:?} in network {network:?}: {reason}")]
    Field {
        network: String,
        field: &'static str,
        value: String,
        reason: &'static str,
    },
}

/// A requested host port mapping and bandwidth limit: the CNI
/// capability types themselves, so what the annotation asks for is exactly
/// what a delegate's `runtimeConfig` receives.
pub use plexus_cni::config::{Bandwidth as BandwidthEntry, PortMapping as PortMapEntry};

/// One validated selection, namespace already defaulted to the pod's.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct NetworkSelection {
    pub name: String,
    pub namespace: String,
    /// Requested interface name; `None` lets the caller pick `net<N>`.
    pub interface: Option<String>,
    /// Requested IPs or CIDRs, as written (validated).
    pub ips: Vec<String>,
    pub mac: Option<String>,
    pub infiniband_guid: Option<String>,
    /// Gateways for which this attachment should own the default route.
    pub default_route: Vec<IpAddr>,
    /// Merged into the delegate config's `args.cni`.
    pub cni_args: Option<Map<String, Value>>,
    pub port_mappings: Vec<PortMapEntry>,
    pub bandwidth: Option<BandwidthEntry>,
    /// Multus-only explicit device request, used when no resourceName applies.
    pub device_id: Option<String>,
}

impl NetworkSelection {
    /// `<namespace>/<name>` as used in status and events.
    pub fn qualified_name(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// The JSON element as written by users; validated into [`NetworkSelection`].
#[derive(Debug, Deserialize)]
struct RawElement {
    #[serde(default)]
    name: String,
    #[serde(default)]
    namespace: String,
    #[serde(default)]
    interface: String,
    /// Pre-3.2 spelling, still honoured when `interface` is empty.
    #[serde(rename = "interfaceRequest", default)]
    interface_request: String,
    #[serde(default)]
    ips: Option<Vec<String>>,
    #[serde(default)]
    mac: String,
    #[serde(rename = "infiniband-guid", default)]
    infiniband_guid: String,
    #[serde(rename = "default-route", default)]
    default_route: Option<Vec<String>>,
    #[serde(rename = "cni-args", default)]
    cni_args: Option<Map<String, Value>>,
    #[serde(rename = "portMappings", default)]
    port_mappings: Option<Vec<PortMapEntry>>,
    #[serde(default)]
    bandwidth: Option<BandwidthEntry>,
    #[serde(rename = "deviceID", default)]
    device_id: String,
}

/// Parses and validates the networks annotation. Like Multus, the JSON form is
/// chosen when the text contains any of `[`, `{` or `"`.
pub fn parse_networks_annotation(
    annotation: &str,
    pod_namespace: &str,
) -> Result<Vec<NetworkSelection>, AnnotationError> {
    if annotation.trim().is_empty() {
        return Err(AnnotationError::Empty);
    }
    let selections = if annotation.contains(['[', '{', '"']) {
        parse_json_form(annotation, pod_namespace)?
    } else {
        let items = annotation.split(',').count();
        if items > MAX_NETWORKS {
            return Err(AnnotationError::TooMany(items));
        }
        annotation
            .split(',')
            .map(|item| parse_comma_item(item.trim(), pod_namespace))
            .collect::<Result<Vec<_>, _>>()?
    };
    if selections.len() > MAX_NETWORKS {
        return Err(AnnotationError::TooMany(selections.len()));
    }
    Ok(selections)
}

/// Whether `s` is a DNS-1123 label (namespaces): what Kubernetes accepts,
/// so a name read from `CNI_ARGS` cannot become another API path.
pub fn is_dns1123_label(s: &str) -> bool {
    s.len() <= MAX_LABEL_LEN && is_label(s)
}

/// Whether `s` is a DNS-1123 subdomain (pod and NAD names).
pub fn is_dns1123_subdomain(s: &str) -> bool {
    s.len() <= MAX_SUBDOMAIN_LEN && s.split('.').all(is_label)
}

fn parse_comma_item(item: &str, pod_namespace: &str) -> Result<NetworkSelection, AnnotationError> {
    let bad = |reason| AnnotationError::Item {
        item: item.to_owned(),
        reason,
    };
    let (namespace, rest) = match item.split_once('/') {
        Some((_, rest)) if rest.contains('/') => return Err(bad("more than one '/'")),
        Some((ns, rest)) => (ns.trim(), rest),
        None => ("", item),
    };
    let (name, interface) = match rest.split_once('@') {
        Some((_, ifname)) if ifname.contains('@') => return Err(bad("more than one '@'")),
        Some((name, ifname)) => (name.trim(), Some(ifname.trim())),
        None => (rest.trim(), None),
    };
    if name.is_empty() {
        return Err(bad("missing network name"));
    }
    // The comma form follows Multus: namespace and name are DNS-1123 labels.
    check_label(name, "name", item, MAX_SUBDOMAIN_LEN)?;
    if !namespace.is_empty() {
        check_label(namespace, "namespace", item, MAX_LABEL_LEN)?;
    }
    let interface = match interface {
        Some(ifname) => {
            check_ifname(ifname, item)?;
            Some(ifname.to_owned())
        }
        None => None,
    };
    Ok(NetworkSelection {
        name: name.to_owned(),
        namespace: default_ns(namespace, pod_namespace),
        interface,
        ..NetworkSelection::default()
    })
}

fn parse_json_form(
    annotation: &str,
    pod_namespace: &str,
) -> Result<Vec<NetworkSelection>, AnnotationError> {
    let raw: Vec<RawElement> =
        serde_json::from_str(annotation).map_err(|e| AnnotationError::Json(e.to_string()))?;
    raw.into_iter()
        .enumerate()
        .map(|(index, el)| validate_element(index, el, pod_namespace))
        .collect()
}

fn validate_element(
    index: usize,
    el: RawElement,
    pod_namespace: &str,
) -> Result<NetworkSelection, AnnotationError> {
    if el.name.is_empty() {
        return Err(AnnotationError::MissingName { index });
    }
    let net = if el.namespace.is_empty() {
        el.name.clone()
    } else {
        format!("{}/{}", el.namespace, el.name)
    };
    check_subdomain(&el.name, &net)?;
    if !el.namespace.is_empty() {
        check_label(&el.namespace, "namespace", &net, MAX_LABEL_LEN)?;
    }
    let ifname = if el.interface.is_empty() {
        el.interface_request
    } else {
        el.interface
    };
    let interface = if ifname.is_empty() {
        None
    } else {
        check_ifname(&ifname, &net)?;
        Some(ifname)
    };
    let ips = el.ips.unwrap_or_default();
    for ip in &ips {
        let ok = if ip.contains('/') {
            IpNet::from_str(ip).is_ok()
        } else {
            IpAddr::from_str(ip).is_ok()
        };
        if !ok {
            return Err(field_err(&net, "ips", ip, "not an IP address or CIDR"));
        }
    }
    let mac = non_empty(el.mac);
    if let Some(mac) = &mac {
        if !is_hw_addr(mac) {
            return Err(field_err(&net, "mac", mac, "not a MAC address"));
        }
    }
    let infiniband_guid = non_empty(el.infiniband_guid);
    if let Some(guid) = &infiniband_guid {
        if !is_hw_addr(guid) {
            return Err(field_err(
                &net,
                "infiniband-guid",
                guid,
                "not a hardware address",
            ));
        }
    }
    let default_route = el
        .default_route
        .unwrap_or_default()
        .iter()
        .map(|gw| {
            IpAddr::from_str(gw)
                .map_err(|_| field_err(&net, "default-route", gw, "not an IP address"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(NetworkSelection {
        namespace: default_ns(&el.namespace, pod_namespace),
        name: el.name,
        interface,
        ips,
        mac,
        infiniband_guid,
        default_route,
        cni_args: el.cni_args,
        port_mappings: el.port_mappings.unwrap_or_default(),
        bandwidth: el.bandwidth,
        device_id: non_empty(el.device_id),
    })
}

fn field_err(
    network: &str,
    field: &'static str,
    value: &str,
    reason: &'static str,
) -> AnnotationError {
    AnnotationError::Field {
        network: network.to_owned(),
        field,
        value: value.to_owned(),
        reason,
    }
}

fn non_empty(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

fn default_ns(ns: &str, pod_namespace: &str) -> String {
    if ns.is_empty() { pod_namespace } else { ns }.to_owned()
}

/// `^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`, the regex Multus applies.
fn is_label(s: &str) -> bool {
    let b = s.as_bytes();
    let alnum = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    match (b.first(), b.last()) {
        (Some(first), Some(last)) => {
            alnum(first) && alnum(last) && b.iter().all(|c| alnum(c) || *c == b'-')
        }
        _ => false,
    }
}

fn check_label(
    value: &str,
    field: &'static str,
    network: &str,
    max: usize,
) -> Result<(), AnnotationError> {
    if is_label(value) && value.len() <= max {
        Ok(())
    } else {
        Err(field_err(
            network,
            field,
            value,
            "must consist of lower case alphanumeric characters or '-', and start and end with an alphanumeric character",
        ))
    }
}

/// Object names (JSON form) may be DNS-1123 subdomains: labels joined by dots.
fn check_subdomain(value: &str, network: &str) -> Result<(), AnnotationError> {
    if value.len() <= MAX_SUBDOMAIN_LEN && value.split('.').all(is_label) {
        Ok(())
    } else {
        Err(field_err(
            network,
            "name",
            value,
            "must be a lowercase DNS-1123 subdomain",
        ))
    }
}

/// The kernel's `dev_valid_name`: Multus checks length, `/` and whitespace;
/// we also refuse `:`, `.` and `..` which the kernel would reject later.
fn check_ifname(value: &str, network: &str) -> Result<(), AnnotationError> {
    let reason = if value.is_empty() {
        Some("empty interface name")
    } else if value.len() > MAX_IFNAME_LEN {
        Some("longer than 15 characters")
    } else if value
        .chars()
        .any(|c| c == '/' || c == ':' || c.is_whitespace())
    {
        Some("contains '/', ':' or whitespace")
    } else if value == "." || value == ".." {
        Some("reserved name")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(field_err(network, "interface", value, reason)),
        None => Ok(()),
    }
}

/// Go's `net.ParseMAC`: 6, 8 or 20 octets, `:`/`-` separated pairs or
/// `.` separated quads of hex digits.
fn is_hw_addr(s: &str) -> bool {
    let valid_len = |octets: usize| matches!(octets, 6 | 8 | 20);
    let hex = |g: &str, n: usize| g.len() == n && g.bytes().all(|c| c.is_ascii_hexdigit());
    for sep in [':', '-'] {
        if s.contains(sep) {
            let groups: Vec<&str> = s.split(sep).collect();
            return valid_len(groups.len()) && groups.iter().all(|g| hex(g, 2));
        }
    }
    if s.contains('.') {
        let groups: Vec<&str> = s.split('.').collect();
        return valid_len(groups.len() * 2) && groups.iter().all(|g| hex(g, 4));
    }
    false
}

#[cfg(test)]
mod tests;
