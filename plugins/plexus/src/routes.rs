//! The `default-route` request of the networks annotation, as Multus
//! implements it (`CheckGatewayConfig`, `netutils.DeleteDefaultGW` /
//! `SetDefaultGW`): when any network asks for the default route, every other
//! network's default route of that family is removed from the pod and from
//! its result, and the asking network gets `default via <gw> dev <ifname>`.

use std::net::IpAddr;

use ipnet::IpNet;
use plexus_cni::result::Route;
use plexus_cni::CniResult;

use crate::error::PlexusError;

/// Default-route edits inside the pod's network namespace.
pub trait RouteOps {
    /// Removes the default routes of one family leaving through `ifname`.
    fn delete_default_routes(&self, netns: &str, ifname: &str, v6: bool) -> Result<(), String>;
    /// Adds `default via gw dev ifname` (replacing one that exists).
    fn add_default_route(&self, netns: &str, ifname: &str, gw: IpAddr) -> Result<(), String>;
}

/// Real route edits through plexus-netlink, socket opened inside the netns.
#[derive(Debug, Clone, Copy, Default)]
pub struct NetlinkRoutes;

fn handle_and_link(netns: &str, ifname: &str) -> Result<(plexus_netlink::Handle, u32), String> {
    let ns =
        plexus_netns::NetNs::open(netns).map_err(|e| format!("cannot open netns {netns}: {e}"))?;
    let h = plexus_netlink::Handle::open_in(&ns).map_err(|e| format!("netlink in {netns}: {e}"))?;
    let link = h
        .link_by_name(ifname)
        .map_err(|e| format!("cannot find {ifname} in {netns}: {e}"))?;
    Ok((h, link.index))
}

impl RouteOps for NetlinkRoutes {
    fn delete_default_routes(&self, netns: &str, ifname: &str, v6: bool) -> Result<(), String> {
        let (h, index) = handle_and_link(netns, ifname)?;
        let family = if v6 {
            plexus_netlink::Family::V6
        } else {
            plexus_netlink::Family::V4
        };
        let routes = h
            .routes(Some(family), None)
            .map_err(|e| format!("cannot list routes: {e}"))?;
        for r in routes
            .iter()
            .filter(|r| r.dst.prefix_len() == 0 && r.oif == Some(index))
        {
            h.del_route(r)
                .map_err(|e| format!("cannot delete default route via {ifname}: {e}"))?;
        }
        Ok(())
    }

    fn add_default_route(&self, netns: &str, ifname: &str, gw: IpAddr) -> Result<(), String> {
        let (h, index) = handle_and_link(netns, ifname)?;
        let mut r = plexus_netlink::Route::new(default_dst(gw));
        r.gateway = Some(gw);
        r.oif = Some(index);
        h.replace_route(&r)
            .map_err(|e| format!("cannot add default route via {gw} dev {ifname}: {e}"))
    }
}

/// `0.0.0.0/0` or `::/0`, the family of `gw`.
fn default_dst(gw: IpAddr) -> IpNet {
    match gw {
        IpAddr::V4(_) => IpNet::V4(ipnet::Ipv4Net::default()),
        IpAddr::V6(_) => IpNet::V6(ipnet::Ipv6Net::default()),
    }
}

/// Which families each network must lose its default route for, given every
/// network's requested gateways. `None` when nobody asked (nothing changes).
/// More than one gateway per family is an error, as in Multus (no ECMP).
pub fn plan_filters(requests: &[Vec<IpAddr>]) -> Result<Option<Vec<(bool, bool)>>, PlexusError> {
    if requests.iter().all(Vec::is_empty) {
        return Ok(None);
    }
    let all: Vec<&IpAddr> = requests.iter().flatten().collect();
    let v4 = all.iter().filter(|g| g.is_ipv4()).count();
    let v6 = all.len() - v4;
    if v4 > 1 || v6 > 1 {
        return Err(PlexusError::Config(format!(
            "plexus does not support ECMP for default-route: {} IPv4 and {} IPv6 gateways requested",
            v4, v6
        )));
    }
    Ok(Some(
        requests
            .iter()
            .map(|gws| {
                (
                    !gws.iter().any(IpAddr::is_ipv4),
                    !gws.iter().any(IpAddr::is_ipv6),
                )
            })
            .collect(),
    ))
}

fn is_default_of(route: &Route, v6: bool) -> bool {
    route.dst.prefix_len() == 0 && route.dst.addr().is_ipv6() == v6
}

/// Removes default routes of a family from a result so the status and the
/// runtime see what the pod really has.
pub fn strip_default_routes(result: &mut CniResult, v6: bool) {
    result.routes.retain(|r| !is_default_of(r, v6));
}

/// Adds `default via gw` to a result's routes.
pub fn add_default_route(result: &mut CniResult, gw: IpAddr) {
    result.routes.push(Route::new(default_dst(gw), Some(gw)));
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn filters_every_network_but_the_requester() {
        assert_eq!(plan_filters(&[vec![], vec![]]).unwrap(), None);
        assert_eq!(
            plan_filters(&[vec![], vec![ip("198.51.100.1")]]).unwrap(),
            Some(vec![(true, true), (false, true)])
        );
        let e = plan_filters(&[vec![ip("198.51.100.1")], vec![ip("203.0.113.1")]]).unwrap_err();
        assert!(e.to_string().contains("ECMP"));
    }

    #[test]
    fn result_edits() {
        let mut r = CniResult::from_json(&json!({"cniVersion":"1.0.0","routes":[
            {"dst":"0.0.0.0/0","gw":"198.51.100.1"},{"dst":"::/0"},{"dst":"198.51.100.0/24"}]}))
        .unwrap();
        strip_default_routes(&mut r, false);
        assert_eq!(
            r.to_json("1.0.0").unwrap()["routes"],
            json!([{"dst":"::/0"},{"dst":"198.51.100.0/24"}])
        );
        add_default_route(&mut r, ip("203.0.113.1"));
        assert_eq!(
            r.to_json("1.0.0").unwrap()["routes"][2],
            json!({"dst":"0.0.0.0/0","gw":"203.0.113.1"})
        );
        let mut bare = CniResult::default();
        add_default_route(&mut bare, ip("203.0.113.1"));
        assert_eq!(bare.routes.len(), 1);
        // Legacy results keep their routes inside ip4/ip6: same edit.
        let mut old = CniResult::from_json(&json!({"cniVersion":"0.2.0",
            "ip4":{"ip":"198.51.100.2/24","routes":[{"dst":"0.0.0.0/0","gw":"198.51.100.1"}]}}))
        .unwrap();
        strip_default_routes(&mut old, false);
        assert!(old.to_json("0.2.0").unwrap()["ip4"].get("routes").is_none());
    }
}
