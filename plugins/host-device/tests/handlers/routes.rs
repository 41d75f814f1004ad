//! Routes and addresses in the pod: IPAM routes, zero gateways, `useInterfaceNetwork`.

use plexus_host_device::net::Side;
use rstest::rstest;
use serde_json::{json, Value};

use crate::support::{routes_of, Env, POD};

/// Queues a `static` result with `ips` (address, gateway) and `routes`
/// (dst, gw), in `version`'s shape.
fn ipam_returns(env: &Env, version: &str, ips: &[(&str, &str)], routes: Value) {
    let ips: Vec<Value> = ips
        .iter()
        .map(|(a, g)| {
            let mut ip = json!({"address": a, "gateway": g});
            if version.starts_with("0.") {
                ip["version"] = json!("4");
            }
            ip
        })
        .collect();
    let out = json!({"cniVersion": version, "ips": ips, "routes": routes});
    env.plugin
        .exec
        .push_output(&serde_json::to_vec(&out).unwrap());
}

/// The tutorial's NAD: address gateway 0.0.0.0 and a route to the
/// address's own subnet with `gw` 0.0.0.0. As in the reference, the route
/// goes in beside the kernel's connected route, on-link, and is reported
/// as configured.
#[rstest]
fn tutorial_subnet_route_sits_beside_the_connected_route(
    #[values("0.3.1", "0.4.0", "1.0.0", "1.1.0")] version: &str,
) {
    let env = Env::new();
    let routes = json!([{"dst": "198.51.100.0/24", "gw": "0.0.0.0"}]);
    ipam_returns(
        &env,
        version,
        &[("198.51.100.93/24", "0.0.0.0")],
        routes.clone(),
    );
    let out = env.add(version, json!({})).unwrap();
    assert_eq!(out["routes"], routes);
    assert_eq!(out["ips"][0]["gateway"], "0.0.0.0");
    let w = env.world();
    let p = w.get(Side::Pod, "net1").unwrap();
    assert_eq!(
        routes_of(p),
        ["198.51.100.0/24 - kernel", "198.51.100.0/24 - boot"]
    );
    assert_eq!(p.routes[1].scope, plexus_netlink::Scope::Universe);
}

/// An explicit `gw` 0.0.0.0 is on-link even when the address has a real
/// gateway; only a missing `gw` takes the address gateway. A route to the
/// address's own subnet through a real gateway is added too.
#[test]
fn explicit_zero_gw_is_on_link_missing_gw_takes_the_address_gateway() {
    let env = Env::new();
    ipam_returns(
        &env,
        "1.0.0",
        &[("198.51.100.7/24", "198.51.100.1")],
        json!([
            {"dst": "203.0.113.0/24", "gw": "0.0.0.0"},
            {"dst": "203.0.113.128/25"},
            {"dst": "198.51.100.0/24", "gw": "198.51.100.254"}
        ]),
    );
    env.add("1.0.0", json!({})).unwrap();
    let w = env.world();
    assert_eq!(
        routes_of(w.get(Side::Pod, "net1").unwrap()),
        [
            "198.51.100.0/24 - kernel",
            "203.0.113.0/24 - boot",
            "203.0.113.128/25 198.51.100.1 boot",
            "198.51.100.0/24 198.51.100.254 boot"
        ]
    );
}

/// The same route twice (here once with its gateway defaulted): the kernel
/// refuses the second as identical, which is kept, not an error.
#[test]
fn identical_route_twice_is_added_once() {
    let env = Env::new();
    ipam_returns(
        &env,
        "1.0.0",
        &[("198.51.100.7/24", "198.51.100.1")],
        json!([{"dst": "0.0.0.0/0"}, {"dst": "0.0.0.0/0", "gw": "198.51.100.1"}]),
    );
    let out = env.add("1.0.0", json!({})).unwrap();
    assert_eq!(out["routes"].as_array().unwrap().len(), 2, "{out}");
    let w = env.world();
    assert_eq!(
        routes_of(w.get(Side::Pod, "net1").unwrap()),
        ["198.51.100.0/24 - kernel", "0.0.0.0/0 198.51.100.1 boot"]
    );
}

/// EEXIST without an identical route in the pod, or any other route error:
/// ADD fails naming the route, and rolls back.
#[rstest]
fn route_error_fails_add_naming_the_route_and_rolls_back(#[values(true, false)] exists: bool) {
    let env = Env::new();
    env.ipam_ok("1.0.0");
    if exists {
        env.world().fail_exists.push("create_route");
    } else {
        env.world().fail.push("create_route");
    }
    let e = env.add("1.0.0", json!({})).unwrap_err();
    assert!(
        e.msg.contains("add route 0.0.0.0/0 via 198.51.100.1"),
        "{e}"
    );
    assert_eq!(
        e.msg.contains("already has a different route"),
        exists,
        "{e}"
    );
    env.assert_restored();
    assert!(env.state_files().is_empty());
    assert_eq!(env.ipam_commands(), ["ADD", "DEL"]);
}

#[test]
fn use_interface_network_copies_and_restores_host_config() {
    let env = Env::new();
    {
        let mut w = env.world();
        let l = &mut w.host[0];
        l.addrs.push("198.51.100.5/24".parse().unwrap());
        let mut r = plexus_netlink::Route::new("203.0.113.0/24".parse().unwrap());
        r.gateway = Some("198.51.100.1".parse().unwrap());
        r.oif = Some(l.link.index);
        l.routes.push(r);
    }
    let out = env
        .add("1.0.0", json!({"ipam": null, "useInterfaceNetwork": true}))
        .unwrap();
    assert_eq!(out["ips"][0]["address"], "198.51.100.5/24");
    assert_eq!(out["routes"][0]["dst"], "203.0.113.0/24");
    {
        let w = env.world();
        let p = w.get(Side::Pod, "net1").unwrap();
        assert_eq!(p.addrs, ["198.51.100.5/24".parse().unwrap()]);
        assert_eq!(
            routes_of(p),
            [
                "198.51.100.0/24 - kernel",
                "203.0.113.0/24 198.51.100.1 boot"
            ]
        );
    }
    env.del(
        POD,
        "1.0.0",
        json!({"ipam": null, "useInterfaceNetwork": true}),
    )
    .unwrap();
    env.assert_restored();
    let w = env.world();
    let h = w.get(Side::Host, "ens5").unwrap();
    assert_eq!(h.addrs, ["198.51.100.5/24".parse().unwrap()]);
    assert_eq!(
        routes_of(h),
        [
            "198.51.100.0/24 - kernel",
            "203.0.113.0/24 198.51.100.1 boot"
        ]
    );
    assert!(env.ipam_commands().is_empty());
}
