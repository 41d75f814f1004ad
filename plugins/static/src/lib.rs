//! `static` IPAM: hands out exactly the addresses, routes and DNS settings
//! written in the config, compatible with containernetworking/plugins
//! `plugins/ipam/static`.
//!
//! Address sources, lowest to highest priority (reference-behaviour item 10):
//! `ipam.addresses`; `CNI_ARGS` `IP=` (appended) with `GATEWAY=` attached to
//! every address whose subnet holds it; `args.cni.ips` (replaces);
//! `runtimeConfig.ips` (replaces). Everything here is pure: config bytes and
//! `CNI_ARGS` in, a [`StaticConfig`] and a [`CniResult`] out.

use std::net::IpAddr;

use ipnet::IpNet;
use plexus_cni::args::{args_cni, CniArgs};
use plexus_cni::result::{Dns, IpConfig, Route};
use plexus_cni::skel::{CmdArgs, Plugin};
use plexus_cni::{version, CniError, CniResult, NetConf};
use serde::Deserialize;
use serde_json::Value;

/// Text printed on stderr when run without `CNI_COMMAND`.
pub const ABOUT: &str = concat!(
    "CNI static IPAM plugin (plexus) v",
    env!("CARGO_PKG_VERSION")
);

/// Everything that can go wrong; mapped to CNI codes in one place.
#[derive(Debug, thiserror::Error)]
pub enum StaticError {
    /// The config has no (or a null) `ipam` section.
    #[error("IPAM config missing 'ipam' key")]
    MissingIpam,
    /// An address is not `ip/prefix`.
    #[error("invalid CIDR in {field}: {value:?} ({reason})")]
    InvalidCidr {
        /// Where the value came from, e.g. `ipam.addresses[1].address`.
        field: String,
        /// The rejected value.
        value: String,
        /// Parser message.
        reason: String,
    },
    /// A gateway or route next hop is not an IP address.
    #[error("invalid IP address in {field}: {value:?}")]
    InvalidIp {
        /// Where the value came from.
        field: String,
        /// The rejected value.
        value: String,
    },
    /// A 0.1.0/0.2.0 result holds one address per family.
    #[error("CNI version {0} does not support more than 1 address per family")]
    TooManyAddresses(String),
    /// CHECK without `prevResult`.
    #[error("Required prevResult missing")]
    MissingPrevResult,
    /// CHECK: a configured address is not in `prevResult`.
    #[error("static: address {address} not found in prevResult for interface {ifname}")]
    AddressMissing {
        /// The configured address.
        address: IpNet,
        /// `CNI_IFNAME`.
        ifname: String,
    },
    /// CHECK: the address is there but prefix or gateway differ.
    #[error(
        "static: Failed to match addr {address} on interface {ifname}: prevResult has {found}"
    )]
    AddressMismatch {
        /// The configured address.
        address: IpNet,
        /// `CNI_IFNAME`.
        ifname: String,
        /// What prevResult holds instead.
        found: String,
    },
    /// A CNI-level error from the spec library (decode, CNI_ARGS, versions).
    #[error(transparent)]
    Cni(#[from] CniError),
}

impl From<StaticError> for CniError {
    fn from(e: StaticError) -> Self {
        match e {
            StaticError::Cni(c) => c,
            StaticError::MissingIpam
            | StaticError::InvalidCidr { .. }
            | StaticError::InvalidIp { .. }
            | StaticError::TooManyAddresses(_)
            | StaticError::MissingPrevResult => CniError::invalid_config(e.to_string()),
            StaticError::AddressMissing { .. } | StaticError::AddressMismatch { .. } => {
                CniError::generic(e.to_string())
            }
        }
    }
}

/// One address to hand out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    /// Address with prefix length.
    pub address: IpNet,
    /// Gateway, if any.
    pub gateway: Option<IpAddr>,
}

/// The validated IPAM configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticConfig {
    /// The config's cniVersion (0.1.0 when absent); the result is printed in it.
    pub cni_version: String,
    /// Addresses after applying every source.
    pub addresses: Vec<Address>,
    /// Routes, 1.1 fields included.
    pub routes: Vec<Route>,
    /// DNS settings.
    pub dns: Dns,
}

