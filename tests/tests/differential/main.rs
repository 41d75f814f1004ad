//! Differential test: our `host-device` + `static` against Debian's reference
//! Go plugins (`/usr/lib/cni`, containernetworking-plugins 1.1.1).
//!
//! Each scenario runs twice, once per implementation, on identical fresh
//! fixtures: a "node" namespace holding a veth end that plays the VF (fixed
//! MAC, MTU 1400, up) and an empty "pod" namespace. It compares the ADD
//! result (after normalising the sandbox path), the pod's state after ADD
//! (link, MAC, MTU, addresses, routes) and the node's state after DEL.
//! Every intended difference is asserted explicitly as a difference, never
//! silently normalised away; `docs/differences-hostdevice-static.md` lists them.
// Test-only crate: fixture helpers fail the test by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod fixture;

use plexus_testkit::net::{require_root, unique_name, Veth, VethEnd};
use rstest::rstest;
use serde_json::{json, Value};

use fixture::{
    add_del, addr_state, config, link_state, route_state, with_ipam_dns, without_empty_dns,
    Fixture, Impl, Selector, VF_MAC, VF_MTU,
};

#[rstest]
fn add_del_matches_reference(
    #[values("0.3.1", "0.4.0", "1.0.0")] version: &str,
    #[values(Selector::Device, Selector::HwAddr)] selector: Selector,
    #[values(false, true)] dns: bool,
) {
    require_root();
    let conf = config(version, selector, "ens5", dns);
    let reference = add_del(Impl::Reference, &conf);
    let ours = add_del(Impl::Ours, &conf);

    // Results: equal, apart from the DNS differences.
    let expected = if dns {
        with_ipam_dns(&reference.result, &ours.result, &conf)
    } else {
        without_empty_dns(&reference.result, &ours.result)
    };
    assert_eq!(
        ours.result, expected,
        "ADD result ({version}, {selector:?})"
    );
    assert_eq!(ours.result["cniVersion"], version);

    // Pod namespace after ADD: identical.
    assert_eq!(ours.pod, reference.pod, "pod state after ADD");
    assert_eq!(ours.pod["link"]["ifname"], "net1");
    assert_eq!(ours.pod["link"]["address"], VF_MAC);
    assert_eq!(
        ours.pod["addrs"],
        json!(["198.51.100.21/24", "203.0.113.21/24"])
    );

    // Node after DEL: same name, MAC, MTU, no addresses, pod emptied (lo)...
    for key in ["addrs", "addrs6", "pod_links"] {
        assert_eq!(
            ours.node_after_del[key], reference.node_after_del[key],
            "{key}"
        );
    }
    let (o, r) = (
        &ours.node_after_del["link"],
        &reference.node_after_del["link"],
    );
    for key in ["ifname", "address", "mtu"] {
        assert_eq!(o[key], r[key], "node link {key} after DEL");
    }
    assert_eq!(o["mtu"], VF_MTU);
    // ...but intended difference: the reference always leaves the device
    // DOWN ("we don't know the previous state"); we restore its UP state.
    assert_eq!(r["up"], false, "reference leaves the VF down");
    assert_eq!(o["up"], true, "ours restores the VF's UP state");
    // Intended difference: the reference leaves `alias ens5` behind on the
    // host device; we remove the alias we set.
    assert_eq!(r["alias"], "ens5", "reference leaves its alias");
    assert_eq!(o["alias"], Value::Null, "ours clears its alias");
    assert_eq!(
        (ours.del_stdout.as_str(), reference.del_stdout.as_str()),
        ("", "")
    );
}

