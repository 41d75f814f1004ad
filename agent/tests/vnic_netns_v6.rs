//! Privileged: dual-stack VNICs through `vnic apply`/`deconfigure` in a
//! fresh namespace. A second namespace plays OCI's virtual router on the
//! far end of the "VF" veth, at the link-local `fe80::1` IMDS names, with a
//! far host address behind it, so ping6 proves the source rule, the table
//! and the link-local default route work together. IPv6 only from
//! 2001:db8::/32 and fe80::/10.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

use plexus_agent::vnic::{run, Mode, NetlinkOps, VnicConfig, VnicError};
use plexus_imds::{ClientConfig, ImdsError, OciImds, RetryPolicy};
use plexus_testkit::imds::FakeImds;
use plexus_testkit::net::{ip_json, require_root, TestNs, Veth, VethEnd};
use serde_json::{json, Value};

const PRIMARY_MAC: &str = "02:00:17:bb:00:01";
const VF_MAC: &str = "02:00:17:bb:00:02";
const FAR: &str = "2001:db8:ff::1";

fn vnics(v6: &[&str], subnet: &str, gw: &str) -> Value {
    json!([
        {"vnicId": "ocid1.vnic.primary", "privateIp": "198.51.100.10", "macAddr": PRIMARY_MAC,
         "virtualRouterIp": "198.51.100.1", "subnetCidrBlock": "198.51.100.0/25"},
        {"vnicId": "ocid1.vnic.dual", "privateIp": "203.0.113.93", "macAddr": VF_MAC.to_uppercase(),
         "virtualRouterIp": "203.0.113.1", "subnetCidrBlock": "203.0.113.0/24",
         "ipv6Addresses": v6, "ipv6SubnetCidrBlock": subnet, "ipv6VirtualRouterIp": gw}
    ])
}

struct Node {
    ns: TestNs,
    router: TestNs,
    _links: Vec<Veth>,
}

/// The node (primary + one VF) and the router namespace behind the VF.
fn node() -> Node {
    require_root();
    let ns = TestNs::new("pxv6");
    let router = TestNs::new("pxv6r");
    let links = vec![
        Veth::create(
            VethEnd::new("prim").in_ns(&ns).mac(PRIMARY_MAC),
            VethEnd::new("primp").in_ns(&ns).up(),
        ),
        Veth::create(
            VethEnd::new("vf1").in_ns(&ns).mac(VF_MAC),
            VethEnd::new("rtr").in_ns(&router).up(),
        ),
    ];
    ns.ip(&["addr", "add", "198.51.100.10/25", "dev", "prim"]);
    ns.ip(&["link", "set", "prim", "up"]);
    ns.ip(&[
        "route",
        "add",
        "default",
        "via",
        "198.51.100.1",
        "dev",
        "prim",
    ]);
    for a in ["fe80::1/64", "2001:db8:0:1::1/64"] {
        router.ip(&["-6", "addr", "add", a, "dev", "rtr", "nodad"]);
    }
    router.ip(&["-6", "addr", "add", &format!("{FAR}/128"), "dev", "lo"]);
    router.ip(&["link", "set", "lo", "up"]);
    Node {
        ns,
        router,
        _links: links,
    }
}

fn imds(url: &str) -> OciImds {
    OciImds::new(ClientConfig {
        base_url: url.to_string(),
        connect_timeout: Duration::from_millis(500),
        read_timeout: Duration::from_secs(2),
        retry: RetryPolicy {
            max_attempts: 1,
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(20),
            budget: Duration::from_secs(2),
        },
    })
}

/// Global addresses of `dev`, both families, with `tentative` when DAD runs.
fn addrs(ns: &TestNs, dev: &str) -> Vec<String> {
    let all = ns.addrs(dev);
    all.as_array()
        .unwrap()
        .iter()
        .filter(|a| a["scope"] == "global")
        .map(|a| {
            let t = if a["tentative"] == true {
                " tentative"
            } else {
                ""
            };
            format!("{}/{}{t}", a["local"].as_str().unwrap(), a["prefixlen"])
        })
        .collect()
}

/// Routes of table `t`; none when the kernel never created the table.
fn table6(ns: &TestNs, t: u32) -> Vec<String> {
    if !ns.try_ip(&["-6", "route", "show", "table", &t.to_string()]) {
        return Vec::new();
    }
    let routes = ip_json(Some(ns), &["-6", "route", "show", "table", &t.to_string()]);
    (routes.as_array().unwrap().iter())
        .map(|r| {
            format!(
                "{} via {} dev {}",
                r["dst"].as_str().unwrap(),
                r["gateway"].as_str().unwrap_or("-"),
                r["dev"].as_str().unwrap()
            )
        })
        .collect()
}

fn rules6(ns: &TestNs) -> Vec<String> {
    let rules = ip_json(Some(ns), &["-6", "rule", "show"]);
    (rules.as_array().unwrap().iter())
        .filter(|r| r["priority"] == 1000)
        .map(|r| {
            format!(
                "from {} lookup {}",
                r["src"].as_str().unwrap(),
                r["table"].as_str().unwrap()
            )
        })
        .collect()
}

