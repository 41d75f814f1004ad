//! ADD and DEL: the device moved and restored, found again, recovered or refused.

use plexus_cni::{Command, Plugin};
use plexus_host_device::net::Side;
use rstest::rstest;
use serde_json::{json, Value};

use crate::support::{routes_of, Env, MAC, POD};

#[rstest]
fn add_then_del_restores(#[values("0.3.1", "0.4.0", "1.0.0", "1.1.0")] version: &str) {
    let env = Env::new();
    env.ipam_ok(version);
    let out = env.add(version, json!({})).unwrap();
    assert_eq!(out["cniVersion"], version);
    assert_eq!(out["interfaces"][0]["name"], "net1");
    assert_eq!(out["interfaces"][0]["mac"], MAC);
    assert_eq!(out["interfaces"][0]["sandbox"], POD);
    assert_eq!(out["ips"][0]["address"], "198.51.100.7/24");
    assert_eq!(out["ips"][0]["interface"], 0);
    assert_eq!(out["dns"]["nameservers"][0], "198.51.100.53");
    assert_eq!(
        out["interfaces"][0].get("mtu").is_some(),
        version == "1.1.0"
    );
    assert_eq!(
        out["ips"][0].get("version").is_some(),
        version.starts_with("0.")
    );
    {
        let w = env.world();
        assert!(w.get(Side::Host, "ens5").is_none());
        let p = w.get(Side::Pod, "net1").unwrap();
        assert!(p.link.up);
        assert_eq!(p.link.alias.as_deref(), Some("ens5"));
        assert_eq!(p.addrs, ["198.51.100.7/24".parse().unwrap()]);
        assert_eq!(
            routes_of(p),
            [
                "198.51.100.0/24 - kernel",
                "0.0.0.0/0 198.51.100.1 boot",
                "203.0.113.0/24 198.51.100.254 boot"
            ]
        );
    }
    assert_eq!(env.state_files(), ["c1-net1.json"]);

    env.del(POD, version, json!({})).unwrap();
    env.assert_restored();
    assert!(env.state_files().is_empty());
    // Idempotent: again, and with the netns gone, and with no netns at all.
    env.del(POD, version, json!({})).unwrap();
    env.world().pod = None;
    env.del(POD, version, json!({})).unwrap();
    env.del("", version, json!({})).unwrap();
    env.assert_restored();
    assert_eq!(env.ipam_commands(), ["ADD", "DEL", "DEL", "DEL", "DEL"]);
}

#[test]
fn del_after_netns_destroyed_finds_device_under_pod_name() {
    let env = Env::new();
    env.ipam_ok("1.0.0");
    env.add("1.0.0", json!({})).unwrap();
    {
        // The pod dies: the kernel returns the physical device as `net1`.
        let mut w = env.world();
        let mut l = w.pod.take().unwrap().remove(0);
        l.link.up = false;
        w.host.push(l);
    }
    env.del(POD, "1.0.0", json!({})).unwrap();
    env.assert_restored();
    assert!(env.world().get(Side::Host, "net1").is_none());
}

#[test]
fn del_finds_device_renamed_inside_pod() {
    let env = Env::new();
    env.ipam_ok("1.0.0");
    env.add("1.0.0", json!({})).unwrap();
    {
        let mut w = env.world();
        let pod = w.pod.as_mut().unwrap();
        pod[0].link.name = "eth7".into();
    }
    env.del(POD, "1.0.0", json!({})).unwrap();
    env.assert_restored();
}

#[test]
fn second_add_for_the_same_device_is_refused() {
    let env = Env::new();
    env.ipam_ok("1.0.0");
    env.add("1.0.0", json!({})).unwrap();
    let c = env.conf("1.0.0", json!({}));
    let mut a = env.args(Command::Add, POD, &c);
    a.container_id = "c2".into();
    let e = env.plugin.add(&a).unwrap_err();
    assert!(e.msg.contains("in use by container c1"), "{e}");
    assert!(env.world().get(Side::Pod, "net1").is_some());
}

#[test]
fn stale_record_is_recovered_on_add() {
    let env = Env::new();
    env.ipam_ok("1.0.0");
    env.add("1.0.0", json!({})).unwrap();
    {
        // Pod gone without DEL; device back on the host as net1.
        let mut w = env.world();
        let l = w.pod.take().unwrap().remove(0);
        w.host.push(l);
        w.pod = Some(Vec::new());
        w.alive.clear();
        w.alive.push("/var/run/netns/pod2".into());
        w.pod_path = "/var/run/netns/pod2".into();
    }
    env.ipam_ok("1.0.0");
    let c = env.conf("1.0.0", json!({"device": null, "hwaddr": MAC}));
    let mut a = env.args(Command::Add, "/var/run/netns/pod2", &c);
    a.container_id = "c2".into();
    env.plugin.add(&a).unwrap();
    assert_eq!(env.state_files(), ["c2-net1.json"]);
    let rec: Value =
        serde_json::from_slice(&std::fs::read(env.data.path().join("c2-net1.json")).unwrap())
            .unwrap();
    assert_eq!(rec["host"]["name"], "ens5", "original name recovered");
}

#[test]
fn del_fails_and_keeps_record_when_host_names_are_taken() {
    let env = Env::new();
    env.ipam_ok("1.0.0");
    env.add("1.0.0", json!({})).unwrap();
    {
        // Both the pod name and the original name are taken on the host.
        let mut w = env.world();
        w.add_link(Side::Host, "ens5", "02:00:00:00:00:77", 1500, false);
        w.add_link(Side::Host, "net1", "02:00:00:00:00:78", 1500, false);
    }
    let e = env.del(POD, "1.0.0", json!({})).unwrap_err();
    assert!(e.msg.contains("taken"), "{e}");
    assert_eq!(env.state_files(), ["c1-net1.json"]);
    assert_eq!(env.ipam_commands(), ["ADD", "DEL"], "IPAM DEL still ran");
    {
        let mut w = env.world();
        w.host
            .retain(|l| l.link.name != "ens5" && l.link.name != "net1");
    }
    env.del(POD, "1.0.0", json!({})).unwrap();
    env.assert_restored();
}
