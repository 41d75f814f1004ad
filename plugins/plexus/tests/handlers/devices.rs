//! Device IDs from the kubelet and device-info files from the device plugin.

use plexus::handlers;
use plexus_cni::Command;
use plexus_netattach::testing::Call as Api;
use rstest::rstest;
use serde_json::{json, Value};

use crate::common::*;
use crate::support::nad_conf;

#[rstest]
fn device_ids_from_kubelet_are_injected(
    #[values("0.3.1", "0.4.0", "1.0.0", "1.1.0")] version: &str,
) {
    let h = Harness::new();
    h.add_pod(Some("vnic,vnic"));
    h.kube.api.add_nad(
        "default",
        "vnic",
        &nad_conf(
            version,
            "host-device",
            json!({"capabilities": {"deviceID": true}}),
        )
        .to_string(),
        Some("oracle.com/vnic"),
    );
    *h.devices.allocated.lock().unwrap() = vec![(
        "oracle.com/vnic".into(),
        vec!["0000:00:04.0".into(), "0000:00:05.0".into()],
    )];
    let (stdin, conf) = h.conf(version, json!({}));
    handlers::add(&args(Command::Add, "c1", &stdin), &conf, &h.deps()).unwrap();
    let calls = h.exec.calls();
    assert_eq!(calls[1].stdin["deviceID"], "0000:00:04.0");
    assert_eq!(calls[1].stdin["pciBusID"], "0000:00:04.0");
    assert_eq!(calls[1].stdin["runtimeConfig"]["deviceID"], "0000:00:04.0");
    assert_eq!(calls[2].stdin["pciBusID"], "0000:00:05.0");
    assert_eq!(
        *h.devices.calls.lock().unwrap(),
        1,
        "one kubelet query per ADD"
    );
    assert_eq!(
        h.kube
            .api
            .calls()
            .iter()
            .filter(|c| **c == Api::GetNad)
            .count(),
        1,
        "one GET per distinct NAD"
    );
    let status: Value = serde_json::from_str(&h.kube.api.patches()[0].status_json).unwrap();
    assert_eq!(
        status[1]["device-info"]["pci"]["pci-address"],
        "0000:00:04.0"
    );
    assert_eq!(
        status[2]["device-info"]["pci"]["pci-address"],
        "0000:00:05.0"
    );
}

#[test]
fn device_info_file_from_the_device_plugin_is_copied_and_reported() {
    let h = Harness::new();
    h.add_pod(Some("vnic"));
    h.kube.api.add_nad(
        "default",
        "vnic",
        &nad_conf("1.0.0", "host-device", json!({})).to_string(),
        Some("oracle.com/vnic"),
    );
    *h.devices.allocated.lock().unwrap() =
        vec![("oracle.com/vnic".into(), vec!["0000:00:04.0".into()])];
    let dp = h
        .dir
        .path()
        .join("devinfo/dp/oracle.com-vnic-0000:00:04.0-device.json");
    std::fs::create_dir_all(dp.parent().unwrap()).unwrap();
    std::fs::write(
        &dp,
        r#"{"type":"pci","version":"1.1.0","pci":{"pci-address":"0000:00:04.0","rdma-device":"mlx5_0"}}"#,
    )
    .unwrap();
    let (stdin, conf) = h.conf("1.0.0", json!({}));
    handlers::add(&args(Command::Add, "c1", &stdin), &conf, &h.deps()).unwrap();
    let cni_file = h.dir.path().join("devinfo/cni/default-vnic-c1_net1");
    assert!(cni_file.exists());
    let status: Value = serde_json::from_str(&h.kube.api.patches()[0].status_json).unwrap();
    assert_eq!(status[1]["device-info"]["type"], "pci");
    handlers::del(&args(Command::Del, "c1", &stdin), &conf, &h.deps()).unwrap();
    assert!(!cni_file.exists(), "DEL removes the CNI device-info file");
}
