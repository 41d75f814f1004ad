//! Routes in any table, both families.

use std::net::IpAddr;

use ipnet::IpNet;
use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteMetric, RouteProtocol,
    RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use crate::error::Result;
use crate::socket::Handle;
use crate::types::{Family, Scope};
use crate::{RTPROT_BOOT, RT_TABLE_MAIN};

/// Route type (`RTN_*`), reduced to the ones Plexus looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum RouteKind {
    #[default]
    Unicast,
    Local,
    Broadcast,
    Multicast,
    Blackhole,
    Unreachable,
    Prohibit,
    Other(u8),
}

impl RouteKind {
    fn from_type(t: RouteType) -> Self {
        match t {
            RouteType::Unicast => RouteKind::Unicast,
            RouteType::Local => RouteKind::Local,
            RouteType::Broadcast => RouteKind::Broadcast,
            RouteType::Multicast => RouteKind::Multicast,
            RouteType::BlackHole => RouteKind::Blackhole,
            RouteType::Unreachable => RouteKind::Unreachable,
            RouteType::Prohibit => RouteKind::Prohibit,
            other => RouteKind::Other(u8::from(other)),
        }
    }

    fn to_type(self) -> RouteType {
        match self {
            RouteKind::Unicast => RouteType::Unicast,
            RouteKind::Local => RouteType::Local,
            RouteKind::Broadcast => RouteType::Broadcast,
            RouteKind::Multicast => RouteType::Multicast,
            RouteKind::Blackhole => RouteType::BlackHole,
            RouteKind::Unreachable => RouteType::Unreachable,
            RouteKind::Prohibit => RouteType::Prohibit,
            RouteKind::Other(v) => RouteType::from(v),
        }
    }
}

/// A route. `dst` of prefix length 0 is the default route.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Route {
    pub dst: IpNet,
    pub gateway: Option<IpAddr>,
    /// Output interface index.
    pub oif: Option<u32>,
    pub table: u32,
    /// Metric (`RTA_PRIORITY`).
    pub priority: Option<u32>,
    pub scope: Scope,
    /// `RTPROT_*`: who installed it ([`crate::RTPROT_KERNEL`] for routes the
    /// kernel derived from an address).
    pub protocol: u8,
    pub kind: RouteKind,
    pub prefsrc: Option<IpAddr>,
    pub mtu: Option<u32>,
    pub advmss: Option<u32>,
}

impl Route {
    /// A unicast route to `dst` in the main table, installed as `ip route`
    /// would (protocol boot, scope universe); set the other fields directly.
    pub fn new(dst: IpNet) -> Self {
        Route {
            dst,
            gateway: None,
            oif: None,
            table: RT_TABLE_MAIN,
            priority: None,
            scope: Scope::Universe,
            protocol: RTPROT_BOOT,
            kind: RouteKind::Unicast,
            prefsrc: None,
            mtu: None,
            advmss: None,
        }
    }

    /// The family of the destination.
    pub fn family(&self) -> Family {
        Family::of(&self.dst.addr())
    }