/// Route gateways, as the reference installs them: a route's own `gw` is
/// used as given and `0.0.0.0` means on-link, even when the address has a
/// real gateway; a missing `gw` takes the address gateway; a route to the
/// address's own subnet goes in beside the kernel's connected route (the
/// tutorial's case). Same result, same pod routes.
#[rstest]
fn route_gateways_match_reference(
    #[values("0.3.1", "1.0.0")] version: &str,
    #[values("tutorial", "real-gateway")] case: &str,
) {
    require_root();
    let mut conf = config(version, Selector::Device, "ens5", false);
    let (ipam, expected) = match case {
        "tutorial" => (
            json!({"type": "static",
                "addresses": [{"address": "198.51.100.21/24", "gateway": "0.0.0.0"}],
                "routes": [{"dst": "198.51.100.0/24", "gw": "0.0.0.0"}]}),
            json!([
                "198.51.100.0/24 via - dev net1 proto boot scope universe",
                "198.51.100.0/24 via - dev net1 proto kernel scope link",
            ]),
        ),
        _ => (
            json!({"type": "static",
            "addresses": [{"address": "198.51.100.21/24", "gateway": "198.51.100.1"}],
            "routes": [
                {"dst": "203.0.113.0/24", "gw": "0.0.0.0"},
                {"dst": "203.0.113.128/25"},
                {"dst": "198.51.100.0/24", "gw": "198.51.100.254"}
            ]}),
            json!([
                "198.51.100.0/24 via - dev net1 proto kernel scope link",
                "198.51.100.0/24 via 198.51.100.254 dev net1 proto boot scope universe",
                "203.0.113.0/24 via - dev net1 proto boot scope universe",
                "203.0.113.128/25 via 198.51.100.1 dev net1 proto boot scope universe",
            ]),
        ),
    };
    conf["ipam"] = ipam;
    let reference = add_del(Impl::Reference, &conf);
    let ours = add_del(Impl::Ours, &conf);
    assert_eq!(
        ours.result,
        without_empty_dns(&reference.result, &ours.result),
        "ADD result ({version}, {case})"
    );
    assert_eq!(ours.result["routes"], conf["ipam"]["routes"]);
    assert_eq!(ours.pod["routes"], reference.pod["routes"], "pod routes");
    assert_eq!(ours.pod["routes"], expected, "pod routes ({case})");
}

/// IPv6-only and dual-stack static configs, as the reference installs
/// them: same result (0.3.x `version` fields included), same pod addresses
/// of both families, none tentative when ADD returns, same routes
/// (a default per family via each family's gateway, an IPv6 route via an
/// explicit next hop), and the node's device bare after DEL.
#[rstest]
fn ipv6_and_dual_stack_match_reference(
    #[values("0.3.1", "1.0.0")] version: &str,
    #[values("v6-only", "dual-stack")] case: &str,
) {
    require_root();
    let mut conf = config(version, Selector::Device, "ens5", false);
    let v6 = json!({"address": "2001:db8:0:1::21/64", "gateway": "2001:db8:0:1::1"});
    let v4 = json!({"address": "198.51.100.21/24", "gateway": "198.51.100.1"});
    let mut routes = vec![
        json!({"dst": "::/0"}),
        json!({"dst": "2001:db8:ff::/48", "gw": "2001:db8:0:1::fe"}),
    ];
    let addresses = if case == "v6-only" {
        vec![v6]
    } else {
        routes.push(json!({"dst": "0.0.0.0/0"}));
        vec![v4, v6]
    };
    conf["ipam"] = json!({"type": "static", "addresses": addresses, "routes": routes});
    let reference = add_del(Impl::Reference, &conf);
    let ours = add_del(Impl::Ours, &conf);
    assert_eq!(
        ours.result,
        without_empty_dns(&reference.result, &ours.result),
        "ADD result ({version}, {case})"
    );
    assert_eq!(ours.pod, reference.pod, "pod state after ADD ({case})");
    assert_eq!(ours.pod["addrs6"], json!(["2001:db8:0:1::21/64"]));
    let routes6 = ours.pod["routes6"].as_array().unwrap();
    for want in [
        "default via 2001:db8:0:1::1 dev net1 proto boot scope universe",
        "2001:db8:ff::/48 via 2001:db8:0:1::fe dev net1 proto boot scope universe",
    ] {
        assert!(routes6.iter().any(|r| r == want), "{want} in {routes6:?}");
    }
    if version.starts_with("0.") {
        let last = ours.result["ips"].as_array().unwrap().last().unwrap();
        assert_eq!(last["version"], "6");
    }
    for key in ["addrs", "addrs6", "pod_links"] {
        assert_eq!(
            ours.node_after_del[key], reference.node_after_del[key],
            "{key}"
        );
    }
}

