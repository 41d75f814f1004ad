//! The `vnic` binary against real namespaces. Needs root; fails (never
//! skips) without it.
//!
//! - Its built-in default IMDS URL (`http://169.254.169.254`) against the
//!   fake IMDS bound at 169.254.169.254:80 inside a throwaway network
//!   namespace. The host namespace never gets that address.
//! - A device host-device has already moved into the pod as `net1` (a veth
//!   end created in a fresh namespace, with the fixture VF's MAC; the VF is
//!   hidden in the node's fixture sysfs): its MAC is read in `CNI_NETNS`, so
//!   a state entry keyed by MAC alone and the IMDS fallback both find it.

#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, UNIX_EPOCH};

use plexus_imds::node_state::{NodeState, VnicState};
use plexus_netns::{run_in, NetNs};
use plexus_sysfs::testing::{macs, oci_vm_node, FakeSysfs};
use plexus_testkit::imds::FakeImds;
use plexus_testkit::net::{require_root, CniCall, CniOutput, TestNs, Veth, VethEnd};
use rstest::rstest;
use serde_json::{json, Value};

#[test]
fn default_imds_url_reaches_link_local_fake_inside_netns() {
    require_root();
    let ns = TestNs::new("vnicimds");
    ns.ip(&["addr", "add", "169.254.169.254/32", "dev", "lo"]);
    let handle = NetNs::open(ns.path()).unwrap();
    let listener = run_in(&handle, || TcpListener::bind("169.254.169.254:80"))
        .unwrap()
        .unwrap();
    let fake = FakeImds::start_with_listener(
        listener,
        json!([
            {"vnicId": "ocid1.vnic.oc1.phx.primary", "privateIp": "198.51.100.10",
             "macAddr": macs::PRIMARY.to_uppercase(), "virtualRouterIp": "198.51.100.1",
             "subnetCidrBlock": "198.51.100.0/24"},
            {"vnicId": "ocid1.vnic.oc1.phx.ens4", "privateIp": "203.0.113.20",
             "macAddr": macs::SINGLE_VF.to_uppercase(), "virtualRouterIp": "203.0.113.1",
             "subnetCidrBlock": "203.0.113.0/24"}
        ]),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let node = oci_vm_node(&dir.path().join("root")).unwrap();
    let conf = json!({
        "cniVersion": "1.0.0", "name": "sriov-vnic", "type": "host-device", "device": "ens4",
        "ipam": {"type": "vnic", "sysfsRoot": node.root(), "stateFile": dir.path().join("absent.json")}
    });
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns.name(), env!("CARGO_BIN_EXE_vnic")])
        .env_clear()
        .envs([
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", "ctr-priv"),
            ("CNI_NETNS", "/var/run/netns/unused"),
            ("CNI_IFNAME", "net1"),
            ("CNI_PATH", "/opt/cni/bin"),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(conf.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "stdout={stdout} stderr={}",
        String::from_utf8_lossy(&out.stderr)
    );
    let result: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(result["ips"][0]["address"], "203.0.113.20/24");
    assert_eq!(result["ips"][0]["gateway"], "203.0.113.1");
    let log = fake.requests();
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].path, "/opc/v2/vnics/");
    assert_eq!(log[0].authorization.as_deref(), Some("Bearer Oracle"));
}

/// A node whose VF `ens5` (PCI 0000:00:05.0) host-device already moved into
/// `pod` as `net1`, keeping its MAC.
struct Moved {
    _vf: Veth,
    pod: TestNs,
    sysfs: FakeSysfs,
    dir: tempfile::TempDir,
}

impl Moved {
    fn new(mac: &str) -> Self {
        require_root();
        let dir = tempfile::tempdir().unwrap();
        let sysfs = oci_vm_node(&dir.path().join("root")).unwrap();
        // sysfs shows only the node's own netdevs: after the move, none for ens5.
        sysfs.hide_netdev("ens5").unwrap();
        let pod = TestNs::new("vnicpod");
        let vf = Veth::create(
            VethEnd::new("net1").in_ns(&pod).mac(mac),
            VethEnd::new("wire0").in_ns(&pod),
        );
        Self {
            _vf: vf,
            pod,
            sysfs,
            dir,
        }
    }