/// The wire form: the common keys typed once in plexus-cni, flattened, with
/// `ipam` typed as this plugin's section (absent or `null`: missing).
#[derive(Debug, Deserialize)]
struct RawConf {
    #[serde(flatten)]
    net: NetConf,
    #[serde(default)]
    ipam: Option<RawIpam>,
}

impl RawConf {
    /// Every decode error is code 6, as `NetConf::parse` reports; a wrong
    /// type names its key path (`ipam.routes[0].mtu`).
    fn parse(stdin: &[u8]) -> Result<Self, CniError> {
        let decode =
            |e: &dyn std::fmt::Display| CniError::decode(format!("failed to load netconf: {e}"));
        let mut de = serde_json::Deserializer::from_slice(stdin);
        let raw = serde_path_to_error::deserialize(&mut de).map_err(|e| decode(&e))?;
        de.end().map_err(|e| decode(&e))?;
        Ok(raw)
    }
}

#[derive(Debug, Default, Deserialize)]
struct RawIpam {
    #[serde(default)]
    addresses: Option<Vec<RawAddress>>,
    #[serde(default)]
    routes: Option<Vec<RawRoute>>,
    #[serde(default)]
    dns: Option<Dns>,
}

#[derive(Debug, Default, Deserialize)]
struct RawAddress {
    #[serde(default)]
    address: String,
    #[serde(default)]
    gateway: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct RawRoute {
    #[serde(default)]
    dst: String,
    #[serde(default)]
    gw: Option<String>,
    #[serde(default)]
    mtu: Option<u32>,
    #[serde(default)]
    advmss: Option<u32>,
    #[serde(default)]
    priority: Option<u32>,
    #[serde(default)]
    table: Option<u32>,
    #[serde(default)]
    scope: Option<u8>,
}

fn parse_cidr(field: &str, value: &str) -> Result<IpNet, StaticError> {
    value
        .parse()
        .map_err(|e: ipnet::AddrParseError| StaticError::InvalidCidr {
            field: field.to_string(),
            value: value.to_string(),
            reason: e.to_string(),
        })
}

fn parse_ip(field: &str, value: &str) -> Result<IpAddr, StaticError> {
    value.parse().map_err(|_| StaticError::InvalidIp {
        field: field.to_string(),
        value: value.to_string(),
    })
}

fn parse_opt_ip(field: &str, value: Option<&str>) -> Result<Option<IpAddr>, StaticError> {
    match value {
        None | Some("") => Ok(None),
        Some(v) => parse_ip(field, v).map(Some),
    }
}

/// Reads the config and `CNI_ARGS` into a [`StaticConfig`], validating every
/// address, gateway and route.
pub fn load_config(stdin: &[u8], cni_args: &str) -> Result<StaticConfig, StaticError> {
    let RawConf { net: conf, ipam } = RawConf::parse(stdin)?;
    let ipam = ipam.ok_or(StaticError::MissingIpam)?;

    let mut addresses = Vec::new();
    for (i, a) in ipam.addresses.unwrap_or_default().iter().enumerate() {
        addresses.push(Address {
            address: parse_cidr(&format!("ipam.addresses[{i}].address"), &a.address)?,
            gateway: parse_opt_ip(
                &format!("ipam.addresses[{i}].gateway"),
                a.gateway.as_deref(),
            )?,
        });
    }

    if !cni_args.is_empty() {
        let env = CniArgs::parse(cni_args)?;
        env.check_known(&["IP", "GATEWAY"])?;
        if let Some(ips) = env.get("IP").filter(|s| !s.is_empty()) {
            for item in ips.split(',') {
                addresses.push(Address {
                    address: parse_cidr("CNI_ARGS IP", item.trim())?,
                    gateway: None,
                });
            }
        }
        if let Some(gws) = env.get("GATEWAY").filter(|s| !s.is_empty()) {
            for item in gws.split(',') {
                let gw = parse_ip("CNI_ARGS GATEWAY", item.trim())?;
                for a in addresses.iter_mut().filter(|a| a.address.contains(&gw)) {
                    a.gateway = Some(gw);
                }
            }
        }
    }

    if let Some(ips) = args_cni(conf.args.as_ref())?
        .map(|a| a.ips)
        .filter(|v| !v.is_empty())
    {
        addresses = replace_with("args.cni.ips", &ips)?;
    }
    let runtime_ips = conf.runtime()?.ips;
    if !runtime_ips.is_empty() {
        addresses = replace_with("runtimeConfig.ips", &runtime_ips)?;
    }

    let cni_version = conf.version().to_string();
    let legacy = !version::greater_than_or_equal(&cni_version, "0.3.0").unwrap_or(true);
    let v4 = addresses
        .iter()
        .filter(|a| matches!(a.address, IpNet::V4(_)))
        .count();
    if legacy && (v4 > 1 || addresses.len() - v4 > 1) {
        return Err(StaticError::TooManyAddresses(cni_version));
    }

    let mut routes = Vec::new();
    for (i, r) in ipam.routes.unwrap_or_default().iter().enumerate() {
        routes.push(Route {
            dst: parse_cidr(&format!("ipam.routes[{i}].dst"), &r.dst)?,
            gw: parse_opt_ip(&format!("ipam.routes[{i}].gw"), r.gw.as_deref())?,
            mtu: r.mtu,
            advmss: r.advmss,
            priority: r.priority,
            table: r.table,
            scope: r.scope,
        });
    }

    Ok(StaticConfig {
        cni_version,
        addresses,
        routes,
        dns: ipam.dns.unwrap_or_default(),
    })
}

/// `args.cni.ips` and `runtimeConfig.ips` replace the list, without gateways.
fn replace_with(field: &str, ips: &[String]) -> Result<Vec<Address>, StaticError> {
    ips.iter()
        .enumerate()
        .map(|(i, ip)| {
            Ok(Address {
                address: parse_cidr(&format!("{field}[{i}]"), ip)?,
                gateway: None,
            })
        })
        .collect()
}

impl StaticConfig {
    /// The IPAM result: addresses with gateways, routes and DNS, no interfaces.
    pub fn result(&self) -> CniResult {
        CniResult {
            interfaces: Vec::new(),
            ips: self
                .addresses
                .iter()
                .map(|a| IpConfig {
                    interface: None,
                    address: a.address,
                    gateway: a.gateway,
                })
                .collect(),
            routes: self.routes.clone(),
            dns: self.dns.clone(),
        }
    }

