//! The `vnic` binary with its built-in default IMDS URL
//! (`http://169.254.169.254`) against the fake IMDS bound at
//! 169.254.169.254:80 inside a throwaway network namespace. The host
//! namespace never gets that address. Needs root; fails (never skips)
//! without it.

#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::net::TcpListener;
use std::process::{Command, Stdio};

use plexus_netns::{run_in, NetNs};
use plexus_sysfs::testing::{macs, oci_vm_node};
use plexus_testkit::imds::FakeImds;
use plexus_testkit::net::{require_root, TestNs};
use serde_json::json;

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
