//! One canonical in-memory CNI result (the 1.1.0 superset) and its
//! conversion to and from every result format (`pkg/types/{020,040,100}`):
//!
//! * 0.1.0/0.2.0: `ip4`/`ip6` objects, one address per family, routes nested;
//! * 0.3.0/0.3.1/0.4.0: `interfaces`, `ips[]` with `version: "4"|"6"`, `routes`;
//! * 1.0.0: as 0.4.0 without `ips[].version`;
//! * 1.1.0: adds interface `mtu/socketPath/pciID` and route
//!   `mtu/advmss/priority/table/scope`.
//!
//! Plugins build a [`CniResult`] and print `to_json(conf.cni_version)`.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::CniError;

/// The result shape a spec version uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResultFormat {
    /// 0.1.0 and 0.2.0.
    V02,
    /// 0.3.0, 0.3.1 and 0.4.0.
    V04,
    /// 1.0.0.
    V10,
    /// 1.1.0.
    V11,
}

impl ResultFormat {
    /// The format for `version`; code 1 when it is unknown.
    pub fn for_version(version: &str) -> Result<Self, CniError> {
        match version {
            "0.1.0" | "0.2.0" => Ok(Self::V02),
            "0.3.0" | "0.3.1" | "0.4.0" => Ok(Self::V04),
            "1.0.0" => Ok(Self::V10),
            "1.1.0" => Ok(Self::V11),
            _ => Err(CniError::incompatible_version(
                format!("unsupported CNI result version {version:?}"),
                "",
            )),
        }
    }
}

/// An interface in the result.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Interface {
    /// Interface name.
    #[serde(default, deserialize_with = "crate::nullable::nullable")]
    pub name: String,
    /// MAC address, if any.
    #[serde(
        default,
        deserialize_with = "crate::nullable::nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub mac: String,
    /// MTU (1.1.0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// Netns path for container interfaces; empty for host interfaces.
    #[serde(
        default,
        deserialize_with = "crate::nullable::nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub sandbox: String,
    /// vhost-user/DPDK socket path (1.1.0).
    #[serde(
        default,
        deserialize_with = "crate::nullable::nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub socket_path: String,
    /// PCI address of the device (1.1.0).
    #[serde(
        default,
        deserialize_with = "crate::nullable::nullable",
        rename = "pciID",
        skip_serializing_if = "String::is_empty"
    )]
    pub pci_id: String,
}

/// An IP configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpConfig {
    /// Index into `interfaces`; IPAM results leave it out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<usize>,
    /// Address with prefix length (host bits kept, e.g. `198.51.100.2/24`).
    pub address: IpNet,
    /// Default gateway for this subnet, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
}

impl IpConfig {
    /// `"4"` or `"6"`, as the 0.3.x/0.4.0 `version` field.
    pub fn family(&self) -> &'static str {
        match self.address {
            IpNet::V4(_) => "4",
            IpNet::V6(_) => "6",
        }
    }
}

/// A route. `mtu`, `advmss`, `priority`, `table` and `scope` exist from 1.1.0.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    /// Destination.
    pub dst: IpNet,
    /// Next hop; `None` means the default gateway / on-link.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gw: Option<IpAddr>,
    /// Route MTU (1.1.0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// TCP advertised MSS (1.1.0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advmss: Option<u32>,
    /// Route priority/metric (1.1.0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<u32>,
    /// Routing table id (1.1.0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<u32>,
    /// Route scope (1.1.0), e.g. 253 link, 0 universe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<u8>,
}

impl Route {
    /// A route with only `dst` and `gw`.
    pub fn new(dst: IpNet, gw: Option<IpAddr>) -> Self {
        Self {
            dst,
            gw,
            mtu: None,
            advmss: None,
            priority: None,
            table: None,
            scope: None,
        }
    }

    fn without_v11_fields(&self) -> Self {
        Self::new(self.dst, self.gw)
    }
}

/// DNS settings, in results and in configs (`dns` key).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dns {
    /// Name servers, in order.
    #[serde(
        default,
        deserialize_with = "crate::nullable::nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub nameservers: Vec<String>,
    /// Local domain.
    #[serde(
        default,
        deserialize_with = "crate::nullable::nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub domain: String,
    /// Search domains.
    #[serde(
        default,
        deserialize_with = "crate::nullable::nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub search: Vec<String>,
    /// resolv.conf options.
    #[serde(
        default,
        deserialize_with = "crate::nullable::nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub options: Vec<String>,
}

impl Dns {
    /// True when no field is set; such a `dns` is left out of output.
    pub fn is_empty(&self) -> bool {
        self.nameservers.is_empty()
            && self.domain.is_empty()
            && self.search.is_empty()
            && self.options.is_empty()
    }
}

