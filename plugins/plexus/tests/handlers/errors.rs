//! The bad-input catalogue: annotations, NADs, delegates, the API down, UIDs, interface names.

use plexus::handlers;
use plexus_cni::Command;
use plexus_netattach::testing::Call as Api;
use plexus_netattach::ApiError;
use rstest::rstest;
use serde_json::json;

use crate::common::*;
use crate::support::{nad_conf, s};

#[rstest]
fn bad_annotation_json_is_quoted(#[values("0.3.1", "1.1.0")] version: &str) {
    let h = Harness::new();
    h.add_pod(Some(r#"[{"name":"net-a","ips":["not-an-ip"]}]"#));
    let (stdin, conf) = h.conf(version, json!({}));
    let e = handlers::add(&args(Command::Add, "c1", &stdin), &conf, &h.deps()).unwrap_err();
    assert!(e.to_string().contains("not-an-ip"), "{e}");
    assert_eq!(e.to_cni().code, 7);
    h.add_pod(Some(r#"[{"name":"net-a""#));
    let e = handlers::add(&args(Command::Add, "c1", &stdin), &conf, &h.deps()).unwrap_err();
    assert!(e.to_string().contains("k8s.v1.cni.cncf.io/networks"), "{e}");
    assert!(h.exec.calls().is_empty());
}

#[rstest]
fn unknown_nad_names_it(#[values("0.3.1", "1.1.0")] version: &str) {
    let h = Harness::new();
    h.add_pod(Some("missing-net"));
    let (stdin, conf) = h.conf(version, json!({}));
    let e = handlers::add(&args(Command::Add, "c1", &stdin), &conf, &h.deps()).unwrap_err();
    assert!(
        e.to_string()
            .contains("missing-net not found in namespace default"),
        "{e}"
    );
    assert!(h.exec.calls().is_empty() && h.cache.entries().is_empty());
}

#[rstest]
fn invalid_nad_config_names_it(#[values("0.3.1", "1.1.0")] version: &str) {
    let h = Harness::new();
    h.add_pod(Some("broken"));
    h.kube.api.add_nad("default", "broken", "{not json", None);
    let (stdin, conf) = h.conf(version, json!({}));
    let e = handlers::add(&args(Command::Add, "c1", &stdin), &conf, &h.deps()).unwrap_err();
    assert!(e.to_string().contains("default/broken"), "{e}");
    h.kube
        .api
        .add_nad("default", "broken", r#"{"cniVersion":"1.0.0"}"#, None);
    let e = handlers::add(&args(Command::Add, "c1", &stdin), &conf, &h.deps()).unwrap_err();
    assert!(e.to_string().contains("no \"type\""), "{e}");
}

#[rstest]
fn config_less_nad_uses_the_conf_dir_file(#[values("0.3.1", "1.1.0")] version: &str) {
    let h = Harness::new();
    h.add_pod(Some("from-file"));
    h.kube.api.add_nad("default", "from-file", "", None);
    std::fs::create_dir_all(h.conf_dir()).unwrap();
    std::fs::write(
        h.conf_dir().join("50-from-file.conf"),
        json!({"cniVersion": version, "name": "from-file", "type": "file-cni"}).to_string(),
    )
    .unwrap();
    let (stdin, conf) = h.conf(version, json!({}));
    handlers::add(&args(Command::Add, "c1", &stdin), &conf, &h.deps()).unwrap();
    assert_eq!(h.exec.summary()[1], s("ADD", "file-cni", "net1"));
}

#[rstest]
fn missing_delegate_binary_is_reported_and_rolled_back(#[values("0.3.1", "1.1.0")] version: &str) {
    let h = Harness::new();
    h.add_pod(Some("net-a"));
    h.add_nad(
        "default",
        "net-a",
        nad_conf(version, "not-installed", json!({})),
    );
    h.exec.remove("not-installed");
    let (stdin, conf) = h.conf(version, json!({}));
    let e = handlers::add(&args(Command::Add, "c1", &stdin), &conf, &h.deps()).unwrap_err();
    assert!(
        e.to_string()
            .contains("failed to find plugin \"not-installed\""),
        "{e}"
    );
    assert_eq!(
        h.exec.summary(),
        vec![
            s("ADD", "cluster-cni", "eth0"),
            s("DEL", "cluster-cni", "eth0")
        ]
    );
}

#[rstest]
fn api_down_on_add_leaves_nothing_behind(#[values("0.3.1", "1.1.0")] version: &str) {
    let h = Harness::new();
    h.add_pod(Some("net-a"));
    h.kube.api.fail_next(
        Api::GetPod,
        ApiError::Transport("connection refused".into()),
    );
    let (stdin, conf) = h.conf(version, json!({}));
    let e = handlers::add(&args(Command::Add, "c1", &stdin), &conf, &h.deps()).unwrap_err();
    assert_eq!(e.to_cni().code, 11);
    assert!(e.to_string().contains("connection refused"), "{e}");
    assert!(h.exec.calls().is_empty() && h.cache.entries().is_empty());

    // Down at PATCH time: every delegate is rolled back, no cache entry.
    let h = Harness::new();
    h.add_pod(Some("net-a"));
    h.add_nad("default", "net-a", nad_conf(version, "hd-a", json!({})));
    h.kube.api.fail_next(
        Api::PatchNetworkStatus,
        ApiError::Timeout("no answer".into()),
    );
    let e = handlers::add(&args(Command::Add, "c1", &stdin), &conf, &h.deps()).unwrap_err();
    assert!(e.to_string().contains("network-status"), "{e}");
    assert_eq!(
        h.exec.summary(),
        vec![
            s("ADD", "cluster-cni", "eth0"),
            s("ADD", "hd-a", "net1"),
            s("DEL", "hd-a", "net1"),
            s("DEL", "cluster-cni", "eth0")
        ]
    );
    assert!(h.cache.entries().is_empty());
}

#[test]
fn uid_mismatch_is_refused() {
    let h = Harness::new();
    h.kube.api.add_pod(POD_NS, POD_NAME, "another-uid", &[]);
    let (stdin, conf) = h.conf("1.0.0", json!({}));
    let e = handlers::add(&args(Command::Add, "c1", &stdin), &conf, &h.deps()).unwrap_err();
    assert!(e.to_string().contains("another-uid"), "{e}");
}

#[test]
fn duplicate_interface_names_are_refused() {
    let h = Harness::new();
    h.add_pod(Some("net-a@eth0"));
    h.add_nad("default", "net-a", nad_conf("1.0.0", "hd-a", json!({})));
    let (stdin, conf) = h.conf("1.0.0", json!({}));
    let e = handlers::add(&args(Command::Add, "c1", &stdin), &conf, &h.deps()).unwrap_err();
    assert!(e.to_string().contains("eth0"), "{e}");
    assert!(h.exec.calls().is_empty());
}
