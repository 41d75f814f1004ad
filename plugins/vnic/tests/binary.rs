//! Contract tests of the `vnic` binary: explicit env + stdin, a generated
//! sysfs root, a state file, and the fake IMDS on loopback for the fallback.
//! Every test runs across CNI versions 0.3.1–1.1.0.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant, UNIX_EPOCH};

use plexus_imds::node_state::{NodeState, VnicState};
use plexus_sysfs::testing::{macs, oci_vm_node, FakeSysfs};
use plexus_testkit::imds::{FakeImds, Fault};
use plexus_testkit::net::{CniCall, CniOutput};
use rstest::rstest;
use serde_json::{json, Value};

const MAC_HIDDEN: &str = "02:00:17:00:00:08";

struct Node {
    _dir: tempfile::TempDir,
    sysfs: FakeSysfs,
    state_file: std::path::PathBuf,
}

fn entry(
    ifname: &str,
    pci: &str,
    mac: &str,
    ip: &str,
    subnet: &str,
    gw: &str,
    primary: bool,
) -> VnicState {
    let subnet: ipnet::IpNet = subnet.parse().unwrap();
    VnicState {
        ifname: Some(ifname.into()),
        pci: Some(pci.into()),
        mac: mac.parse().unwrap(),
        vnic_id: format!("ocid1.vnic.oc1.phx.{ifname}"),
        ip: ip.parse().unwrap(),
        prefix_len: subnet.prefix_len(),
        subnet_cidr: subnet,
        gateway: Some(gw.parse().unwrap()),
        ipv6: vec![],
        vlan_tag: None,
        nic_index: None,
        mtu: Some(9000),
        is_primary: primary,
    }
}

/// The generated OCI VM node plus (optionally) a state file describing it.
fn node(with_state: bool) -> Node {
    let dir = tempfile::tempdir().unwrap();
    let sysfs = oci_vm_node(&dir.path().join("root")).unwrap();
    let state_file = dir.path().join("run/plexus/state.json");
    if with_state {
        let state = NodeState::new(
            vec![
                entry(
                    "ens3",
                    "0000:00:03.0",
                    macs::PRIMARY,
                    "198.51.100.10",
                    "198.51.100.0/24",
                    "198.51.100.1",
                    true,
                ),
                entry(
                    "ens4",
                    "0000:00:04.0",
                    macs::SINGLE_VF,
                    "198.51.100.20",
                    "198.51.100.0/24",
                    "198.51.100.1",
                    false,
                ),
                entry(
                    "ens5",
                    "0000:00:05.0",
                    macs::SHARED,
                    "203.0.113.30",
                    "203.0.113.0/25",
                    "203.0.113.1",
                    false,
                ),
                entry(
                    "ens6",
                    "0000:00:06.0",
                    macs::SHARED,
                    "203.0.113.30",
                    "203.0.113.0/25",
                    "203.0.113.1",
                    false,
                ),
                entry(
                    "ens8",
                    "0000:00:08.0",
                    MAC_HIDDEN,
                    "198.51.100.40",
                    "198.51.100.0/24",
                    "198.51.100.1",
                    false,
                ),
            ],
            UNIX_EPOCH,
        );
        state.write_atomic(&state_file).unwrap();
    }
    Node {
        _dir: dir,
        sysfs,
        state_file,
    }
}

fn imds_vnics() -> Value {
    json!([
        {"vnicId": "ocid1.vnic.oc1.phx.primary", "privateIp": "198.51.100.10", "macAddr": macs::PRIMARY.to_uppercase(),
         "virtualRouterIp": "198.51.100.1", "subnetCidrBlock": "198.51.100.0/24"},
        {"vnicId": "ocid1.vnic.oc1.phx.ens4", "privateIp": "198.51.100.21", "macAddr": macs::SINGLE_VF.to_uppercase(),
         "virtualRouterIp": "198.51.100.1", "subnetCidrBlock": "198.51.100.0/24", "vlanTag": 1039}
    ])
}

fn conf(version: &str, node: &Node, device: Value, imds_url: &str, extra_ipam: Value) -> Value {
    let mut ipam = json!({
        "type": "vnic",
        "stateFile": node.state_file,
        "sysfsRoot": node.sysfs.root(),
        "imdsUrl": imds_url,
    });
    if let (Some(i), Some(e)) = (ipam.as_object_mut(), extra_ipam.as_object()) {
        i.extend(e.clone());
    }
    let mut c =
        json!({"cniVersion": version, "name": "sriov-vnic", "type": "host-device", "ipam": ipam});
    c.as_object_mut()
        .unwrap()
        .extend(device.as_object().unwrap().clone());
    c
}

