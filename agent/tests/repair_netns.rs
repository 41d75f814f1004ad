//! Privileged: a VF that came back from a destroyed pod as `net1` (down) is
//! renamed back and reconfigured; records of dead pods are collected, those
//! of live pods kept.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::fs;

use plexus_agent::caches::{CniCacheLocations, CniCaches};
use plexus_agent::repair::{
    apply_repair, known_vfs, plan_repair, NetlinkRepair, RepairAction, RepairOps,
};
use plexus_agent::vnic::{run, Mode, NetlinkOps, VnicConfig};
use plexus_imds::testing::StaticMetadata;
use plexus_imds::Vnic;
use plexus_testkit::net::{require_root, TestNs, Veth, VethEnd};
use serde_json::json;

fn vnics() -> Vec<Vnic> {
    serde_json::from_value(json!([
        {"vnicId": "ocid1.vnic.primary", "privateIp": "198.51.100.10", "macAddr": "02:00:17:BB:00:01",
         "virtualRouterIp": "198.51.100.1", "subnetCidrBlock": "198.51.100.0/25"},
        {"vnicId": "ocid1.vnic.one", "privateIp": "203.0.113.93", "macAddr": "02:00:17:BB:00:02",
         "virtualRouterIp": "203.0.113.1", "subnetCidrBlock": "203.0.113.0/24"}
    ]))
    .unwrap()
}

/// Both caches as the agent reads them each pass.
fn read(hd: &std::path::Path, meta: &std::path::Path) -> CniCaches {
    CniCacheLocations {
        host_device_dir: hd.to_path_buf(),
        plexus_dir: meta.to_path_buf(),
    }
    .read()
    .unwrap()
}

#[test]
fn stranded_vf_is_renamed_reconfigured_and_dead_records_collected() {
    require_root();
    let ns = TestNs::new("pxrep");
    // The kernel handed the VF back under its pod name, down.
    let _vf = Veth::create(
        VethEnd::new("net1").in_ns(&ns).mac("02:00:17:bb:00:02"),
        VethEnd::new("net1p").in_ns(&ns).up(),
    );
    // An unrelated link with a pod-like name must not be touched.
    let _other = Veth::create(
        VethEnd::new("net2").in_ns(&ns).mac("02:00:17:cc:00:09"),
        VethEnd::new("net2p").in_ns(&ns),
    );
    let dirs = tempfile::tempdir().unwrap();
    let hd = dirs.path().join("hd");
    let meta = dirs.path().join("meta");
    fs::create_dir_all(&hd).unwrap();
    fs::create_dir_all(&meta).unwrap();
    let gone = format!("/run/netns/{}-gone", ns.name());
    fs::write(
        hd.join("c1-net1.json"),
        json!({"containerId":"c1","ifname":"net1","netns":gone,
               "host":{"name":"vf1","mac":"02:00:17:bb:00:02","mtu":9000,"up":true}})
        .to_string(),
    )
    .unwrap();
    fs::write(
        meta.join("c1-eth0.json"),
        json!({"kind":"plexusCacheV1","containerId":"c1","ifname":"eth0","netns":gone,"attachments":[]}).to_string(),
    )
    .unwrap();
    let live = ns.path().to_string_lossy().into_owned();
    fs::write(
        meta.join("c2-eth0.json"),
        json!({"kind":"plexusCacheV1","containerId":"c2","ifname":"eth0","netns":live,"attachments":[]}).to_string(),
    )
    .unwrap();
    fs::write(meta.join("garbage.json"), "{not json").unwrap();
    // A dead pod's record written just now: the kubelet's DEL may still need it.
    fs::write(
        meta.join("c3-eth0.json"),
        json!({"kind":"plexusCacheV1","containerId":"c3","ifname":"eth0","netns":gone,"attachments":[]}).to_string(),
    )
    .unwrap();
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    for f in [hd.join("c1-net1.json"), meta.join("c1-eth0.json")] {
        fs::File::options()
            .write(true)
            .open(f)
            .unwrap()
            .set_modified(old)
            .unwrap();
    }

    let repair = NetlinkRepair::new(
        plexus_netlink::Handle::open_in(&plexus_netns::NetNs::open(ns.path()).unwrap()).unwrap(),
    );
    let nics: Vec<plexus_imds::NodeNic> = vnics().iter().map(Into::into).collect();
    let known = known_vfs(&nics, None);
    let plan = plan_repair(
        &repair.links().unwrap(),
        &known,
        &read(&hd, &meta).host_device_records(),
        &read(&hd, &meta).meta_records(),
    );
    assert_eq!(
        plan.actions[0],
        RepairAction::Rename {
            from: "net1".into(),
            to: "vf1".into()
        }
    );
    assert_eq!(plan.actions.len(), 3, "{plan:?}");
    assert!(apply_repair(&repair, &plan).is_empty());

    assert!(ns.link("net1").is_none());
    assert!(ns.link("net2").is_some());
    assert!(!hd.join("c1-net1.json").exists());
    assert!(!meta.join("c1-eth0.json").exists());
    assert!(meta.join("c2-eth0.json").exists());
    assert!(meta.join("garbage.json").exists());
    assert!(meta.join("c3-eth0.json").exists());

    // The VNIC apply path restores the host configuration.
    let ops = NetlinkOps::in_netns(&ns.path()).unwrap();
    let md = StaticMetadata::new(vnics(), None);
    let (_, r) = run(
        Mode::Apply,
        &VnicConfig::default(),
        &md,
        &ops,
        &BTreeSet::new(),
    )
    .unwrap();
    assert!(r.failed.is_empty(), "{r:?}");
    let l = ns.link("vf1").unwrap();
    assert!(l["flags"].as_array().unwrap().iter().any(|f| f == "UP"));
    let a = ns.addrs("vf1");
    assert_eq!(a[0]["local"], "203.0.113.93");

    // Second pass: nothing left to repair.
    let again = plan_repair(
        &repair.links().unwrap(),
        &known,
        &read(&hd, &meta).host_device_records(),
        &read(&hd, &meta).meta_records(),
    );
    assert!(again.is_empty(), "{again:?}");
}
