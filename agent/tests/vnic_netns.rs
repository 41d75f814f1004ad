//! Privileged: `vnic apply`/`deconfigure` through netlink inside a fresh
//! namespace, veth ends standing in for VFs, the fake IMDS on loopback.

#![allow(clippy::unwrap_used, clippy::too_many_lines)]

use std::collections::BTreeSet;
use std::time::Duration;

use plexus_agent::vnic::{run, Mode, NetlinkOps, VnicConfig, VnicError, VnicStatus};
use plexus_imds::{ClientConfig, OciImds, RetryPolicy};
use plexus_testkit::imds::FakeImds;
use plexus_testkit::net::{ip_json, require_root, TestNs, Veth, VethEnd};
use serde_json::{json, Value};

const PRIMARY_MAC: &str = "02:00:17:aa:00:01";
const VF1_MAC: &str = "02:00:17:aa:00:02";
const VF2_MAC: &str = "02:00:17:aa:00:03";

fn vnics() -> Value {
    json!([
        {"vnicId": "ocid1.vnic.primary", "privateIp": "198.51.100.10", "macAddr": PRIMARY_MAC.to_uppercase(),
         "virtualRouterIp": "198.51.100.1", "subnetCidrBlock": "198.51.100.0/25"},
        {"vnicId": "ocid1.vnic.one", "privateIp": "203.0.113.93", "macAddr": VF1_MAC.to_uppercase(),
         "virtualRouterIp": "203.0.113.1", "subnetCidrBlock": "203.0.113.0/24"},
        {"vnicId": "ocid1.vnic.two", "privateIp": "198.51.100.200", "macAddr": VF2_MAC,
         "virtualRouterIp": "198.51.100.129", "subnetCidrBlock": "198.51.100.128/25"},
        {"vnicId": "ocid1.vnic.nodevice", "privateIp": "203.0.113.95", "macAddr": "02:00:17:aa:00:09",
         "virtualRouterIp": "203.0.113.1", "subnetCidrBlock": "203.0.113.0/24"}
    ])
}

struct Node {
    ns: TestNs,
    _links: Vec<Veth>,
}

/// A namespace with a "primary" NIC (configured by hand) and two "VFs".
fn node() -> Node {
    require_root();
    let ns = TestNs::new("pxvnic");
    let mk = |name: &str, peer: &str, mac: &str| {
        Veth::create(
            VethEnd::new(name).in_ns(&ns).mac(mac),
            VethEnd::new(peer).in_ns(&ns).up(),
        )
    };
    let links = vec![
        mk("prim", "primp", PRIMARY_MAC),
        mk("vf1", "vf1p", VF1_MAC),
        mk("vf2", "vf2p", VF2_MAC),
    ];
    ns.ip(&["addr", "add", "198.51.100.10/25", "dev", "prim"]);
    ns.ip(&["link", "set", "prim", "up"]);
    // The node's own default route, via the primary VNIC (inside the test ns).
    ns.ip(&[
        "route",
        "add",
        "default",
        "via",
        "198.51.100.1",
        "dev",
        "prim",
    ]);
    Node { ns, _links: links }
}

fn imds(url: &str) -> OciImds {
    OciImds::new(ClientConfig {
        base_url: url.to_string(),
        connect_timeout: Duration::from_millis(500),
        read_timeout: Duration::from_secs(2),
        retry: RetryPolicy {
            max_attempts: 2,
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(20),
            budget: Duration::from_secs(2),
        },
    })
}

fn addrs(ns: &TestNs, dev: &str) -> Vec<String> {
    ns.addrs(dev)
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["family"] == "inet")
        .map(|a| format!("{}/{}", a["local"].as_str().unwrap(), a["prefixlen"]))
        .collect()
}

fn table(ns: &TestNs, t: u32) -> Vec<String> {
    ip_json(Some(ns), &["-4", "route", "show", "table", &t.to_string()])
        .as_array()
        .unwrap()
        .iter()
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

fn rules(ns: &TestNs) -> Vec<String> {
    ip_json(Some(ns), &["-4", "rule", "show"])
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["priority"] == 999 || r["priority"] == 1000)
        .map(|r| {
            format!(
                "{} from {} to {} lookup {}",
                r["priority"],
                r["src"].as_str().unwrap_or("all"),
                r["dst"].as_str().unwrap_or("all"),
                r["table"].as_str().unwrap_or("?")
            )
        })
        .collect()
}

