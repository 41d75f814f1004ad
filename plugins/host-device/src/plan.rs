//! Pure planning: what to record about the host device, what to configure in
//! the pod, what to report. No kernel access here.

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
        mac: link.mac,
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

/// Addresses and routes to configure on pod link `index`, the way the
/// reference's `ipam.ConfigureIface` does:
///
/// - A route's own `gw` is used as given, `0.0.0.0`/`::` included; only a
///   route without `gw` takes the family's address gateway, which is the
///   first `ips[].gateway` of that family, again `0.0.0.0`/`::` included.
/// - A gateway of `0.0.0.0`/`::` means on-link: no `RTA_GATEWAY` (the kernel
///   ignores a zero IPv4 gateway; it refuses `::` as an IPv6 one).
/// - Scope universe unless the route says otherwise (1.1.0 `scope`), on-link
///   or not: the reference leaves it at netlink's default.
pub fn pod_config(result: &CniResult, index: u32) -> (Vec<IpNet>, Vec<Route>) {
    let addrs = result.ips.iter().map(|ip| ip.address).collect();
    let address_gw = |v4: bool| {
        result
            .ips
            .iter()
            .filter_map(|ip| ip.gateway)
            .find(|g| g.is_ipv4() == v4)
    };
    let routes = result
        .routes
        .iter()
        .map(|r| {
            let mut route = Route::new(r.dst);
            route.gateway =
                r.gw.or_else(|| address_gw(r.dst.addr().is_ipv4()))
                    .filter(|g| !g.is_unspecified());
            route.oif = Some(index);
            route.table = r.table.unwrap_or(RT_TABLE_MAIN);
            route.priority = r.priority;
            route.mtu = r.mtu;
            route.advmss = r.advmss;
            route.scope = r.scope.map_or(Scope::Universe, Scope::from);
            route
        })
        .collect();
    (addrs, routes)
}

/// Whether `have`, as the kernel lists it, is the route `want` asked for:
/// destination, table, device, gateway, type, protocol, metric (the
/// kernel's default when none was given), MTU and advmss; scope for IPv4
/// only (the kernel reports every IPv6 route as universe).
pub fn same_route(want: &Route, have: &Route) -> bool {
    let v4 = want.dst.addr().is_ipv4();
    // IPv4 routes default to metric 0, IPv6 ones to 1024 (IP6_RT_PRIO_USER).
    let metric = |r: &Route| r.priority.unwrap_or(if v4 { 0 } else { 1024 });
    have.dst.trunc() == want.dst.trunc()
        && have.table == want.table
        && have.oif == want.oif
        && have.gateway == want.gateway
        && have.kind == want.kind
        && have.protocol == want.protocol
        && metric(have) == metric(want)
        && have.mtu == want.mtu
        && have.advmss == want.advmss
        && (!v4 || have.scope == want.scope)
}