/// Intended difference: a repeated DEL. The reference fails (code 999, the
/// link is gone from the pod); we succeed, as the CNI spec asks of DEL.
#[rstest]
fn second_del_is_idempotent_only_in_ours(#[values("0.3.1", "1.0.0")] version: &str) {
    require_root();
    let conf = config(version, Selector::Device, "ens5", false);
    for imp in [Impl::Reference, Impl::Ours] {
        let fx = Fixture::new();
        fx.cni(imp, "ADD", &conf).assert_ok();
        fx.cni(imp, "DEL", &conf).assert_ok();
        let again = fx.cni(imp, "DEL", &conf);
        match imp {
            Impl::Reference => {
                assert!(!again.status.success());
                assert_eq!(again.json["code"], 999, "{}", again.stdout);
                assert!(again.stdout.contains("Link not found"), "{}", again.stdout);
            }
            Impl::Ours => {
                assert!(again.status.success(), "{} {}", again.stdout, again.stderr);
                assert_eq!(again.stdout, "");
                assert!(fx.node.link(&fx.vf).is_some());
            }
        }
    }
}

/// Same input errors, same CNI error codes: an unknown device.
#[rstest]
fn missing_device_fails_alike(#[values("0.3.1", "1.0.0")] version: &str) {
    require_root();
    let conf = config(version, Selector::Device, "pxnodev0", false);
    let codes: Vec<(bool, Value)> = [Impl::Reference, Impl::Ours]
        .into_iter()
        .map(|imp| {
            let fx = Fixture::new();
            let out = fx.cni(imp, "ADD", &conf);
            assert!(
                fx.node.link(&fx.vf).is_some(),
                "{imp:?} moved the wrong device"
            );
            assert!(fx.pod.link("net1").is_none());
            (out.status.success(), out.json["code"].clone())
        })
        .collect();
    assert_eq!(codes[0], (false, json!(999)), "reference");
    assert_eq!(codes[1], codes[0], "ours reports the same failure code");
}

/// The node's own IP configuration of the NIC (what OCI's secondary-VNIC
/// script set: an address and a route through it). The kernel flushes it on
/// the move. Without `useInterfaceNetwork` both implementations return the
/// NIC bare; with it (a key the reference 1.1.1 does not know) ours gives the
/// pod the node's address and routes and puts them back on the node at DEL.
#[rstest]
fn host_ip_config(
    #[values("0.3.1", "1.0.0")] version: &str,
    #[values(false, true)] use_interface_network: bool,
) {
    require_root();
    let mut conf = config(version, Selector::Device, "ens5", false);
    if use_interface_network {
        conf["useInterfaceNetwork"] = json!(true);
        if let Some(map) = conf.as_object_mut() {
            map.remove("ipam");
        }
    }
    let mut seen = Vec::new();
    for imp in [Impl::Reference, Impl::Ours] {
        let fx = Fixture::new();
        fx.node
            .ip(&["addr", "add", "198.51.100.21/24", "dev", "ens5"]);
        fx.node.ip(&[
            "route",
            "add",
            "203.0.113.128/25",
            "via",
            "198.51.100.1",
            "dev",
            "ens5",
        ]);
        let before = (
            addr_state(&fx.node.addrs("ens5")),
            route_state(&fx.node.routes()),
        );
        let add = fx.cni(imp, "ADD", &conf);
        let result = add.assert_ok().clone();
        let pod = (
            addr_state(&fx.pod.addrs("net1")),
            route_state(&fx.pod.routes()),
        );
        fx.cni(imp, "DEL", &conf).assert_ok();
        let after = (
            addr_state(&fx.node.addrs("ens5")),
            route_state(&fx.node.routes()),
        );
        seen.push((before, result, pod, after));
    }
    let (r, o) = (&seen[0], &seen[1]);
    let bare = (json!([]), json!([]));
    assert_eq!(r.3, bare, "reference: node config gone after DEL");
    if !use_interface_network {
        assert_eq!(o.2, r.2, "same pod state");
        assert_eq!(o.3, bare, "ours: node config gone too, as the reference");
        return;
    }
    // The reference ignores the key: no IPAM, no address in the pod.
    assert_eq!(r.1.get("ips"), None, "reference result: {}", r.1);
    assert_eq!(r.2 .0, json!([]));
    // Ours: the node's address and route in the pod, and back after DEL.
    assert_eq!(o.1["ips"][0]["address"], "198.51.100.21/24", "{}", o.1);
    assert_eq!(o.2 .0, json!(["198.51.100.21/24"]));
    assert!(
        o.2 .1.as_array().is_some_and(|rs| rs.iter().any(|x| x
            .as_str()
            .is_some_and(|x| x.starts_with("203.0.113.128/25 via 198.51.100.1 dev net1")))),
        "{:?}",
        o.2 .1
    );
    assert_eq!(o.3, o.0, "ours: node config restored after DEL");
}

