//! ADD/CHECK/DEL cycles, a vanished netns, a moved or renamed device, racing ADDs.

use std::process::Command;

use plexus_testkit::net::TestNs;
use rstest::rstest;
use serde_json::{json, Value};

use crate::support::{err_json, flags, ok_json, pod_addrs, state_files, Rig, VF_MAC};

#[rstest]
fn add_del_cycle(#[values("0.3.1", "0.4.0", "1.0.0", "1.1.0")] version: &str) {
    let rig = Rig::new();
    let conf = rig.conf(version, json!({}));
    let out = ok_json(&rig.add(&conf));
    assert_eq!(out["cniVersion"], version);
    let iface = &out["interfaces"][0];
    assert_eq!(iface["name"], "net1");
    assert_eq!(iface["mac"], VF_MAC);
    assert_eq!(iface["sandbox"], rig.pod_path());
    assert_eq!(
        iface.get("mtu").and_then(Value::as_u64),
        (version == "1.1.0").then_some(1400)
    );
    assert_eq!(out["ips"][0]["address"], "198.51.100.7/24");
    assert_eq!(out["ips"][0]["gateway"], "198.51.100.1");
    assert_eq!(out["ips"][0]["interface"], 0);
    assert_eq!(out["routes"][0]["dst"], "203.0.113.0/24");
    assert_eq!(out["dns"]["nameservers"][0], "198.51.100.53");

    assert!(rig.host.link(rig.vf()).is_none());
    let l = rig.pod.link("net1").unwrap();
    assert!(flags(&l).contains(&"UP".to_string()), "{l}");
    assert_eq!(l["ifalias"], rig.vf());
    assert_eq!(pod_addrs(&rig), ["198.51.100.7/24"]);
    let routes = rig.pod.routes();
    let r = routes
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["dst"] == "203.0.113.0/24")
        .unwrap_or_else(|| panic!("{routes}"));
    assert_eq!(r["gateway"], "198.51.100.1");

    if version != "0.3.1" {
        let mut c = conf.clone();
        c["prevResult"] = out.clone();
        ok_json(&rig.run(
            "CHECK",
            "c1",
            &rig.pod_path(),
            &serde_json::to_vec(&c).unwrap(),
        ));
    }

    ok_json(&rig.del(&conf));
    rig.assert_restored();
    // Idempotent: a second DEL, and DEL with no netns.
    ok_json(&rig.del(&conf));
    ok_json(&rig.run("DEL", "c1", "", &serde_json::to_vec(&conf).unwrap()));
    rig.assert_restored();
}

#[test]
fn del_with_vanished_netns_succeeds() {
    let rig = Rig::new();
    let conf = rig.conf("1.0.0", json!({}));
    ok_json(&rig.add(&conf));
    let path = rig.pod_path();
    rig.pod.ip(&["link", "del", "net1"]);
    assert!(Command::new("ip")
        .args(["netns", "del", rig.pod.name()])
        .status()
        .unwrap()
        .success());
    let o = rig.run("DEL", "c1", &path, &serde_json::to_vec(&conf).unwrap());
    ok_json(&o);
    assert!(state_files(rig.data.path()).is_empty());
}

#[test]
fn device_back_under_pod_name_is_restored() {
    let rig = Rig::new();
    let conf = rig.conf("1.0.0", json!({}));
    ok_json(&rig.add(&conf));
    // What a destroyed netns does to a physical VF: back on the host as net1.
    rig.pod
        .ip(&["link", "set", "net1", "netns", rig.host.name()]);
    assert!(rig.host.link("net1").is_some());
    ok_json(&rig.del(&conf));
    assert!(rig.host.link("net1").is_none());
    let l = rig.host.link(rig.vf()).unwrap();
    assert_eq!(l["mtu"], 1400);
    assert!(flags(&l).contains(&"UP".to_string()), "{l}");
}

#[test]
fn del_finds_device_renamed_in_pod() {
    let rig = Rig::new();
    let conf = rig.conf("1.0.0", json!({}));
    ok_json(&rig.add(&conf));
    rig.pod.ip(&["link", "set", "net1", "down"]);
    rig.pod.ip(&["link", "set", "net1", "name", "eth9"]);
    ok_json(&rig.del(&conf));
    rig.assert_restored();
}

#[test]
fn racing_adds_one_wins_device_never_lost() {
    let rig = Rig::new();
    let pod2 = TestNs::new("pxhq");
    let conf = serde_json::to_vec(&rig.conf("1.0.0", json!({}))).unwrap();
    let p1 = rig.pod_path();
    let p2 = pod2.path().to_string_lossy().into_owned();
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| rig.run("ADD", "c1", &p1, &conf));
        let b = s.spawn(|| rig.run("ADD", "c2", &p2, &conf));
        (a.join().unwrap(), b.join().unwrap())
    });
    let wins = [&a, &b].iter().filter(|o| o.status.success()).count();
    assert_eq!(
        wins,
        1,
        "a: {}\nb: {}",
        String::from_utf8_lossy(&a.stdout),
        String::from_utf8_lossy(&b.stdout)
    );
    let loser = if a.status.success() { &b } else { &a };
    let msg = err_json(loser)["msg"].as_str().unwrap().to_string();
    assert!(msg.contains("in use by container"), "{msg}");
    let in_pods = [rig.pod.link("net1"), pod2.link("net1")]
        .iter()
        .filter(|l| l.is_some())
        .count();
    assert_eq!(in_pods, 1);
    let (cid, ns) = if a.status.success() {
        ("c1", p1)
    } else {
        ("c2", p2)
    };
    ok_json(&rig.run("DEL", cid, &ns, &conf));
    rig.assert_restored();
}