/// A route for messages: `dst [via gw] [table t] [metric m]`.
pub fn describe_route(r: &Route) -> String {
    let mut s = r.dst.to_string();
    if let Some(g) = r.gateway {
        s.push_str(&format!(" via {g}"));
    }
    if r.table != RT_TABLE_MAIN {
        s.push_str(&format!(" table {}", r.table));
    }
    if let Some(p) = r.priority {
        s.push_str(&format!(" metric {p}"));
    }
    s
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
        assert_eq!(
            h.mac.map(|m| m.to_string()).as_deref(),
            Some("02:00:00:00:00:05")
        );
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

    fn ipam(ips: &[(&str, Option<&str>)], routes: &[(&str, Option<&str>)]) -> CniResult {
        let mut res = CniResult::default();
        for (a, g) in ips {
            res.ips.push(IpConfig {
                interface: None,
                address: net(a),
                gateway: g.map(|g| g.parse().unwrap()),
            });
        }
        for (d, g) in routes {
            res.routes
                .push(CniRoute::new(net(d), g.map(|g| g.parse().unwrap())));
        }
        res
    }

    fn gateways(routes: &[Route]) -> Vec<Option<String>> {
        routes
            .iter()
            .map(|r| r.gateway.map(|g| g.to_string()))
            .collect()
    }

    #[test]
    fn pod_config_missing_gw_takes_the_address_gateway_explicit_gw_is_kept() {
        let res = ipam(
            &[("198.51.100.7/24", Some("198.51.100.1"))],
            &[
                ("0.0.0.0/0", None),
                ("203.0.113.0/24", Some("0.0.0.0")),
                ("203.0.113.128/25", Some("198.51.100.254")),
                ("2001:db8::/32", None),
                ("2001:db8:1::/48", Some("::")),
            ],
        );
        let (addrs, routes) = pod_config(&res, 9);
        assert_eq!(addrs, [net("198.51.100.7/24")]);
        assert_eq!(
            gateways(&routes),
            [
                Some("198.51.100.1".into()),
                None, // explicit 0.0.0.0: on-link, not the address gateway
                Some("198.51.100.254".into()),
                None, // no IPv6 gateway anywhere: on-link
                None, // explicit ::: on-link
            ]
        );
        // Scope universe throughout, as the reference leaves it.
        assert!(routes.iter().all(|r| r.scope == Scope::Universe
            && r.protocol == plexus_netlink::RTPROT_BOOT
            && r.oif == Some(9)
            && r.table == RT_TABLE_MAIN));
    }

    #[test]
    fn pod_config_tutorial_nad_is_on_link_universe() {
        // The tutorial: gateway 0.0.0.0 on the address and on the route.
        let res = ipam(
            &[("198.51.100.93/24", Some("0.0.0.0"))],
            &[("198.51.100.0/24", Some("0.0.0.0")), ("0.0.0.0/0", None)],
        );
        let (_, routes) = pod_config(&res, 3);
        assert_eq!(gateways(&routes), [None, None]);
        assert_eq!(routes[0].scope, Scope::Universe);
    }

    #[test]
    fn pod_config_address_gateway_is_the_first_of_its_family_even_0_0_0_0() {
        // The reference takes the first IPv4 address gateway, 0.0.0.0 or
        // not, and ignores addresses without one.
        let res = ipam(
            &[
                ("203.0.113.7/24", None),
                ("198.51.100.7/24", Some("0.0.0.0")),
                ("198.51.100.8/24", Some("198.51.100.1")),
                ("2001:db8::7/64", Some("2001:db8::1")),
            ],
            &[("0.0.0.0/0", None), ("::/0", None)],
        );
        let (_, routes) = pod_config(&res, 3);
        assert_eq!(gateways(&routes), [None, Some("2001:db8::1".into())]);

        let res = ipam(
            &[
                ("203.0.113.7/24", None),
                ("198.51.100.8/24", Some("198.51.100.1")),
            ],
            &[("0.0.0.0/0", None)],
        );
        let (_, routes) = pod_config(&res, 3);
        assert_eq!(gateways(&routes), [Some("198.51.100.1".into())]);
    }

    #[test]
    fn pod_config_keeps_explicit_1_1_fields() {
        let mut res = ipam(&[("198.51.100.7/24", None)], &[]);
        let mut r = CniRoute::new(net("203.0.113.0/24"), None);
        r.scope = Some(253);
        r.table = Some(100);
        r.priority = Some(50);
        r.mtu = Some(1400);
        res.routes.push(r);
        let (_, routes) = pod_config(&res, 3);
        let r = &routes[0];
        assert_eq!((r.scope, r.table, r.priority), (Scope::Link, 100, Some(50)));
        assert_eq!(r.mtu, Some(1400));
    }

    #[test]
    fn same_route_compares_what_was_asked_with_kernel_defaults() {
        let (_, want) = pod_config(
            &ipam(&[("198.51.100.7/24", None)], &[("203.0.113.0/24", None)]),
            3,
        );
        let want = &want[0];
        assert!(same_route(want, want));
        let mut have = want.clone();
        have.priority = Some(0);
        assert!(same_route(want, &have), "IPv4 default metric 0");
        let mut other = have.clone();
        other.gateway = Some("198.51.100.1".parse().unwrap());
        assert!(!same_route(want, &other));
        let mut other = have.clone();
        other.protocol = RTPROT_KERNEL;
        other.scope = Scope::Link;
        assert!(!same_route(want, &other), "the connected route is another");
        let mut other = have;
        other.mtu = Some(1400);
        assert!(!same_route(want, &other));

        let (_, want6) = pod_config(
            &ipam(&[("2001:db8::7/64", None)], &[("2001:db8:1::/48", None)]),
            3,
        );
        let mut have6 = want6[0].clone();
        have6.priority = Some(1024);
        have6.scope = Scope::Universe;
        assert!(same_route(&want6[0], &have6), "IPv6 default metric 1024");
        assert_eq!(
            describe_route(&other),
            "203.0.113.0/24 metric 0",
            "describe names the route"
        );
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