/// The canonical result: every field any spec version can carry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CniResult {
    /// Interfaces created or moved.
    pub interfaces: Vec<Interface>,
    /// Assigned addresses.
    pub ips: Vec<IpConfig>,
    /// Routes.
    pub routes: Vec<Route>,
    /// DNS settings.
    pub dns: Dns,
}

/// The version whose format carries every field: how a [`CniResult`]
/// serializes on its own (caches, logs), with `cniVersion` included.
pub const CANONICAL_VERSION: &str = "1.1.0";

impl Serialize for CniResult {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.to_json(CANONICAL_VERSION)
            .map_err(serde::ser::Error::custom)?
            .serialize(s)
    }
}

impl<'de> Deserialize<'de> for CniResult {
    /// Any version, read as [`CniResult::from_json_any`] does.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        Self::from_json_any(&v).map_err(serde::de::Error::custom)
    }
}

/// 0.1.0/0.2.0 per-family block.
#[derive(Debug, Serialize, Deserialize)]
struct LegacyIp {
    ip: IpNet,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    gateway: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    routes: Vec<LegacyRoute>,
}

#[derive(Debug, Serialize, Deserialize)]
struct LegacyRoute {
    dst: IpNet,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    gw: Option<IpAddr>,
}

fn to_value<T: Serialize>(v: &T) -> Result<Value, CniError> {
    serde_json::to_value(v).map_err(|e| CniError::generic(format!("failed to encode result: {e}")))
}

fn from_value<T: for<'de> Deserialize<'de>>(v: &Value, what: &str) -> Result<T, CniError> {
    serde_json::from_value(v.clone())
        .map_err(|e| CniError::decode(format!("failed to parse result {what}: {e}")))
}

/// A list field, naming the offending element on failure (serde's own
/// message does not quote the bad value).
fn list_from_value<T: for<'de> Deserialize<'de>>(
    v: &Value,
    what: &str,
) -> Result<Vec<T>, CniError> {
    let Some(items) = v.as_array() else {
        return from_value(v, what);
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            serde_json::from_value(item.clone()).map_err(|e| {
                CniError::decode(format!("failed to parse result {what}[{i}] {item}: {e}"))
            })
        })
        .collect()
}

impl CniResult {
    /// Renders the result in `version`'s format. Fails with code 1 for an
    /// unknown version, and for 0.1.0/0.2.0 when there is no address
    /// ("cannot convert: no valid IP addresses", as the Go converter).
    pub fn to_json(&self, version: &str) -> Result<Value, CniError> {
        let format = ResultFormat::for_version(version)?;
        let mut m = Map::new();
        m.insert("cniVersion".into(), Value::from(version));
        if format == ResultFormat::V02 {
            self.write_legacy(&mut m)?;
        } else {
            self.write_modern(&mut m, format)?;
        }
        if !self.dns.is_empty() {
            m.insert("dns".into(), to_value(&self.dns)?);
        }
        Ok(Value::Object(m))
    }

    fn write_modern(
        &self,
        m: &mut Map<String, Value>,
        format: ResultFormat,
    ) -> Result<(), CniError> {
        let v11 = format == ResultFormat::V11;
        if !self.interfaces.is_empty() {
            let list = self
                .interfaces
                .iter()
                .map(|i| {
                    if v11 {
                        to_value(i)
                    } else {
                        to_value(&Interface {
                            mtu: None,
                            socket_path: String::new(),
                            pci_id: String::new(),
                            ..i.clone()
                        })
                    }
                })
                .collect::<Result<Vec<_>, _>>()?;
            m.insert("interfaces".into(), Value::Array(list));
        }
        if !self.ips.is_empty() {
            let mut list = Vec::with_capacity(self.ips.len());
            for ip in &self.ips {
                let mut obj = Map::new();
                if format == ResultFormat::V04 {
                    obj.insert("version".into(), Value::from(ip.family()));
                }
                if let Value::Object(rest) = to_value(ip)? {
                    obj.extend(rest);
                }
                list.push(Value::Object(obj));
            }
            m.insert("ips".into(), Value::Array(list));
        }
        if !self.routes.is_empty() {
            let list = self
                .routes
                .iter()
                .map(|r| {
                    if v11 {
                        to_value(r)
                    } else {
                        to_value(&r.without_v11_fields())
                    }
                })
                .collect::<Result<Vec<_>, _>>()?;
            m.insert("routes".into(), Value::Array(list));
        }
        Ok(())
    }