#[test]
fn apply_configures_secondaries_and_is_idempotent_and_deconfigure_undoes() {
    let n = node();
    let fake = FakeImds::start(vnics()).unwrap();
    let md = imds(&fake.url());
    let ops = NetlinkOps::in_netns(&n.ns.path()).unwrap();
    let cfg = VnicConfig::default();
    let none = BTreeSet::new();

    let (plan, report) = run(Mode::Apply, &cfg, &md, &ops, &none).unwrap();
    assert!(report.failed.is_empty(), "{report:?}");
    let status: Vec<_> = plan.vnics.iter().map(|v| v.status.clone()).collect();
    assert_eq!(
        status,
        vec![
            VnicStatus::Primary,
            VnicStatus::Configured,
            VnicStatus::Configured,
            VnicStatus::NoDevice
        ]
    );

    assert_eq!(addrs(&n.ns, "vf1"), vec!["203.0.113.93/24"]);
    assert_eq!(addrs(&n.ns, "vf2"), vec!["198.51.100.200/25"]);
    let l = n.ns.link("vf1").unwrap();
    assert_eq!(l["mtu"], 9000);
    assert!(l["flags"].as_array().unwrap().iter().any(|f| f == "UP"));
    assert_eq!(
        table(&n.ns, 101),
        vec![
            "default via 203.0.113.1 dev vf1",
            "203.0.113.0/24 via - dev vf1"
        ]
    );
    assert_eq!(
        table(&n.ns, 102),
        vec![
            "default via 198.51.100.129 dev vf2",
            "198.51.100.128/25 via - dev vf2"
        ]
    );
    assert_eq!(
        rules(&n.ns),
        vec![
            "999 from all to 169.254.169.254 lookup main",
            "1000 from 203.0.113.93 to all lookup 101",
            "1000 from 198.51.100.200 to all lookup 102",
        ]
    );
    // The primary is untouched: its MTU, address and no table of its own.
    assert_eq!(addrs(&n.ns, "prim"), vec!["198.51.100.10/25"]);
    assert_eq!(n.ns.link("prim").unwrap()["mtu"], 1500);

    // Source routing really steers: a lookup from the secondary IP uses table 101.
    let got = ip_json(
        Some(&n.ns),
        &[
            "-4",
            "route",
            "get",
            "198.51.100.77",
            "from",
            "203.0.113.93",
        ],
    );
    assert_eq!(got[0]["gateway"], "203.0.113.1", "{got}");
    // And the metadata address always goes through main (the primary).
    let md_route = ip_json(
        Some(&n.ns),
        &[
            "-4",
            "route",
            "get",
            "169.254.169.254",
            "from",
            "203.0.113.93",
        ],
    );
    assert_eq!(md_route[0]["dev"], "prim", "{md_route}");

    // Twice = nothing to do.
    let (again, _) = run(Mode::Plan, &cfg, &md, &ops, &none).unwrap();
    assert!(again.is_empty(), "{}", again.render_table());
    let (_, r2) = run(Mode::Apply, &cfg, &md, &ops, &none).unwrap();
    assert!(r2.applied.is_empty());

    // Deconfigure removes exactly what we added.
    let (_, d) = run(Mode::Deconfigure, &cfg, &md, &ops, &none).unwrap();
    assert!(d.failed.is_empty(), "{d:?}");
    assert!(addrs(&n.ns, "vf1").is_empty() && addrs(&n.ns, "vf2").is_empty());
    assert!(table(&n.ns, 101).is_empty() && table(&n.ns, 102).is_empty());
    assert!(rules(&n.ns).is_empty(), "{:?}", rules(&n.ns));
    assert_eq!(addrs(&n.ns, "prim"), vec!["198.51.100.10/25"]);
}

#[test]
fn imds_down_is_a_clear_error_and_nothing_changes() {
    let n = node();
    // A port nobody listens on: bind, note it, close.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let md = imds(&format!("http://{addr}"));
    let ops = NetlinkOps::in_netns(&n.ns.path()).unwrap();
    let err = run(
        Mode::Apply,
        &VnicConfig::default(),
        &md,
        &ops,
        &BTreeSet::new(),
    )
    .unwrap_err();
    assert!(matches!(err, VnicError::Metadata(_)), "{err}");
    assert!(err.to_string().contains("metadata"), "{err}");
    assert!(addrs(&n.ns, "vf1").is_empty());
    assert!(rules(&n.ns).is_empty());
    assert_eq!(n.ns.link("vf1").unwrap()["mtu"], 1500);
}

#[test]
fn vnic_detached_later_is_cleaned_and_attached_one_configured() {
    let n = node();
    let fake = FakeImds::start(json!([vnics()[0], vnics()[1]])).unwrap();
    let md = imds(&fake.url());
    let ops = NetlinkOps::in_netns(&n.ns.path()).unwrap();
    let cfg = VnicConfig::default();
    let none = BTreeSet::new();
    run(Mode::Apply, &cfg, &md, &ops, &none).unwrap();
    assert!(addrs(&n.ns, "vf2").is_empty());
    // vf2's VNIC shows up in IMDS, vf1's goes away (its VF left for a pod).
    fake.set_vnics(json!([vnics()[0], vnics()[2]]));
    n.ns.ip(&["link", "set", "vf1", "down"]);
    n.ns.ip(&["addr", "flush", "dev", "vf1"]);
    let (p, r) = run(Mode::Apply, &cfg, &md, &ops, &none).unwrap();
    assert!(r.failed.is_empty(), "{r:?}\n{}", p.render_table());
    assert_eq!(
        table(&n.ns, 101),
        vec![
            "default via 198.51.100.129 dev vf2",
            "198.51.100.128/25 via - dev vf2"
        ]
    );
    assert_eq!(
        rules(&n.ns),
        vec![
            "999 from all to 169.254.169.254 lookup main",
            "1000 from 198.51.100.200 to all lookup 101"
        ]
    );
    let (again, _) = run(Mode::Plan, &cfg, &md, &ops, &none).unwrap();
    assert!(again.is_empty(), "{}", again.render_table());
}

#[test]
fn uplink_is_never_touched_even_if_imds_lists_it_as_secondary() {
    let n = node();
    // IMDS order broken: a secondary first, the real primary second.
    let v = vnics();
    let fake = FakeImds::start(json!([v[1], v[0]])).unwrap();
    let md = imds(&fake.url());
    let ops = NetlinkOps::in_netns(&n.ns.path()).unwrap();
    let (plan, _) = run(
        Mode::Apply,
        &VnicConfig::default(),
        &md,
        &ops,
        &BTreeSet::new(),
    )
    .unwrap();
    assert_eq!(
        plan.vnics[1].status,
        VnicStatus::Uplink,
        "{}",
        plan.render_table()
    );
    assert_eq!(n.ns.link("prim").unwrap()["mtu"], 1500);
    assert_eq!(addrs(&n.ns, "prim"), vec!["198.51.100.10/25"]);
    assert!(rules(&n.ns).is_empty(), "{:?}", rules(&n.ns));
}
