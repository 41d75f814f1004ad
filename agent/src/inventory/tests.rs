use super::sample::*;
use super::*;
use plexus_imds::testing::StaticMetadata;
use plexus_sysfs::testing::{macs, oci_vm_node, FakeSysfs, FunctionSpec};
use std::time::UNIX_EPOCH;

fn pci(s: &str) -> PciAddr {
    s.parse().unwrap()
}

fn entry<'a>(inv: &'a Inventory, p: &str) -> &'a Entry {
    inv.entries.iter().find(|e| e.pci == pci(p)).unwrap()
}

#[test]
fn joins_devices_vnics_and_pods() {
    let inv = inventory();
    assert_eq!(inv.entries.len(), 10);
    let primary = entry(&inv, "0000:00:03.0");
    assert!(primary.is_primary && !primary.is_vf);
    assert_eq!(primary.location, Location::Host);
    let single = entry(&inv, "0000:00:04.0");
    assert_eq!(
        single.vnic.as_ref().unwrap().id,
        "ocid1.vnic.oc1.phx.single"
    );
    for p in ["0000:00:05.0", "0000:00:06.0"] {
        assert_eq!(
            entry(&inv, p).vnic.as_ref().unwrap().id,
            "ocid1.vnic.oc1.phx.shared"
        );
    }
    assert_eq!(entry(&inv, "0000:00:07.0").location, Location::Userspace);
    let in_pod = entry(&inv, "0000:00:08.0");
    assert_eq!(in_pod.mac.as_deref(), Some(MAC_IN_POD));
    assert_eq!(in_pod.ifname.as_deref(), Some("ens8"));
    assert!(
        matches!(&in_pod.location, Location::Pod(p) if p.pod.as_deref() == Some("default/web-1"))
    );
    assert_eq!(
        in_pod.vnic.as_ref().unwrap().address.ip.to_string(),
        "198.51.100.40"
    );
    assert!(entry(&inv, "0000:3b:00.2").vnic.is_none());
    assert_eq!(
        inv.counts(),
        VfCounts {
            host: 6,
            pod: 1,
            userspace: 1,
            unknown: 0
        }
    );
    assert_eq!(inv.unmatched_vnics.len(), 1);
    let text: Vec<String> = inv.issues.iter().map(ToString::to_string).collect();
    assert_eq!(
        text,
        vec![
            "VNIC ocid1.vnic.oc1.phx.shared (MAC 02:00:17:00:00:03) is presented as 2 VFs (0000:00:05.0, 0000:00:06.0): give a pod all of them or bond them; one VF alone shares the VNIC's address",
            "VNIC ocid1.vnic.oc1.phx.missing (MAC 02:00:17:00:00:77) matches no device on this node",
            "device 0000:00:07.0 has no readable MAC; cannot match it to a VNIC",
            "device 0000:00:09.0 has no readable MAC; cannot match it to a VNIC",
        ]
    );
}

#[test]
fn failover_standby_never_wins_over_the_vf_and_non_vfs_are_not_guessed() {
    let dir = tempfile::tempdir().unwrap();
    let s = FakeSysfs::new(dir.path()).unwrap();
    let mac = "02:00:17:00:00:aa";
    let virtio = |p: &str, n: &str| FunctionSpec {
        virtio: true,
        ..FunctionSpec::new(p, 0x1af4, 0x1000)
            .driver("virtio-pci")
            .netdev(n, Some(mac))
    };
    s.add_function(&virtio("0000:00:03.0", "ens3")).unwrap();
    s.add_function(
        &FunctionSpec::new("0000:00:04.0", 0x15b3, 0x101e)
            .driver("mlx5_core")
            .netdev("ens4", Some(mac)),
    )
    .unwrap();
    let d = plexus_sysfs::discover(s.root()).unwrap();
    let v = vec![NodeNic::from(&vnic(
        "p",
        mac,
        "198.51.100.10",
        "198.51.100.0/24",
        "198.51.100.1",
    ))];
    let inv = join(&d, &v, &[], None);
    assert!(entry(&inv, "0000:00:04.0").vnic.is_some());
    assert!(entry(&inv, "0000:00:03.0").vnic.is_none());
    assert!(inv.issues[0]
        .to_string()
        .contains("the VF 0000:00:04.0 carries the VNIC"));

    let dir = tempfile::tempdir().unwrap();
    let s = FakeSysfs::new(dir.path()).unwrap();
    s.add_function(&virtio("0000:00:03.0", "ens3")).unwrap();
    s.add_function(&virtio("0000:00:04.0", "ens4")).unwrap();
    let d = plexus_sysfs::discover(s.root()).unwrap();
    let inv = join(&d, &v, &[], None);
    assert!(inv.entries.iter().all(|e| e.vnic.is_none()));
    assert!(
        inv.issues[0]
            .to_string()
            .contains("none is a VF: not assigned"),
        "{}",
        inv.issues[0]
    );
    assert_eq!(inv.unmatched_vnics.len(), 1);
}