    fn from_message(m: RouteMessage) -> Option<Self> {
        let family = Family::from_af(m.header.address_family)?;
        let mut dst = None;
        let mut r = Route::new(unspecified(family));
        r.table = u32::from(m.header.table);
        r.scope = Scope::from(u8::from(m.header.scope));
        r.protocol = u8::from(m.header.protocol);
        r.kind = RouteKind::from_type(m.header.kind);
        for a in m.attributes {
            match a {
                RouteAttribute::Destination(d) => dst = ip_of(d),
                RouteAttribute::Gateway(g) => r.gateway = ip_of(g),
                RouteAttribute::PrefSource(s) => r.prefsrc = ip_of(s),
                RouteAttribute::Oif(i) => r.oif = Some(i),
                RouteAttribute::Priority(p) => r.priority = Some(p),
                RouteAttribute::Table(t) => r.table = t,
                RouteAttribute::Metrics(ms) => {
                    for metric in ms {
                        match metric {
                            RouteMetric::Mtu(v) => r.mtu = Some(v),
                            RouteMetric::Advmss(v) => r.advmss = Some(v),
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        let addr = dst.unwrap_or_else(|| r.dst.addr());
        r.dst = IpNet::new(addr, m.header.destination_prefix_length).ok()?;
        Some(r)
    }

    fn to_message(&self) -> RouteMessage {
        let mut m = RouteMessage::default();
        m.header.address_family = self.family().to_af();
        m.header.destination_prefix_length = self.dst.prefix_len();
        // Tables above 255 only fit in RTA_TABLE; the header then says
        // RT_TABLE_UNSPEC and the kernel reads the attribute.
        m.header.table = u8::try_from(self.table).unwrap_or(RouteHeader::RT_TABLE_UNSPEC);
        m.header.scope = RouteScope::from(u8::from(self.scope));
        m.header.protocol = RouteProtocol::from(self.protocol);
        m.header.kind = self.kind.to_type();
        if self.dst.prefix_len() > 0 {
            m.attributes
                .push(RouteAttribute::Destination(RouteAddress::from(
                    self.dst.addr(),
                )));
        }
        if let Some(g) = self.gateway {
            m.attributes
                .push(RouteAttribute::Gateway(RouteAddress::from(g)));
        }
        if let Some(s) = self.prefsrc {
            m.attributes
                .push(RouteAttribute::PrefSource(RouteAddress::from(s)));
        }
        if let Some(i) = self.oif {
            m.attributes.push(RouteAttribute::Oif(i));
        }
        if let Some(p) = self.priority {
            m.attributes.push(RouteAttribute::Priority(p));
        }
        m.attributes.push(RouteAttribute::Table(self.table));
        let mut metrics = Vec::new();
        if let Some(v) = self.mtu {
            metrics.push(RouteMetric::Mtu(v));
        }
        if let Some(v) = self.advmss {
            metrics.push(RouteMetric::Advmss(v));
        }
        if !metrics.is_empty() {
            m.attributes.push(RouteAttribute::Metrics(metrics));
        }
        m
    }

    fn describe(&self) -> String {
        let mut s = format!("route {}", self.dst);
        if let Some(g) = self.gateway {
            s.push_str(&format!(" via {g}"));
        }
        if let Some(i) = self.oif {
            s.push_str(&format!(" dev #{i}"));
        }
        s.push_str(&format!(" table {}", self.table));
        s
    }
}

fn unspecified(f: Family) -> IpNet {
    match f {
        Family::V4 => IpNet::V4(ipnet::Ipv4Net::default()),
        Family::V6 => IpNet::V6(ipnet::Ipv6Net::default()),
    }
}

fn ip_of(a: RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v) => Some(IpAddr::V4(v)),
        RouteAddress::Inet6(v) => Some(IpAddr::V6(v)),
        _ => None,
    }
}

impl Handle {
    /// Routes of `family` (or both), in `table` (or all tables). Cached
    /// clones are not routes and are left out.
    pub fn routes(&self, family: Option<Family>, table: Option<u32>) -> Result<Vec<Route>> {
        let mut req = RouteMessage::default();
        req.header.address_family = family.map_or(AddressFamily::Unspec, Family::to_af);
        let replies = self.dump(RouteNetlinkMessage::GetRoute(req), "list routes")?;
        Ok(replies
            .into_iter()
            .filter_map(|r| match r {
                RouteNetlinkMessage::NewRoute(m) => Route::from_message(m),
                _ => None,
            })
            .filter(|r| family.is_none_or(|f| r.family() == f))
            .filter(|r| table.is_none_or(|t| r.table == t))
            .collect())
    }

    /// Adds a route; [`crate::Error::Exists`] if an equal one exists.
    pub fn add_route(&self, route: &Route) -> Result<()> {
        self.ack(
            RouteNetlinkMessage::NewRoute(route.to_message()),
            NLM_F_CREATE | NLM_F_EXCL,
            "add",
            || route.describe(),
        )
    }

    /// Adds a route beside any others for the same destination:
    /// `NLM_F_CREATE` without `NLM_F_EXCL`, as vishvananda/netlink's
    /// `RouteAddEcmp` (what containernetworking/plugins' IPAM code uses). The
    /// kernel then refuses ([`crate::Error::Exists`]) only a route it already
    /// has: IPv4, same type, scope, protocol, metric and next hop; IPv6, same
    /// metric and next hop. A route that differs in any of these (e.g. a
    /// `proto boot` route next to the kernel's connected route) is added as a
    /// second route for the prefix.
    pub fn create_route(&self, route: &Route) -> Result<()> {
        self.ack(
            RouteNetlinkMessage::NewRoute(route.to_message()),
            NLM_F_CREATE,
            "add",
            || route.describe(),
        )
    }

    /// Adds or replaces a route (`ip route replace`).
    pub fn replace_route(&self, route: &Route) -> Result<()> {
        self.ack(
            RouteNetlinkMessage::NewRoute(route.to_message()),
            NLM_F_CREATE | NLM_F_REPLACE,
            "replace",
            || route.describe(),
        )
    }

    /// Deletes a route; [`crate::Error::NotFound`] if none matches.
    pub fn del_route(&self, route: &Route) -> Result<()> {
        let mut m = route.to_message();
        // Match any protocol and scope, like `ip route del`.
        m.header.protocol = RouteProtocol::Unspec;
        m.header.scope = RouteScope::NoWhere;
        self.ack(RouteNetlinkMessage::DelRoute(m), 0, "delete", || {
            route.describe()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_round_trip_through_message() {
        let mut r = Route::new("203.0.113.0/24".parse().unwrap());
        r.gateway = Some("198.51.100.1".parse().unwrap());
        r.oif = Some(4);
        r.table = 1000;
        r.priority = Some(50);
        r.mtu = Some(1400);
        r.advmss = Some(1360);
        let m = r.to_message();
        assert_eq!(m.header.table, RouteHeader::RT_TABLE_UNSPEC);
        assert_eq!(Route::from_message(m), Some(r));
    }

    #[test]
    fn default_route_has_no_destination_attribute() {
        let mut r = Route::new("::/0".parse().unwrap());
        r.gateway = Some("2001:db8::1".parse().unwrap());
        let m = r.to_message();
        assert!(!m
            .attributes
            .iter()
            .any(|a| matches!(a, RouteAttribute::Destination(_))));
        assert_eq!(m.header.table, 254);
        let back = Route::from_message(m).unwrap();
        assert_eq!(back.dst.to_string(), "::/0");
        assert_eq!(back.family(), Family::V6);
    }
}
