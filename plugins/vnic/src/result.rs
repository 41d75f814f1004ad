//! The CNI result for a VNIC: its addresses per family, gateways, routes.
//!
//! Every family the VNIC has (or the ones `ipam.families` names) becomes an
//! `ips` entry: the primary IPv4 address, then each IPv6 address, each with
//! its subnet's prefix and gateway. The result types carry the family, so
//! 0.3.x output gets its `version` fields and 1.x none, from one value.

use std::net::IpAddr;

use ipnet::IpNet;
use plexus_cni::result::{IpConfig, Route};
use plexus_cni::CniResult;
use plexus_imds::node_state::VnicState;
use plexus_imds::NicAddress;
use serde::{Deserialize, Serialize};

use crate::{IpamConfig, VnicError};

/// An address family `ipam.families` can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IpFamily {
    /// IPv4: the VNIC's `privateIp`.
    Ipv4,
    /// IPv6: the VNIC's `ipv6Addresses`.
    Ipv6,
}

impl std::fmt::Display for IpFamily {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Ipv4 => "IPv4",
            Self::Ipv6 => "IPv6",
        })
    }
}

impl IpFamily {
    fn of(ip: &IpAddr) -> Self {
        if ip.is_ipv4() {
            Self::Ipv4
        } else {
            Self::Ipv6
        }
    }

    fn default_dst(self) -> IpNet {
        match self {
            Self::Ipv4 => IpNet::V4(ipnet::Ipv4Net::default()),
            Self::Ipv6 => IpNet::V6(ipnet::Ipv6Net::default()),
        }
    }
}

/// The VNIC's addresses of the wanted families, primary first. Explicitly
/// named families must be there: a v6-only NAD on a v4-only VNIC fails
/// loudly instead of giving the pod an interface without an address.
fn addresses(vnic: &VnicState, ipam: &IpamConfig) -> Result<Vec<NicAddress>, VnicError> {
    let nic = vnic.to_nic();
    let all: Vec<NicAddress> = nic.addresses().cloned().collect();
    let Some(wanted) = &ipam.families else {
        return Ok(all);
    };
    for family in wanted {
        if !all.iter().any(|a| IpFamily::of(&a.ip) == *family) {
            return Err(VnicError::NoFamily {
                vnic_id: vnic.vnic_id.clone(),
                family: *family,
            });
        }
    }
    Ok(all
        .into_iter()
        .filter(|a| wanted.contains(&IpFamily::of(&a.ip)))
        .collect())
}

/// The result for a VNIC: its addresses on the interface with their
/// gateways, the configured routes, and with `defaultRoute` a default
/// route per family handed out (via that family's gateway).
pub fn build_result(vnic: &VnicState, ipam: &IpamConfig) -> Result<CniResult, VnicError> {
    let addrs = addresses(vnic, ipam)?;
    let mut ips = Vec::with_capacity(addrs.len());
    for a in &addrs {
        let address = IpNet::new(a.ip, a.prefix_len())
            .map_err(|e| VnicError::Config(format!("VNIC {} prefix: {e}", vnic.vnic_id)))?;
        ips.push(IpConfig {
            interface: None,
            address,
            gateway: a.gateway,
        });
    }
    let mut routes: Vec<Route> = ipam
        .routes
        .iter()
        .map(|r| Route::new(r.dst, r.gw))
        .collect();
    if ipam.default_route {
        for family in [IpFamily::Ipv4, IpFamily::Ipv6] {
            let first = addrs.iter().find(|a| IpFamily::of(&a.ip) == family);
            let any = family.default_dst();
            if let Some(a) = first.filter(|_| !routes.iter().any(|r| r.dst == any)) {
                routes.push(Route::new(any, a.gateway));
            }
        }
    }
    Ok(CniResult {
        ips,
        routes,
        ..CniResult::default()
    })
}
