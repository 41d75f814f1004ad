//! Network selection: isolation, default routes, cluster/default/auxiliary networks, readiness.

use plexus::handlers;
use plexus_cni::Command;
use plexus_netattach::testing::Call as Api;
use rstest::rstest;
use serde_json::{json, Value};

use crate::common::*;
use crate::support::{nad_conf, s};

#[rstest]
fn namespace_isolation_blocks_before_any_request(
    #[values("0.3.1", "0.4.0", "1.0.0", "1.1.0")] version: &str,
) {
    let h = Harness::new();
    h.add_pod(Some("private/sriov"));
    h.add_nad("private", "sriov", nad_conf(version, "hd-a", json!({})));
    h.add_nad("shared", "ok", nad_conf(version, "hd-a", json!({})));
    let (stdin, conf) = h.conf(
        version,
        json!({"namespaceIsolation": true, "globalNamespaces": "shared"}),
    );
    let e = handlers::add(&args(Command::Add, "c1", &stdin), &conf, &h.deps()).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("private/sriov") && msg.contains("namespace default"),
        "{msg}"
    );
    assert_eq!(e.to_cni().code, 7);
    assert_eq!(h.kube.api.calls(), vec![Api::GetPod]);
    assert!(h.exec.calls().is_empty());
    assert!(h.cache.entries().is_empty());

    h.add_pod(Some("shared/ok"));
    handlers::add(&args(Command::Add, "c2", &stdin), &conf, &h.deps()).unwrap();
}

#[rstest]
fn default_route_moves_to_the_requested_network(
    #[values("0.3.1", "0.4.0", "1.0.0", "1.1.0")] version: &str,
) {
    let h = Harness::new();
    h.add_pod(Some(
        r#"[{"name":"net-a","default-route":["198.51.100.1"]}]"#,
    ));
    h.add_nad("default", "net-a", nad_conf(version, "hd-a", json!({})));
    let (stdin, conf) = h.conf(version, json!({}));
    let result = handlers::add(&args(Command::Add, "c1", &stdin), &conf, &h.deps()).unwrap();
    assert_eq!(
        *h.routes.ops.lock().unwrap(),
        vec![
            "del v4 eth0",
            "del v6 eth0",
            "del v6 net1",
            "add 198.51.100.1 net1"
        ]
    );
    assert!(result
        .get("routes")
        .and_then(Value::as_array)
        .is_none_or(|r| r.iter().all(|x| x["dst"] != "0.0.0.0/0")));
    let status: Value = serde_json::from_str(&h.kube.api.patches()[0].status_json).unwrap();
    assert!(status[0].get("gateway").is_none());
    assert_eq!(status[1]["gateway"], json!(["198.51.100.1"]));
}

#[test]
fn default_network_annotation_overrides_the_cluster_network() {
    let h = Harness::new();
    h.kube.api.add_pod(
        POD_NS,
        POD_NAME,
        POD_UID,
        &[("v1.multus-cni.io/default-network", "calico")],
    );
    h.add_nad(
        "kube-system",
        "calico",
        nad_conf("1.0.0", "calico-cni", json!({})),
    );
    let (stdin, conf) = h.conf("1.0.0", json!({}));
    handlers::add(&args(Command::Add, "c1", &stdin), &conf, &h.deps()).unwrap();
    assert_eq!(h.exec.summary(), vec![s("ADD", "calico-cni", "eth0")]);
    let status: Value = serde_json::from_str(&h.kube.api.patches()[0].status_json).unwrap();
    assert_eq!(status[0]["name"], "kube-system/calico");
}