fn call(command: &str, stdin: &Value) -> CniOutput {
    CniCall::new(env!("CARGO_BIN_EXE_vnic"), command)
        .container_id("ctr-vnic-test")
        .netns("/var/run/netns/vnic-test")
        .ifname("net1")
        .cni_path("/opt/cni/bin")
        .stdin(serde_json::to_vec(stdin).unwrap())
        .run()
}

/// An unreachable URL: the state-file path must never need it.
const NO_IMDS: &str = "http://127.0.0.1:9";

fn ips(out: &Value) -> Vec<(String, String)> {
    out["ips"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["address"].as_str().unwrap().to_string(),
                i["gateway"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

#[rstest]
fn add_by_pci_after_host_device_moved_the_netdev(
    #[values("0.3.1", "0.4.0", "1.0.0", "1.1.0")] version: &str,
) {
    let n = node(true);
    n.sysfs.hide_netdev("ens4").unwrap();
    let out = call(
        "ADD",
        &conf(
            version,
            &n,
            json!({"pciBusID": "0000:00:04.0"}),
            NO_IMDS,
            json!({}),
        ),
    );
    let r = out.assert_ok();
    assert_eq!(r["cniVersion"], version);
    assert_eq!(
        ips(r),
        vec![("198.51.100.20/24".into(), "198.51.100.1".into())]
    );
    assert!(r.get("routes").is_none(), "{r}");
    if version.starts_with("0.") {
        assert_eq!(r["ips"][0]["version"], "4");
    }
}

#[rstest]
fn add_by_device_name_hwaddr_kernelpath_and_runtime_device_id(
    #[values("0.3.1", "0.4.0", "1.0.0", "1.1.0")] version: &str,
) {
    let n = node(true);
    let cases = [
        (json!({"device": "ens5"}), "203.0.113.30/25"),
        (
            json!({"hwaddr": macs::SINGLE_VF.to_uppercase()}),
            "198.51.100.20/24",
        ),
        (
            json!({"kernelpath": "/sys/devices/pci0000:00/0000:00:06.0"}),
            "203.0.113.30/25",
        ),
        (
            json!({"runtimeConfig": {"deviceID": "0000:00:08.0"}}),
            "198.51.100.40/24",
        ),
        // Name of a netdev no longer visible: found by its host name in the state file.
        (json!({"device": "ens8"}), "198.51.100.40/24"),
    ];
    for (device, want) in cases {
        let out = call(
            "ADD",
            &conf(version, &n, device.clone(), NO_IMDS, json!({})),
        );
        assert_eq!(ips(out.assert_ok())[0].0, want, "{device}");
    }
}

#[rstest]
fn routes_from_config_and_optional_default_route(
    #[values("0.3.1", "0.4.0", "1.0.0", "1.1.0")] version: &str,
) {
    let n = node(true);
    let extra = json!({"defaultRoute": true, "routes": [{"dst": "203.0.113.128/25"}]});
    let out = call(
        "ADD",
        &conf(version, &n, json!({"device": "ens4"}), NO_IMDS, extra),
    );
    let r = out.assert_ok();
    assert_eq!(
        r["routes"],
        json!([{"dst": "203.0.113.128/25"}, {"dst": "0.0.0.0/0", "gw": "198.51.100.1"}])
    );
}

#[rstest]
fn falls_back_to_imds_only_without_a_state_match(
    #[values("0.3.1", "0.4.0", "1.0.0", "1.1.0")] version: &str,
) {
    let fake = FakeImds::start(imds_vnics()).unwrap();
    // With a state file: IMDS is never asked.
    let with_state = node(true);
    call(
        "ADD",
        &conf(
            version,
            &with_state,
            json!({"device": "ens4"}),
            &fake.url(),
            json!({}),
        ),
    )
    .assert_ok();
    assert_eq!(fake.request_count(), 0);
    // Without one: the MAC read from sysfs is matched case-insensitively.
    let without = node(false);
    let out = call(
        "ADD",
        &conf(
            version,
            &without,
            json!({"device": "ens4"}),
            &fake.url(),
            json!({}),
        ),
    );
    assert_eq!(
        ips(out.assert_ok()),
        vec![("198.51.100.21/24".into(), "198.51.100.1".into())]
    );
    let log = fake.requests();
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].path, "/opc/v2/vnics/");
    assert_eq!(log[0].authorization.as_deref(), Some("Bearer Oracle"));
}

#[rstest]
fn imds_throttling_is_retried_then_unavailable_is_try_again(
    #[values("0.3.1", "1.1.0")] version: &str,
) {
    let fake = FakeImds::start(imds_vnics()).unwrap();
    fake.push_faults(1, Fault::HtmlStatus(429));
    let n = node(false);
    call(
        "ADD",
        &conf(
            version,
            &n,
            json!({"device": "ens4"}),
            &fake.url(),
            json!({}),
        ),
    )
    .assert_ok();
    assert_eq!(fake.request_count(), 2);
    // Down: connection refused → code 11 (transient).
    let out = call(
        "ADD",
        &conf(version, &n, json!({"device": "ens4"}), NO_IMDS, json!({})),
    );
    assert!(!out.status.success());
    assert_eq!(out.json["code"], 11, "{}", out.stdout);
    assert!(
        out.json["msg"].as_str().unwrap().contains("unreachable"),
        "{}",
        out.stdout
    );
}

#[rstest]
fn device_without_vnic_is_a_clear_error(
    #[values("0.3.1", "0.4.0", "1.0.0", "1.1.0")] version: &str,
) {
    let fake = FakeImds::start(imds_vnics()).unwrap();
    let n = node(true);
    let out = call(
        "ADD",
        &conf(
            version,
            &n,
            json!({"device": "enp59s0f0v0"}),
            &fake.url(),
            json!({}),
        ),
    );
    assert!(!out.status.success());
    assert_eq!(out.json["code"], 999);
    assert_eq!(out.json["cniVersion"], version);
    let msg = out.json["msg"].as_str().unwrap();
    assert_eq!(
        msg,
        "no VNIC for device (name enp59s0f0v0, MAC b8:ce:f6:00:00:11, PCI 0000:3b:00.2)"
    );
    // No selector at all.
    let out = call("ADD", &conf(version, &n, json!({}), NO_IMDS, json!({})));
    assert_eq!(out.json["code"], 7, "{}", out.stdout);
}

#[rstest]
fn primary_vnic_is_refused(#[values("0.3.1", "1.1.0")] version: &str) {
    let n = node(true);
    let out = call(
        "ADD",
        &conf(version, &n, json!({"device": "ens3"}), NO_IMDS, json!({})),
    );
    assert!(!out.status.success());
    assert!(
        out.json["msg"].as_str().unwrap().contains("primary VNIC"),
        "{}",
        out.stdout
    );
}

#[rstest]
fn del_is_a_noop_success(#[values("0.3.1", "0.4.0", "1.0.0", "1.1.0")] version: &str) {
    let n = node(false);
    let out = call(
        "DEL",
        &conf(version, &n, json!({"device": "gone"}), NO_IMDS, json!({})),
    );
    assert!(out.status.success(), "{}", out.stdout);
    assert_eq!(out.stdout, "");
}

#[rstest]
fn check_verifies_prev_result(#[values("0.4.0", "1.0.0", "1.1.0")] version: &str) {
    let n = node(true);
    let mut c = conf(version, &n, json!({"device": "ens4"}), NO_IMDS, json!({}));
    c["prevResult"] = json!({"cniVersion": version, "ips": [{"address": "198.51.100.20/24", "gateway": "198.51.100.1"}]});
    let out = call("CHECK", &c);
    assert!(out.status.success(), "{}", out.stdout);
    c["prevResult"]["ips"][0]["address"] = json!("198.51.100.99/24");
    let out = call("CHECK", &c);
    assert!(!out.status.success());
    assert!(
        out.json["msg"]
            .as_str()
            .unwrap()
            .contains("198.51.100.20/24"),
        "{}",
        out.stdout
    );
    c.as_object_mut().unwrap().remove("prevResult");
    assert!(!call("CHECK", &c).status.success());
}

#[test]
fn add_latency_with_state_file() {
    let n = node(true);
    let stdin = conf(
        "1.0.0",
        &n,
        json!({"pciBusID": "0000:00:04.0"}),
        NO_IMDS,
        json!({}),
    );
    call("ADD", &stdin).assert_ok(); // warm the page cache
    let mut samples: Vec<Duration> = (0..50)
        .map(|_| {
            let t0 = Instant::now();
            call("ADD", &stdin).assert_ok();
            t0.elapsed()
        })
        .collect();
    samples.sort();
    let p50 = samples[samples.len() / 2];
    let p90 = samples[samples.len() * 9 / 10];
    eprintln!("vnic ADD (state file, incl. fork/exec): p50 {p50:?} p90 {p90:?}");
    // Generous bound for debug builds on a loaded 2-core machine.
    assert!(p50 < Duration::from_millis(50), "p50 {p50:?}");
}

#[test]
fn bad_state_file_is_an_io_error() {
    let n = node(false);
    std::fs::create_dir_all(n.state_file.parent().unwrap()).unwrap();
    std::fs::write(&n.state_file, "{\"version\": 99}").unwrap();
    let out = call(
        "ADD",
        &conf("1.0.0", &n, json!({"device": "ens4"}), NO_IMDS, json!({})),
    );
    assert_eq!(out.json["code"], 5, "{}", out.stdout);
    assert!(out.json["msg"]
        .as_str()
        .unwrap()
        .contains("schema version 99"));
}
