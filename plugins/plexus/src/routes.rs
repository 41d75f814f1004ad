//! The `default-route` request of the networks annotation, as Multus
//! implements it (`CheckGatewayConfig`, `netutils.DeleteDefaultGW` /
//! `SetDefaultGW`): when any network asks for the default route, every other
//! network's default route of that family is removed from the pod and from
//! its result, and the asking network gets `default via <gw> dev <ifname>`.

use std::net::IpAddr;

use ipnet::IpNet;
use serde_json::{json, Value};

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
        let dst = IpNet::new(unspecified(gw), 0).map_err(|e| e.to_string())?;
        let mut r = plexus_netlink::Route::new(dst);
        r.gateway = Some(gw);
        r.oif = Some(index);
        h.replace_route(&r)
            .map_err(|e| format!("cannot add default route via {gw} dev {ifname}: {e}"))
    }
}

fn unspecified(like: IpAddr) -> IpAddr {
    match like {
        IpAddr::V4(_) => IpAddr::from([0u8; 4]),
        IpAddr::V6(_) => IpAddr::from([0u16; 8]),
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

fn is_default_dst(route: &Value, v6: bool) -> bool {
    route
        .get("dst")
        .and_then(Value::as_str)
        .and_then(|d| d.parse::<IpNet>().ok())
        .is_some_and(|n| n.prefix_len() == 0 && n.addr().is_ipv6() == v6)
}

/// Removes default routes of a family from a result (any version) so the
/// status and the runtime see what the pod really has.
pub fn strip_default_routes(result: &mut Value, v6: bool) {
    if let Some(routes) = result.get_mut("routes").and_then(Value::as_array_mut) {
        routes.retain(|r| !is_default_dst(r, v6));
    }
    for legacy in ["ip4", "ip6"] {
        if let Some(routes) = result
            .get_mut(legacy)
            .and_then(|b| b.get_mut("routes"))
            .and_then(Value::as_array_mut)
        {
            routes.retain(|r| !is_default_dst(r, v6));
        }
    }
}

/// Adds `default via gw` to a result's routes.
pub fn add_default_route(result: &mut Value, gw: IpAddr) {
    let dst = if gw.is_ipv4() { "0.0.0.0/0" } else { "::/0" };
    if let Some(obj) = result.as_object_mut() {
        let routes = obj.entry("routes").or_insert_with(|| json!([]));
        if let Some(list) = routes.as_array_mut() {
            list.push(json!({"dst": dst, "gw": gw.to_string()}));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let mut r = json!({"cniVersion":"1.0.0","routes":[
            {"dst":"0.0.0.0/0","gw":"198.51.100.1"},{"dst":"::/0"},{"dst":"198.51.100.0/24"}]});
        strip_default_routes(&mut r, false);
        assert_eq!(
            r["routes"],
            json!([{"dst":"::/0"},{"dst":"198.51.100.0/24"}])
        );
        add_default_route(&mut r, ip("203.0.113.1"));
        assert_eq!(
            r["routes"][2],
            json!({"dst":"0.0.0.0/0","gw":"203.0.113.1"})
        );
        let mut bare = json!({"cniVersion":"1.0.0"});
        add_default_route(&mut bare, ip("203.0.113.1"));
        assert_eq!(bare["routes"].as_array().map(Vec::len), Some(1));
    }
}
