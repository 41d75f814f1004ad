//! Pure planning: what to record about the host device, what to configure in
//! the pod, what to report. No kernel access here.

use std::net::IpAddr;

use ipnet::IpNet;
use plexus_cni::result::{Interface, IpConfig, Route as CniRoute};
use plexus_cni::CniResult;
use plexus_netlink::{Address, Link, Route, RouteKind, Scope, RTPROT_KERNEL, RT_TABLE_MAIN};
use plexus_sysfs::pci::PciAddr;

use crate::store::{HostState, SavedRoute};

/// The host view of the device, captured before the move (the kernel
/// flushes addresses and routes when a device changes namespace).
pub fn host_state(
    link: &Link,
    pci: Option<PciAddr>,
    addrs: &[Address],
    routes: &[Route],
) -> HostState {
    HostState {
        name: link.name.clone(),
        mac: link.mac.as_ref().map(ToString::to_string),
        pci,
        mtu: link.mtu,
        up: link.up,
        alias: link.alias.clone(),
        addresses: addrs
            .iter()
            .filter(|a| a.scope == Scope::Universe)
            .map(|a| a.addr)
            .collect(),
        routes: routes
            .iter()
            // Kernel-derived routes come back with the addresses.
            .filter(|r| r.kind == RouteKind::Unicast && r.protocol != RTPROT_KERNEL)
            .filter(|r| !is_v6_link_local(&r.dst))
            .map(|r| SavedRoute {
                dst: r.dst,
                gateway: r.gateway,
                table: r.table,
                priority: r.priority,
                scope: u8::from(r.scope),
                protocol: r.protocol,
                prefsrc: r.prefsrc,
                mtu: r.mtu,
                advmss: r.advmss,
            })
            .collect(),
    }
}

fn is_v6_link_local(n: &IpNet) -> bool {
    match n {
        IpNet::V6(v) => (v.addr().segments()[0] & 0xffc0) == 0xfe80 || v.addr().is_multicast(),
        IpNet::V4(_) => false,
    }
}

/// `useInterfaceNetwork`: the host's addresses and main-table routes of the
/// device, as an IPAM-like result. A default route through the device (any
/// table, e.g. OCI's per-VNIC table) names the gateway of its family.
pub fn interface_network(host: &HostState) -> CniResult {
    let gateway_of = |v4: bool| {
        host.routes
            .iter()
            .find(|r| r.dst.prefix_len() == 0 && r.dst.addr().is_ipv4() == v4)
            .and_then(|r| r.gateway)
    };
    let ips = host
        .addresses
        .iter()
        .map(|a| IpConfig {
            interface: None,
            address: *a,
            gateway: gateway_of(a.addr().is_ipv4()).filter(|g| a.contains(g)),
        })
        .collect();
    let routes = host
        .routes
        .iter()
        .filter(|r| r.table == RT_TABLE_MAIN)
        .map(|r| {
            let mut c = CniRoute::new(r.dst, r.gateway);
            c.mtu = r.mtu;
            c.advmss = r.advmss;
            c.priority = r.priority;
            c
        })
        .collect();
    CniResult {
        ips,
        routes,
        ..CniResult::default()
    }
}

/// A gateway of `0.0.0.0`/`::` (as in the tutorial's NAD) means on-link.
fn real_gateway(gw: Option<IpAddr>) -> Option<IpAddr> {
    gw.filter(|g| !g.is_unspecified())
}

/// Addresses and routes to configure on pod link `index`. A route without a
/// gateway takes the first gateway of its family, as the reference does; a
/// route with none at all is on-link (scope link, like `ip route`).
pub fn pod_config(result: &CniResult, index: u32) -> (Vec<IpNet>, Vec<Route>) {
    let addrs = result.ips.iter().map(|ip| ip.address).collect();
    let first_gw = |v4: bool| {
        result
            .ips
            .iter()
            .filter_map(|ip| real_gateway(ip.gateway))
            .find(|g| g.is_ipv4() == v4)
    };
    let routes = result
        .routes
        .iter()
        .map(|r| {
            let mut route = Route::new(r.dst);
            route.gateway = real_gateway(r.gw).or_else(|| first_gw(r.dst.addr().is_ipv4()));
            route.oif = Some(index);
            route.table = r.table.unwrap_or(RT_TABLE_MAIN);
            route.priority = r.priority;
            route.mtu = r.mtu;
            route.advmss = r.advmss;
            route.scope = match (r.scope, route.gateway) {
                (Some(s), _) => Scope::from(s),
                (None, None) => Scope::Link,
                (None, Some(_)) => Scope::Universe,
            };
            route
        })
        .collect();
    (addrs, routes)
}

/// Routes to re-create on the host after DEL (`useInterfaceNetwork`).
pub fn host_routes(host: &HostState, index: u32) -> Vec<Route> {
    host.routes
        .iter()
        .map(|s| {
            let mut r = Route::new(s.dst);
            r.gateway = s.gateway;
            r.oif = Some(index);
            r.table = s.table;
            r.priority = s.priority;
            r.scope = Scope::from(s.scope);
            r.protocol = s.protocol;
            r.prefsrc = s.prefsrc;
            r.mtu = s.mtu;
            r.advmss = s.advmss;
            r
        })
        .collect()
}