#[test]
fn previous_state_remembers_macs_of_moved_devices() {
    let dir = tempfile::tempdir().unwrap();
    let node = oci_vm_node(dir.path()).unwrap();
    let before = join(
        &plexus_sysfs::discover(node.root()).unwrap(),
        &nics(),
        &[],
        None,
    );
    let state = before.to_node_state(UNIX_EPOCH);
    node.hide_netdev("ens4").unwrap();
    let after = join(
        &plexus_sysfs::discover(node.root()).unwrap(),
        &nics(),
        &[],
        Some(&state),
    );
    let e = entry(&after, "0000:00:04.0");
    assert_eq!(e.location, Location::Unknown);
    assert_eq!(e.mac.as_deref(), Some(macs::SINGLE_VF));
    assert_eq!(e.ifname.as_deref(), Some("ens4"));
    assert!(e.vnic.is_some());
    // 0000:00:08.0 too: kernel-bound, no netdev, no pod claim given here.
    assert_eq!(after.counts().unknown, 2);
}

#[test]
fn node_state_has_devices_then_unmatched_vnics() {
    let state = inventory().to_node_state(UNIX_EPOCH);
    let rows: Vec<(Option<&str>, String, bool)> = state
        .vnics
        .iter()
        .map(|v| (v.pci.as_deref(), v.ip.to_string(), v.is_primary))
        .collect();
    assert_eq!(
        rows,
        vec![
            (Some("0000:00:03.0"), "198.51.100.10".into(), true),
            (Some("0000:00:04.0"), "198.51.100.20".into(), false),
            (Some("0000:00:05.0"), "203.0.113.30".into(), false),
            (Some("0000:00:06.0"), "203.0.113.30".into(), false),
            (Some("0000:00:08.0"), "198.51.100.40".into(), false),
            (None, "203.0.113.50".into(), false),
        ]
    );
    assert!(state.vnics.iter().all(|v| v.mtu == Some(9000)));
    assert_eq!(
        state.find_by_pci("0000:00:08.0").unwrap().ifname.as_deref(),
        Some("ens8")
    );
}

#[test]
fn build_reads_all_three_sources() {
    let dir = tempfile::tempdir().unwrap();
    let node = oci_vm_node(dir.path()).unwrap();
    let meta = StaticMetadata::new(vnics(), None);
    let inv = build(node.root(), &meta, &StaticPodLocations(claims()), None).unwrap();
    assert_eq!(inv, inventory());
    let err = build(
        node.root(),
        &StaticMetadata::failing(429),
        &StaticPodLocations::default(),
        None,
    )
    .unwrap_err();
    assert!(err.to_string().contains("HTTP 429"), "{err}");
}

#[test]
fn reads_host_device_records_and_meta_plugin_cache() {
    let dir = tempfile::tempdir().unwrap();
    let hd = dir.path().join("hd");
    let meta = dir.path().join("plexus");
    std::fs::create_dir_all(&hd).unwrap();
    std::fs::create_dir_all(&meta).unwrap();
    std::fs::write(
        hd.join("c0ffee-net1.json"),
        serde_json::json!({"containerId": "c0ffee", "ifname": "net1", "netns": "/var/run/netns/cni-1",
            "host": {"name": "ens8", "mac": "02:00:17:00:00:08", "pci": "0000:00:08.0", "mtu": 9000, "up": true,
                     "addresses": [], "routes": []}, "userspace": false})
        .to_string(),
    )
    .unwrap();
    std::fs::write(
        hd.join("dpdk-net2.json"),
        serde_json::json!({"containerId": "dpdk", "ifname": "net2", "netns": "/x",
            "host": {"name": "", "pci": "0000:00:07.0", "mtu": 0, "up": false}, "userspace": true})
        .to_string(),
    )
    .unwrap();
    std::fs::write(hd.join("garbage.json"), "{oops").unwrap();
    std::fs::write(hd.join("c0ffee.lock"), "").unwrap();
    std::fs::write(
        meta.join("c0ffee-eth0.json"),
        serde_json::json!({"kind": "plexusCacheV1", "containerId": "c0ffee", "ifname": "eth0",
            "pod": {"namespace": "default", "name": "web-1", "uid": "u"}, "attachments": []})
        .to_string(),
    )
    .unwrap();
    let src = crate::caches::CniCacheLocations {
        host_device_dir: hd,
        plexus_dir: meta,
    };
    let claims = src.pod_claims().unwrap();
    assert_eq!(claims.len(), 2);
    assert_eq!(claims[0], sample::claims()[0]);
    assert_eq!(claims[1].pci, Some(pci("0000:00:07.0")));
    assert_eq!(claims[1].pod.pod, None);
    assert_eq!(claims[1].host_ifname, None);
    let missing = crate::caches::CniCacheLocations {
        host_device_dir: dir.path().join("nope"),
        plexus_dir: dir.path().join("nope2"),
    };
    assert!(missing.pod_claims().unwrap().is_empty());
}