    fn write_legacy(&self, m: &mut Map<String, Value>) -> Result<(), CniError> {
        // 0.2.0 holds one address per family: the first one wins.
        let first = |v4: bool| {
            self.ips
                .iter()
                .find(|ip| matches!(ip.address, IpNet::V4(_)) == v4)
                .map(|ip| LegacyIp {
                    ip: ip.address,
                    gateway: ip.gateway,
                    routes: Vec::new(),
                })
        };
        let mut ip4 = first(true);
        let mut ip6 = first(false);
        if ip4.is_none() && ip6.is_none() {
            return Err(CniError::incompatible_version(
                "cannot convert: no valid IP addresses",
                "",
            ));
        }
        for r in &self.routes {
            let target = match r.dst {
                IpNet::V4(_) => ip4.as_mut(),
                IpNet::V6(_) => ip6.as_mut(),
            };
            if let Some(t) = target {
                t.routes.push(LegacyRoute {
                    dst: r.dst,
                    gw: r.gw,
                });
            }
        }
        if let Some(v) = ip4 {
            m.insert("ip4".into(), to_value(&v)?);
        }
        if let Some(v) = ip6 {
            m.insert("ip6".into(), to_value(&v)?);
        }
        Ok(())
    }

    /// Parses a result in the version named by its own `cniVersion`.
    pub fn from_json(v: &Value) -> Result<Self, CniError> {
        let version = v
            .get("cniVersion")
            .and_then(Value::as_str)
            .ok_or_else(|| CniError::decode("result has no cniVersion"))?;
        Self::from_json_as(v, version)
    }

    /// Parses a result in the format of `version`, whatever its `cniVersion`
    /// says (libcni parses `prevResult` with the config's version).
    pub fn from_json_as(v: &Value, version: &str) -> Result<Self, CniError> {
        let format = ResultFormat::for_version(version)?;
        if !v.is_object() {
            return Err(CniError::decode("result is not a JSON object"));
        }
        let mut out = Self::default();
        if let Some(d) = v.get("dns").filter(|d| !d.is_null()) {
            out.dns = from_value(d, "dns")?;
        }
        if format == ResultFormat::V02 {
            for key in ["ip4", "ip6"] {
                if let Some(block) = v.get(key).filter(|b| !b.is_null()) {
                    let b: LegacyIp = from_value(block, key)?;
                    out.ips.push(IpConfig {
                        interface: None,
                        address: b.ip,
                        gateway: b.gateway,
                    });
                    out.routes
                        .extend(b.routes.into_iter().map(|r| Route::new(r.dst, r.gw)));
                }
            }
            return Ok(out);
        }
        if let Some(list) = v.get("interfaces").filter(|x| !x.is_null()) {
            out.interfaces = list_from_value(list, "interfaces")?;
        }
        if let Some(list) = v.get("ips").filter(|x| !x.is_null()) {
            out.ips = list_from_value(list, "ips")?;
        }
        if let Some(list) = v.get("routes").filter(|x| !x.is_null()) {
            out.routes = list_from_value(list, "routes")?;
        }
        if format != ResultFormat::V11 {
            for i in &mut out.interfaces {
                i.mtu = None;
                i.socket_path.clear();
                i.pci_id.clear();
            }
            for r in &mut out.routes {
                *r = r.without_v11_fields();
            }
        }
        Ok(out)
    }

    /// Parses raw bytes (e.g. a delegate's stdout); code 6 on bad JSON.
    /// `fallback_version` is used when the result lacks `cniVersion`, as
    /// libcni does with the config's version.
    pub fn from_slice(bytes: &[u8], fallback_version: &str) -> Result<Self, CniError> {
        let v: Value = serde_json::from_slice(bytes)
            .map_err(|e| CniError::decode(format!("failed to parse result: {e}")))?;
        let version = v
            .get("cniVersion")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .unwrap_or(fallback_version)
            .to_string();
        Self::from_json_as(&v, &version)
    }

    /// Parses a result stored without knowing its config: by its own
    /// `cniVersion`, else by its shape (`ip4`/`ip6` means 0.2.0, anything
    /// else is read as the 1.1.0 superset).
    pub fn from_json_any(v: &Value) -> Result<Self, CniError> {
        if let Some(version) = v
            .get("cniVersion")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
        {
            return Self::from_json_as(v, version);
        }
        let legacy = v.get("ip4").is_some() || v.get("ip6").is_some();
        Self::from_json_as(v, if legacy { "0.2.0" } else { CANONICAL_VERSION })
    }

    /// Converts a result JSON from its own version to `version`.
    pub fn convert(v: &Value, version: &str) -> Result<Value, CniError> {
        Self::from_json(v)?.to_json(version)
    }
}

#[cfg(test)]
mod tests;
