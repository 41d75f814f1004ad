//! Failures roll back: IPAM, routes, a name clash in the pod, the bad-input catalogue.

use plexus_testkit::net::{bin_dir, unique_name, Veth, VethEnd};
use serde_json::json;

use crate::support::{err_json, state_files, Rig};

#[test]
fn failed_ipam_rolls_back() {
    let rig = Rig::new();
    let conf = rig.conf(
        "1.0.0",
        json!({"ipam": {"type": "static", "addresses": [{"address": "198.51.100.7"}]}}),
    );
    let e = err_json(&rig.add(&conf));
    assert!(e["msg"].as_str().unwrap().contains("198.51.100.7"), "{e}");
    rig.assert_restored();
}

#[test]
fn failed_route_rolls_back_device_and_state() {
    let rig = Rig::new();
    // The gateway is not reachable on-link: the route add fails after IPAM.
    let conf = rig.conf(
        "1.0.0",
        json!({"ipam": {"type": "static",
            "addresses": [{"address": "198.51.100.7/24"}],
            "routes": [{"dst": "203.0.113.0/24", "gw": "203.0.113.99"}]}}),
    );
    let e = err_json(&rig.add(&conf));
    assert!(e["msg"].as_str().unwrap().contains("203.0.113.0/24"), "{e}");
    rig.assert_restored();
}

#[test]
fn ifname_clash_in_pod_keeps_device_on_host() {
    let rig = Rig::new();
    let _other = Veth::create(
        VethEnd::new("net1").in_ns(&rig.pod),
        VethEnd::new(unique_name("pxo")).in_ns(&rig.pod),
    );
    let e = err_json(&rig.add(&rig.conf("1.0.0", json!({}))));
    assert!(e["msg"].as_str().unwrap().contains("net1"), "{e}");
    assert!(rig.host.link(rig.vf()).is_some());
    assert!(state_files(rig.data.path()).is_empty());
}

#[test]
fn bad_input_fails_with_spec_codes_and_changes_nothing() {
    let rig = Rig::new();
    let p = rig.pod_path();
    let cases: Vec<(Vec<u8>, u64, &str)> = vec![
        (b"{not json".to_vec(), 6, "unmarshal"),
        (serde_json::to_vec(&json!({"cniVersion":"1.0.0","type":"host-device","device":"x"})).unwrap(), 7, "name"),
        (serde_json::to_vec(&rig.conf("9.9.9", json!({})))
            .unwrap(), 1, "9.9.9"),
        (serde_json::to_vec(&rig.conf("1.0.0", json!({"device": "pxnosuch0"}))).unwrap(), 999, "pxnosuch0"),
        (serde_json::to_vec(&rig.conf("1.0.0", json!({"hwaddr": "zz", "device": null}))).unwrap(), 7, "hwaddr"),
        (serde_json::to_vec(&rig.conf("1.0.0", json!({"ipam": {"type": "static", "addresses": [{"address": "198.51.100.300/24"}]}}))).unwrap(), 0, "198.51.100.300"),
    ];
    for (stdin, code, word) in cases {
        let e = err_json(&rig.run("ADD", "c1", &p, &stdin));
        if code != 0 {
            assert_eq!(e["code"], code, "{e}");
        }
        assert!(
            e["msg"].to_string().to_lowercase().contains(word)
                || e["details"].to_string().contains(word),
            "{word}: {e}"
        );
        rig.assert_restored();
    }
    // Missing env var: CNI_NETNS on ADD.
    let conf = serde_json::to_vec(&rig.conf("1.0.0", json!({}))).unwrap();
    let bd = bin_dir();
    let env = [
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", "c1"),
        ("CNI_IFNAME", "net1"),
        ("CNI_PATH", bd.to_str().unwrap()),
    ];
    let e = err_json(&rig.run_env(&env, &conf));
    assert_eq!(e["code"], 4, "{e}");
    assert!(e["msg"].as_str().unwrap().contains("CNI_NETNS"), "{e}");
    rig.assert_restored();
}