fn accept_ra(ns: &TestNs, dev: &str) -> String {
    let key = format!("net.ipv6.conf.{dev}.accept_ra");
    let out = ns.exec(&["sysctl", "-n", &key]);
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// ping6 from `src` to the far host, retried while neighbour discovery settles.
fn ping6_from(ns: &TestNs, src: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(8);
    while Instant::now() < deadline {
        let ok = Command::new("ip")
            .args([
                "netns",
                "exec",
                ns.name(),
                "ping",
                "-6",
                "-c1",
                "-W1",
                "-I",
                src,
                FAR,
            ])
            .output()
            .is_ok_and(|o| o.status.success());
        if ok {
            return true;
        }
    }
    false
}

#[test]
fn dual_stack_vnic_with_link_local_gateway_routes_ipv6_and_deconfigures() {
    let n = node();
    let v6 = ["2001:db8:0:1::10", "2001:db8:0:1::11"];
    let fake = FakeImds::start(vnics(&v6, "2001:db8:0:1::/64", "fe80::1")).unwrap();
    let md = imds(&fake.url());
    let ops = NetlinkOps::in_netns(&n.ns.path()).unwrap();
    let cfg = VnicConfig::default();
    let none = BTreeSet::new();
    n.ns.exec(&["sysctl", "-qw", "net.ipv6.conf.vf1.accept_ra=1"]);

    let (plan, report) = run(Mode::Apply, &cfg, &md, &ops, &none).unwrap();
    assert!(report.failed.is_empty(), "{report:?}");
    assert!(plan.render_table().contains("2001:db8:0:1::11"));
    // Usable at once: added with nodad, never tentative.
    let got = addrs(&n.ns, "vf1");
    for want in [
        "203.0.113.93/24",
        "2001:db8:0:1::10/64",
        "2001:db8:0:1::11/64",
    ] {
        assert!(got.contains(&want.to_string()), "{got:?}");
    }
    assert_eq!(
        table6(&n.ns, 101),
        [
            "2001:db8:0:1::/64 via - dev vf1",
            "default via fe80::1 dev vf1"
        ]
    );
    assert_eq!(
        rules6(&n.ns),
        [
            "from 2001:db8:0:1::10 lookup 101",
            "from 2001:db8:0:1::11 lookup 101"
        ]
    );
    assert_eq!(accept_ra(&n.ns, "vf1"), "0");
    // The node has no IPv6 default route of its own: only the rule and the
    // table's link-local default can carry these.
    assert!(ping6_from(&n.ns, "2001:db8:0:1::10"), "ping6 from ::10");
    assert!(ping6_from(&n.ns, "2001:db8:0:1::11"), "ping6 from ::11");

    let (again, _) = run(Mode::Plan, &cfg, &md, &ops, &none).unwrap();
    assert!(again.is_empty(), "{}", again.render_table());

    let (_, d) = run(Mode::Deconfigure, &cfg, &md, &ops, &none).unwrap();
    assert!(d.failed.is_empty(), "{d:?}");
    assert!(addrs(&n.ns, "vf1").is_empty(), "{:?}", addrs(&n.ns, "vf1"));
    assert!(table6(&n.ns, 101).is_empty());
    assert!(rules6(&n.ns).is_empty());
    drop(n.router);
}

#[test]
fn changed_ipv6_address_replaces_the_old_one_and_global_gateway_works() {
    let n = node();
    let fake =
        FakeImds::start(vnics(&["2001:db8:0:1::10"], "2001:db8:0:1::/64", "fe80::1")).unwrap();
    let md = imds(&fake.url());
    let ops = NetlinkOps::in_netns(&n.ns.path()).unwrap();
    let cfg = VnicConfig::default();
    let none = BTreeSet::new();
    run(Mode::Apply, &cfg, &md, &ops, &none).unwrap();
    // The next read says otherwise: another address, a global gateway.
    fake.set_vnics(vnics(
        &["2001:db8:0:1::20"],
        "2001:db8:0:1::/64",
        "2001:db8:0:1::1",
    ));
    let (p, r) = run(Mode::Apply, &cfg, &md, &ops, &none).unwrap();
    assert!(r.failed.is_empty(), "{r:?}\n{}", p.render_table());
    let got = addrs(&n.ns, "vf1");
    assert_eq!(got, ["203.0.113.93/24", "2001:db8:0:1::20/64"], "{got:?}");
    assert_eq!(
        table6(&n.ns, 101),
        [
            "2001:db8:0:1::/64 via - dev vf1",
            "default via 2001:db8:0:1::1 dev vf1"
        ]
    );
    assert_eq!(rules6(&n.ns), ["from 2001:db8:0:1::20 lookup 101"]);
    assert!(ping6_from(&n.ns, "2001:db8:0:1::20"));
    run(Mode::Deconfigure, &cfg, &md, &ops, &none).unwrap();
    assert!(addrs(&n.ns, "vf1").is_empty());
}

#[test]
fn ipv6_address_outside_its_subnet_is_an_error_and_nothing_is_configured() {
    let n = node();
    let fake =
        FakeImds::start(vnics(&["2001:db8:0:2::10"], "2001:db8:0:1::/64", "fe80::1")).unwrap();
    let md = imds(&fake.url());
    let ops = NetlinkOps::in_netns(&n.ns.path()).unwrap();
    let err = run(
        Mode::Apply,
        &VnicConfig::default(),
        &md,
        &ops,
        &BTreeSet::new(),
    )
    .unwrap_err();
    match &err {
        VnicError::Metadata(ImdsError::InvalidVnic { vnic_id, reason }) => {
            assert_eq!(vnic_id, "ocid1.vnic.dual");
            assert!(reason.contains("2001:db8:0:2::10"), "{reason}");
        }
        other => panic!("{other}"),
    }
    // Neither family of any VNIC was touched.
    assert!(addrs(&n.ns, "vf1").is_empty());
    assert!(table6(&n.ns, 101).is_empty() && rules6(&n.ns).is_empty());
    assert_eq!(n.ns.link("vf1").unwrap()["mtu"], 1500);
}