#[test]
fn cluster_network_by_name_and_default_networks() {
    let h = Harness::new();
    h.add_pod(None);
    std::fs::create_dir_all(h.conf_dir()).unwrap();
    std::fs::write(
        h.conf_dir().join("10-flannel.conflist"),
        json!({"cniVersion":"1.0.0","name":"flannel","plugins":[{"type":"flannel"},{"type":"portmap","capabilities":{"portMappings":true}}]})
            .to_string(),
    )
    .unwrap();
    h.add_nad(
        "kube-system",
        "mgmt",
        nad_conf("1.0.0", "mgmt-cni", json!({})),
    );
    let (stdin, conf) = h.conf(
        "1.0.0",
        json!({"delegates": [], "clusterNetwork": "flannel", "defaultNetworks": ["mgmt"],
               "runtimeConfig": {"portMappings": [{"hostPort": 1, "containerPort": 2}]}}),
    );
    handlers::add(&args(Command::Add, "c1", &stdin), &conf, &h.deps()).unwrap();
    assert_eq!(
        h.exec.summary(),
        vec![
            s("ADD", "flannel", "eth0"),
            s("ADD", "portmap", "eth0"),
            s("ADD", "mgmt-cni", "net1")
        ]
    );
    let calls = h.exec.calls();
    // Chained plugins get the previous result and only their capabilities.
    assert_eq!(
        calls[1].stdin["prevResult"]["interfaces"][0]["name"],
        "eth0"
    );
    assert_eq!(
        calls[1].stdin["runtimeConfig"]["portMappings"][0]["hostPort"],
        1
    );
    assert!(calls[0].stdin.get("runtimeConfig").is_none());
    // clusterNetwork NAD lookup (404) came first, as in Multus.
    assert_eq!(
        h.kube.api.calls()[..3],
        [Api::GetPod, Api::GetNad, Api::GetNad]
    );
}

#[test]
fn several_nads_are_fetched_side_by_side_once_each() {
    let h = Harness::new();
    h.add_pod(Some("sriov-a, other/sriov-b@ext0, sriov-a@net9"));
    h.add_nad("default", "sriov-a", nad_conf("1.0.0", "hd-a", json!({})));
    h.add_nad("other", "sriov-b", nad_conf("1.0.0", "hd-b", json!({})));
    // No events: the NAD GETs are the only requests that can overlap.
    let (stdin, conf) = h.conf("1.0.0", json!({"events": false}));
    h.kube.api.set_latency(std::time::Duration::from_millis(50));
    let a = args(Command::Add, "c1", &stdin);

    handlers::add(&a, &conf, &h.deps()).unwrap();

    let calls = h.kube.api.calls();
    assert_eq!(calls[..3], [Api::GetPod, Api::GetNad, Api::GetNad]);
    assert_eq!(
        calls.iter().filter(|c| **c == Api::GetNad).count(),
        2,
        "one GET per distinct NAD"
    );
    assert_eq!(h.kube.api.max_in_flight(), 2, "the NAD GETs overlapped");
    assert_eq!(h.exec.summary().len(), 4);
}

#[rstest]
fn auxiliary_chain_runs_after_the_cluster_network(#[values("0.4.0", "1.1.0")] version: &str) {
    let h = Harness::new();
    h.add_pod(None);
    let aux = h.conf_dir().join("extras");
    std::fs::create_dir_all(&aux).unwrap();
    std::fs::write(
        aux.join("10-tuning.conf"),
        json!({"type": "tuning"}).to_string(),
    )
    .unwrap();
    let (stdin, conf) = h.conf(version, json!({"auxiliaryCNIChainName": "extras"}));
    let r = handlers::add(&args(Command::Add, "c1", &stdin), &conf, &h.deps()).unwrap();
    assert_eq!(r["interfaces"][0]["name"], "eth0");
    assert_eq!(
        h.exec.summary(),
        vec![s("ADD", "cluster-cni", "eth0"), s("ADD", "tuning", "eth0")]
    );
    h.exec.clear();
    handlers::del(&args(Command::Del, "c1", &stdin), &conf, &h.deps()).unwrap();
    assert_eq!(
        h.exec.summary(),
        vec![s("DEL", "tuning", "eth0"), s("DEL", "cluster-cni", "eth0")]
    );
}

#[rstest]
fn add_waits_for_the_readiness_indicator(#[values("0.3.1", "1.1.0")] version: &str) {
    let h = Harness::new();
    h.add_pod(None);
    let ready = h.dir.path().join("flannel-ready");
    let (stdin, conf) = h.conf(version, json!({"readinessindicatorfile": ready}));
    let e = handlers::add(&args(Command::Add, "c1", &stdin), &conf, &h.deps()).unwrap_err();
    assert_eq!(e.to_cni().code, 11);
    assert!(e.to_string().contains("flannel-ready"), "{e}");
    assert!(h.exec.calls().is_empty() && h.kube.api.calls().is_empty());
    std::fs::write(&ready, b"").unwrap();
    handlers::add(&args(Command::Add, "c1", &stdin), &conf, &h.deps()).unwrap();
    // DEL never waits for readiness.
    std::fs::remove_file(&ready).unwrap();
    handlers::del(&args(Command::Del, "c1", &stdin), &conf, &h.deps()).unwrap();
}