/// What ADD reports: the moved interface (index 0) and the addresses,
/// routes and DNS that were configured.
pub fn report(
    ifname: &str,
    mac: Option<String>,
    mtu: Option<u32>,
    sandbox: &str,
    pci: Option<PciAddr>,
    ipam: Option<CniResult>,
    dns: Option<plexus_cni::result::Dns>,
) -> CniResult {
    let ipam = ipam.unwrap_or_default();
    CniResult {
        interfaces: vec![Interface {
            name: ifname.to_string(),
            mac: mac.unwrap_or_default(),
            mtu,
            sandbox: sandbox.to_string(),
            socket_path: String::new(),
            pci_id: pci.map(|p| p.to_string()).unwrap_or_default(),
        }],
        ips: ipam
            .ips
            .into_iter()
            .map(|ip| IpConfig {
                interface: Some(0),
                ..ip
            })
            .collect(),
        routes: ipam.routes,
        dns: if ipam.dns.is_empty() {
            dns.unwrap_or_default()
        } else {
            ipam.dns
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    fn link() -> Link {
        Link {
            index: 4,
            name: "ens5".into(),
            mac: Some("02:00:00:00:00:05".parse().unwrap()),
            mtu: 9000,
            up: true,
            ..Link::default()
        }
    }

    fn addr(s: &str, scope: Scope) -> Address {
        Address {
            index: 4,
            addr: net(s),
            scope,
            flags: 0,
            label: None,
        }
    }

    fn host() -> HostState {
        let mut dflt = Route::new(net("0.0.0.0/0"));
        dflt.gateway = Some("198.51.100.1".parse().unwrap());
        dflt.table = 101;
        let mut kernel = Route::new(net("198.51.100.0/24"));
        kernel.protocol = RTPROT_KERNEL;
        let mut extra = Route::new(net("203.0.113.0/24"));
        extra.gateway = Some("198.51.100.1".parse().unwrap());
        extra.priority = Some(10);
        let ll = Route::new(net("fe80::/64"));
        host_state(
            &link(),
            Some("0000:00:04.0".parse().unwrap()),
            &[
                addr("198.51.100.5/24", Scope::Universe),
                addr("fe80::1/64", Scope::Link),
            ],
            &[dflt, kernel, extra, ll],
        )
    }

    #[test]
    fn host_state_keeps_global_addresses_and_non_kernel_routes() {
        let h = host();
        assert_eq!(h.name, "ens5");
        assert_eq!(h.mac.as_deref(), Some("02:00:00:00:00:05"));
        assert_eq!((h.mtu, h.up), (9000, true));
        assert_eq!(h.addresses, [net("198.51.100.5/24")]);
        let dsts: Vec<String> = h.routes.iter().map(|r| r.dst.to_string()).collect();
        assert_eq!(dsts, ["0.0.0.0/0", "203.0.113.0/24"]);
    }

    #[test]
    fn interface_network_copies_addresses_and_main_routes() {
        let r = interface_network(&host());
        assert_eq!(r.ips.len(), 1);
        assert_eq!(r.ips[0].gateway, Some("198.51.100.1".parse().unwrap()));
        assert_eq!(r.routes.len(), 1, "policy-table default stays on the host");
        assert_eq!(r.routes[0].dst, net("203.0.113.0/24"));
        assert_eq!(r.routes[0].priority, Some(10));
    }

    #[test]
    fn pod_config_defaults_gateways_like_the_reference() {
        let mut res = CniResult::default();
        res.ips.push(IpConfig {
            interface: None,
            address: net("198.51.100.7/24"),
            gateway: Some("198.51.100.1".parse().unwrap()),
        });
        res.routes.push(CniRoute::new(net("0.0.0.0/0"), None));
        res.routes.push(CniRoute::new(
            net("203.0.113.0/24"),
            Some("0.0.0.0".parse().unwrap()),
        ));
        res.routes.push(CniRoute::new(net("2001:db8::/32"), None));
        let (addrs, routes) = pod_config(&res, 9);
        assert_eq!(addrs, [net("198.51.100.7/24")]);
        assert_eq!(routes[0].gateway, Some("198.51.100.1".parse().unwrap()));
        assert_eq!(routes[0].scope, Scope::Universe);
        assert_eq!(routes[1].gateway, Some("198.51.100.1".parse().unwrap()));
        assert_eq!(routes[2].gateway, None, "no v6 gateway: on-link");
        assert_eq!(routes[2].scope, Scope::Link);
        assert!(routes
            .iter()
            .all(|r| r.oif == Some(9) && r.table == RT_TABLE_MAIN));
    }

    #[test]
    fn report_numbers_ips_and_prefers_ipam_dns() {
        let mut ipam = CniResult::default();
        ipam.ips.push(IpConfig {
            interface: None,
            address: net("198.51.100.7/24"),
            gateway: None,
        });
        let dns = plexus_cni::result::Dns {
            nameservers: vec!["198.51.100.53".into()],
            ..Default::default()
        };
        let r = report(
            "net1",
            Some("02:00:00:00:00:05".into()),
            Some(1500),
            "/var/run/netns/p",
            Some("0000:00:04.0".parse().unwrap()),
            Some(ipam),
            Some(dns.clone()),
        );
        assert_eq!(r.ips[0].interface, Some(0));
        assert_eq!(r.interfaces[0].pci_id, "0000:00:04.0");
        assert_eq!(r.dns, dns);
        let hr = host_routes(&host(), 12);
        assert_eq!(hr[0].table, 101);
        assert_eq!(hr[0].oif, Some(12));
    }
}
