//! Routes and addresses on the real kernel: zero gateways, `useInterfaceNetwork` v4 and v6.

use plexus_testkit::net::{ip_json, TestNs};
use serde_json::json;

use crate::support::{ok_json, pod_addrs, Rig};

/// The tutorial's routes on the real kernel: `gw` 0.0.0.0 on the address's
/// own subnet gives a second, on-link route beside the connected one (as
/// the reference's `RouteAddEcmp` does); a route listed twice is added once.
#[test]
fn zero_gw_subnet_route_sits_beside_the_connected_route() {
    let rig = Rig::new();
    let conf = rig.conf(
        "0.3.1",
        json!({"ipam": {"type": "static",
            "addresses": [{"address": "198.51.100.7/24", "gateway": "0.0.0.0"}],
            "routes": [{"dst": "198.51.100.0/24", "gw": "0.0.0.0"},
                       {"dst": "203.0.113.0/24", "gw": "0.0.0.0"},
                       {"dst": "203.0.113.0/24"}]}}),
    );
    let out = ok_json(&rig.add(&conf));
    assert_eq!(
        out["routes"][0],
        json!({"dst": "198.51.100.0/24", "gw": "0.0.0.0"})
    );
    let routes = rig.pod.routes();
    let mut got: Vec<String> = routes
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["dev"] == "net1" && !r["dst"].as_str().unwrap().starts_with("fe80"))
        .filter(|r| r["table"].is_null() || r["table"] == "main")
        .map(|r| {
            format!(
                "{} {} {} {}",
                r["dst"].as_str().unwrap(),
                r["gateway"].as_str().unwrap_or("-"),
                r["protocol"].as_str().unwrap_or("boot"),
                r["scope"].as_str().unwrap_or("universe"),
            )
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            "198.51.100.0/24 - boot universe",
            "198.51.100.0/24 - kernel link",
            "203.0.113.0/24 - boot universe",
        ],
        "{routes}"
    );
    ok_json(&rig.del(&conf));
    rig.assert_restored();
}

#[test]
fn use_interface_network_moves_and_restores_host_config() {
    let rig = Rig::new();
    rig.host
        .ip(&["addr", "add", "198.51.100.5/24", "dev", rig.vf()]);
    rig.host.ip(&[
        "route",
        "add",
        "203.0.113.0/24",
        "via",
        "198.51.100.1",
        "dev",
        rig.vf(),
    ]);
    let conf = rig.conf("1.1.0", json!({"ipam": null, "useInterfaceNetwork": true}));
    let out = ok_json(&rig.add(&conf));
    assert_eq!(out["ips"][0]["address"], "198.51.100.5/24");
    assert_eq!(pod_addrs(&rig), ["198.51.100.5/24"]);
    ok_json(&rig.del(&conf));
    rig.assert_restored();
    let a = rig.host.addrs(rig.vf());
    assert!(a.to_string().contains("198.51.100.5"), "{a}");
    let routes = rig.host.routes();
    assert!(
        routes
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["dst"] == "203.0.113.0/24" && r["gateway"] == "198.51.100.1"),
        "{routes}"
    );
}

/// Global IPv6 addresses of `dev`, `addr/len` (+ ` tentative` during DAD).
fn v6_addrs(ns: &TestNs, dev: &str) -> Vec<String> {
    let mut out: Vec<String> = (ns.addrs(dev).as_array().unwrap().iter())
        .filter(|a| a["family"] == "inet6" && a["scope"] == "global")
        .map(|a| {
            let t = if a["tentative"] == true {
                " tentative"
            } else {
                ""
            };
            format!("{}/{}{t}", a["local"].as_str().unwrap(), a["prefixlen"])
        })
        .collect();
    out.sort();
    out
}

fn v6_routes(ns: &TestNs, dev: &str) -> Vec<String> {
    let routes = ip_json(Some(ns), &["-6", "route", "show", "dev", dev]);
    let mut out: Vec<String> = (routes.as_array().unwrap().iter())
        .filter(|r| !r["dst"].as_str().unwrap().starts_with("fe80"))
        .map(|r| {
            format!(
                "{} via {}",
                r["dst"].as_str().unwrap(),
                r["gateway"].as_str().unwrap_or("-")
            )
        })
        .collect();
    out.sort();
    out
}

/// A dual-stack VNIC as the agent leaves it on the host (IPv4, two IPv6
/// addresses, a link-local IPv6 default and a routed IPv6 prefix): with
/// `useInterfaceNetwork` the pod gets both families, usable at once, and
/// DEL puts both back on the host.
#[test]
fn use_interface_network_carries_and_restores_both_families() {
    let rig = Rig::new();
    let vf = rig.vf().to_string();
    rig.host.ip(&["addr", "add", "198.51.100.5/24", "dev", &vf]);
    for a in ["2001:db8:0:1::5/64", "2001:db8:0:1::6/64"] {
        rig.host.ip(&["-6", "addr", "add", a, "dev", &vf, "nodad"]);
    }
    rig.host.ip(&[
        "-6", "route", "add", "default", "via", "fe80::1", "dev", &vf,
    ]);
    rig.host.ip(&[
        "-6",
        "route",
        "add",
        "2001:db8:ff::/48",
        "via",
        "2001:db8:0:1::fe",
        "dev",
        &vf,
    ]);
    let host_v6 = v6_addrs(&rig.host, &vf);
    let host_routes = v6_routes(&rig.host, &vf);
    assert_eq!(host_v6.len(), 2);

    let conf = rig.conf("1.1.0", json!({"ipam": null, "useInterfaceNetwork": true}));
    let out = ok_json(&rig.add(&conf));
    let ips: Vec<&str> = (out["ips"].as_array().unwrap().iter())
        .map(|i| i["address"].as_str().unwrap())
        .collect();
    assert!(
        ips.contains(&"198.51.100.5/24") && ips.contains(&"2001:db8:0:1::6/64"),
        "{out}"
    );
    assert_eq!(pod_addrs(&rig), ["198.51.100.5/24"]);
    assert_eq!(
        v6_addrs(&rig.pod, "net1"),
        host_v6,
        "in the pod, not tentative"
    );
    let pod_routes = v6_routes(&rig.pod, "net1");
    for r in [
        "default via fe80::1",
        "2001:db8:ff::/48 via 2001:db8:0:1::fe",
    ] {
        assert!(pod_routes.iter().any(|x| x == r), "{r} in {pod_routes:?}");
    }

    ok_json(&rig.del(&conf));
    rig.assert_restored();
    assert_eq!(
        v6_addrs(&rig.host, &vf),
        host_v6,
        "IPv6 addresses back on the host"
    );
    assert_eq!(
        v6_routes(&rig.host, &vf),
        host_routes,
        "IPv6 routes back on the host"
    );
}