    fn state_file(&self) -> std::path::PathBuf {
        self.dir.path().join("state.json")
    }

    /// A state file whose entries carry a MAC only (no ifname, no PCI), so
    /// nothing but the MAC can match.
    fn write_mac_only_state(&self) {
        let e = |mac: &str, ip: &str, subnet: &str, gw: &str, primary: bool| {
            let subnet: ipnet::IpNet = subnet.parse().unwrap();
            VnicState {
                ifname: None,
                pci: None,
                mac: mac.parse().unwrap(),
                vnic_id: format!("ocid1.vnic.oc1.phx.{ip}"),
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
        };
        NodeState::new(
            vec![
                e(
                    macs::PRIMARY,
                    "198.51.100.10",
                    "198.51.100.0/24",
                    "198.51.100.1",
                    true,
                ),
                e(
                    macs::SINGLE_VF,
                    "198.51.100.20",
                    "198.51.100.0/24",
                    "198.51.100.1",
                    false,
                ),
                e(
                    macs::SHARED,
                    "203.0.113.30",
                    "203.0.113.0/25",
                    "203.0.113.1",
                    false,
                ),
            ],
            UNIX_EPOCH,
        )
        .write_atomic(&self.state_file())
        .unwrap();
    }

    fn conf(&self, version: &str, device: Value, imds_url: &str) -> Value {
        let mut c = json!({
            "cniVersion": version, "name": "sriov-vnic", "type": "host-device",
            "ipam": {"type": "vnic", "stateFile": self.state_file(),
                     "sysfsRoot": self.sysfs.root(), "imdsUrl": imds_url}
        });
        c.as_object_mut()
            .unwrap()
            .extend(device.as_object().unwrap().clone());
        c
    }

    /// The binary as host-device delegates to it: from the node's
    /// namespace, with the pod's `CNI_NETNS` and `CNI_IFNAME`.
    fn call(&self, command: &str, ifname: &str, stdin: &Value) -> CniOutput {
        CniCall::new(env!("CARGO_BIN_EXE_vnic"), command)
            .container_id("ctr-vnic-moved")
            .netns(self.pod.path())
            .ifname(ifname)
            .cni_path("/opt/cni/bin")
            .stdin(serde_json::to_vec(stdin).unwrap())
            .run()
    }
}

/// Unreachable: the state-file path must never need IMDS.
const NO_IMDS: &str = "http://127.0.0.1:9";

#[rstest]
fn moved_device_matches_a_mac_only_state_entry(
    #[values("0.3.1", "0.4.0", "1.0.0", "1.1.0")] version: &str,
) {
    let m = Moved::new(macs::SHARED);
    m.write_mac_only_state();
    for device in [
        json!({"device": "ens5"}),
        json!({"kernelpath": "/sys/devices/pci0000:00/0000:00:05.0"}),
        json!({"pciBusID": "0000:00:05.0"}),
        json!({"runtimeConfig": {"deviceID": "0000:00:05.0"}}),
    ] {
        let out = m.call("ADD", "net1", &m.conf(version, device.clone(), NO_IMDS));
        let r = out.assert_ok();
        assert_eq!(r["cniVersion"], version);
        assert_eq!(r["ips"][0]["address"], "203.0.113.30/25", "{device}");
        assert_eq!(r["ips"][0]["gateway"], "203.0.113.1", "{device}");
    }
    // CHECK takes the same path.
    if version != "0.3.1" {
        let mut c = m.conf(version, json!({"device": "ens5"}), NO_IMDS);
        c["prevResult"] = json!({"cniVersion": version,
            "ips": [{"address": "203.0.113.30/25", "gateway": "203.0.113.1"}]});
        let out = m.call("CHECK", "net1", &c);
        assert!(out.status.success(), "{}", out.stdout);
    }
}

#[rstest]
fn imds_fallback_by_the_mac_read_in_the_pod(
    #[values("0.3.1", "0.4.0", "1.0.0", "1.1.0")] version: &str,
) {
    let m = Moved::new(macs::SHARED);
    let fake = FakeImds::start(json!([
        {"vnicId": "ocid1.vnic.oc1.phx.primary", "privateIp": "198.51.100.10",
         "macAddr": macs::PRIMARY.to_uppercase(), "virtualRouterIp": "198.51.100.1",
         "subnetCidrBlock": "198.51.100.0/24"},
        {"vnicId": "ocid1.vnic.oc1.phx.ens5", "privateIp": "198.51.100.35",
         "macAddr": macs::SHARED.to_uppercase(), "virtualRouterIp": "198.51.100.1",
         "subnetCidrBlock": "198.51.100.0/24"}
    ]))
    .unwrap();
    let out = m.call(
        "ADD",
        "net1",
        &m.conf(version, json!({"device": "ens5"}), &fake.url()),
    );
    let r = out.assert_ok();
    assert_eq!(r["ips"][0]["address"], "198.51.100.35/24");
    assert_eq!(r["ips"][0]["gateway"], "198.51.100.1");
    let log = fake.requests();
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].path, "/opc/v2/vnics/");
}