/// Intended difference: IPAM fails after the move (an address without a
/// prefix length). The reference leaves the device in the pod, renamed to
/// `net1` and up, until a DEL; we move it back to the node as it was.
#[rstest]
fn failed_ipam_rolls_back_only_in_ours(#[values("0.3.1", "1.0.0")] version: &str) {
    require_root();
    let mut conf = config(version, Selector::Device, "ens5", false);
    conf["ipam"]["addresses"] = json!([{"address": "198.51.100.21"}]);
    for imp in [Impl::Reference, Impl::Ours] {
        let fx = Fixture::new();
        let add = fx.cni(imp, "ADD", &conf);
        assert!(!add.status.success(), "{imp:?} accepted a bad address");
        assert!(add.json["code"].is_u64(), "{imp:?}: {}", add.stdout);
        match imp {
            Impl::Reference => {
                assert!(fx.node.link("ens5").is_none());
                let stranded = fx.pod.link("net1").expect("reference strands net1");
                assert_eq!(link_state(&stranded)["up"], true);
            }
            Impl::Ours => {
                assert!(fx.pod.link("net1").is_none(), "ours left net1 in the pod");
                let back = link_state(&fx.node.link("ens5").expect("ens5 back on the node"));
                assert_eq!(back["address"], VF_MAC);
                assert_eq!(back["mtu"], VF_MTU);
                assert_eq!(back["up"], true);
                assert_eq!(back["alias"], Value::Null);
            }
        }
    }
}

/// Intended difference: `CNI_IFNAME` is already taken in the pod. The
/// reference 1.1.1 moves the device and then fails to rename it, stranding
/// it in the pod under its host name; we check first and leave it on the
/// node.
#[rstest]
fn ifname_clash_strands_only_in_reference(#[values("0.3.1", "1.0.0")] version: &str) {
    require_root();
    let conf = config(version, Selector::Device, "ens5", false);
    for imp in [Impl::Reference, Impl::Ours] {
        let fx = Fixture::new();
        let _squatter = Veth::create(
            VethEnd::new("net1").in_ns(&fx.pod),
            VethEnd::new(unique_name("pxdq")).in_ns(&fx.pod),
        );
        let add = fx.cni(imp, "ADD", &conf);
        assert!(!add.status.success(), "{imp:?} ADD succeeded over net1");
        match imp {
            Impl::Reference => {
                assert!(add.stdout.contains("file exists"), "{}", add.stdout);
                assert!(fx.pod.link("ens5").is_some(), "reference strands ens5");
                assert!(fx.node.link("ens5").is_none());
            }
            Impl::Ours => {
                assert!(
                    fx.node.link("ens5").is_some(),
                    "ours keeps ens5 on the node"
                );
                assert!(fx.pod.link("ens5").is_none());
            }
        }
    }
}