    /// CHECK: every configured address must be in `prev` with the same prefix
    /// length and, when configured, the same gateway.
    pub fn check(&self, prev: &CniResult, ifname: &str) -> Result<(), StaticError> {
        for want in &self.addresses {
            let Some(found) = prev
                .ips
                .iter()
                .find(|ip| ip.address.addr() == want.address.addr())
            else {
                return Err(StaticError::AddressMissing {
                    address: want.address,
                    ifname: ifname.to_string(),
                });
            };
            let gw_ok = want.gateway.is_none() || want.gateway == found.gateway;
            if found.address.prefix_len() != want.address.prefix_len() || !gw_ok {
                let gw = found
                    .gateway
                    .map_or_else(|| "no gateway".to_string(), |g| format!("gateway {g}"));
                return Err(StaticError::AddressMismatch {
                    address: want.address,
                    ifname: ifname.to_string(),
                    found: format!("{} with {gw}", found.address),
                });
            }
        }
        Ok(())
    }
}

/// The CNI handlers.
#[derive(Debug, Clone, Copy, Default)]
pub struct StaticPlugin;

impl Plugin for StaticPlugin {
    fn add(&self, args: &CmdArgs) -> Result<Value, CniError> {
        let conf = load_config(&args.stdin, &args.args)?;
        conf.result().to_json(&conf.cni_version)
    }

    /// Nothing was allocated, so nothing to release.
    fn del(&self, _args: &CmdArgs) -> Result<(), CniError> {
        Ok(())
    }

    fn check(&self, args: &CmdArgs) -> Result<(), CniError> {
        let conf = load_config(&args.stdin, &args.args)?;
        let prev = NetConf::parse(&args.stdin)?
            .parse_prev_result()?
            .ok_or(StaticError::MissingPrevResult)?;
        Ok(conf.check(&prev, &args.ifname)?)
    }
}

#[cfg(test)]
mod tests;