#[rstest]
fn moved_device_without_a_vnic_is_a_clear_error(
    #[values("0.3.1", "0.4.0", "1.0.0", "1.1.0")] version: &str,
) {
    const STRANGER: &str = "02:00:17:00:00:77";
    let m = Moved::new(STRANGER);
    m.write_mac_only_state();
    let fake = FakeImds::start(json!([
        {"vnicId": "ocid1.vnic.oc1.phx.primary", "privateIp": "198.51.100.10",
         "macAddr": macs::PRIMARY.to_uppercase(), "subnetCidrBlock": "198.51.100.0/24"}
    ]))
    .unwrap();
    let conf = m.conf(version, json!({"device": "ens5"}), &fake.url());
    let out = m.call("ADD", "net1", &conf);
    assert!(!out.status.success());
    assert_eq!(out.json["code"], 999, "{}", out.stdout);
    assert_eq!(out.json["cniVersion"], version);
    assert_eq!(
        out.json["msg"],
        format!("no VNIC for device (name ens5, MAC {STRANGER} (of net1 in the pod), PCI -)")
    );
    assert_eq!(
        fake.request_count(),
        1,
        "state file has no match: IMDS asked"
    );
    // CNI_IFNAME not in the pod: the error says where it looked.
    let out = m.call("ADD", "net2", &conf);
    assert_eq!(out.json["code"], 999, "{}", out.stdout);
    let want = format!(
        "device (name ens5, MAC -, PCI -) is not in the state file and its MAC is unknown \
         (not on the node, and no \"net2\" with a MAC in {}), so IMDS cannot be asked",
        m.pod.path().display()
    );
    assert_eq!(out.json["msg"], want);
}

#[test]
fn add_latency_reading_the_mac_in_the_pod() {
    let m = Moved::new(macs::SHARED);
    m.write_mac_only_state();
    let stdin = m.conf("1.0.0", json!({"device": "ens5"}), NO_IMDS);
    m.call("ADD", "net1", &stdin).assert_ok(); // warm the page cache
    let mut samples: Vec<Duration> = (0..50)
        .map(|_| {
            let t0 = Instant::now();
            m.call("ADD", "net1", &stdin).assert_ok();
            t0.elapsed()
        })
        .collect();
    samples.sort();
    let p50 = samples[samples.len() / 2];
    let p90 = samples[samples.len() * 9 / 10];
    eprintln!(
        "vnic ADD (state file by MAC from the pod netns, incl. fork/exec): p50 {p50:?} p90 {p90:?}"
    );
    // Generous bound for debug builds on a loaded 2-core machine.
    assert!(p50 < Duration::from_millis(50), "p50 {p50:?}");
}
