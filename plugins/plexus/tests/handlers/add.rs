//! ADD: delegate order, annotations, events, capabilities, CNI_ARGS, rollback, result version.

use plexus::handlers;
use plexus_cni::{CniError, Command};
use plexus_netattach::testing::Call as Api;
use rstest::rstest;
use serde_json::{json, Value};

use crate::common::*;
use crate::support::{nad_conf, patch_before_events, s};

#[rstest]
fn add_attaches_cluster_then_annotation_networks(
    #[values("0.3.1", "0.4.0", "1.0.0", "1.1.0")] version: &str,
) {
    let h = Harness::new();
    h.add_pod(Some("sriov-a, other/sriov-b@ext0"));
    h.add_nad("default", "sriov-a", nad_conf(version, "hd-a", json!({})));
    h.add_nad("other", "sriov-b", nad_conf(version, "hd-b", json!({})));
    let (stdin, conf) = h.conf(version, json!({}));
    let a = args(Command::Add, "c1", &stdin);

    let result = handlers::add(&a, &conf, &h.deps()).unwrap();

    assert_eq!(
        h.exec.summary(),
        vec![
            s("ADD", "cluster-cni", "eth0"),
            s("ADD", "hd-a", "net1"),
            s("ADD", "hd-b", "ext0")
        ]
    );
    assert_eq!(
        patch_before_events(h.kube.api.calls()),
        vec![
            Api::GetPod,
            Api::GetNad,
            Api::GetNad,
            Api::PatchNetworkStatus,
            Api::CreateEvent,
            Api::CreateEvent,
            Api::CreateEvent
        ]
    );
    // The result is the cluster network's, in the caller's version.
    assert_eq!(result["cniVersion"], version);
    assert_eq!(result["interfaces"][0]["name"], "eth0");
    assert_eq!(result["ips"][0]["address"], address_for("eth0"));
    assert_eq!(
        result["ips"][0].get("version").is_some(),
        !version.starts_with('1')
    );

    let patches = h.kube.api.patches();
    assert_eq!(patches.len(), 1);
    assert_eq!(patches[0].uid, POD_UID);
    let status: Value = serde_json::from_str(&patches[0].status_json).unwrap();
    assert_eq!(status[0]["name"], "cluster");
    assert_eq!(status[0]["default"], true);
    assert_eq!(status[1]["name"], "default/sriov-a");
    assert_eq!(status[1]["interface"], "net1");
    assert_eq!(status[2]["name"], "other/sriov-b");
    assert_eq!(status[2]["interface"], "ext0");

    let events = h.kube.api.events();
    assert_eq!(
        events[1].1.message,
        format!("Add net1 [{}] from default/sriov-a", address_for("net1"))
    );

    let cache = h.cache.entries();
    assert_eq!(cache.len(), 1);
    let ifnames: Vec<_> = cache[0]
        .attachments
        .iter()
        .map(|a| a.ifname.as_str())
        .collect();
    assert_eq!(ifnames, vec!["eth0", "net1", "ext0"]);
    assert!(cache[0].attachments.iter().all(|a| a.result.is_some()));
}

#[rstest]
fn runtime_annotations_skip_the_pod_get(
    #[values("0.3.1", "0.4.0", "1.0.0", "1.1.0")] version: &str,
) {
    let h = Harness::new();
    h.add_pod(None);
    h.add_nad("default", "sriov-a", nad_conf(version, "hd-a", json!({})));
    let (stdin, conf) = h.conf(
        version,
        json!({"runtimeConfig": {"io.kubernetes.cri.pod-annotations": {
            "k8s.v1.cni.cncf.io/networks": "sriov-a"}}}),
    );
    handlers::add(&args(Command::Add, "c1", &stdin), &conf, &h.deps()).unwrap();
    assert_eq!(
        patch_before_events(h.kube.api.calls()),
        vec![
            Api::GetNad,
            Api::PatchNetworkStatus,
            Api::CreateEvent,
            Api::CreateEvent
        ]
    );
}

#[rstest]
fn events_can_be_disabled_and_no_kubeconfig_means_no_api(
    #[values("0.3.1", "0.4.0", "1.0.0", "1.1.0")] version: &str,
) {
    let h = Harness::new();
    h.add_pod(None);
    let (stdin, conf) = h.conf(version, json!({"events": false}));
    handlers::add(&args(Command::Add, "c1", &stdin), &conf, &h.deps()).unwrap();
    assert_eq!(
        patch_before_events(h.kube.api.calls()),
        vec![Api::GetPod, Api::PatchNetworkStatus]
    );

    let h = Harness::new();
    let (stdin, conf) = h.conf(version, json!({"kubeconfig": ""}));
    handlers::add(&args(Command::Add, "c1", &stdin), &conf, &h.deps()).unwrap();
    assert_eq!(*h.kube.connects.lock().unwrap(), 0);
}

#[rstest]
fn capabilities_and_cni_args_reach_only_declaring_delegates(
    #[values("0.3.1", "0.4.0", "1.0.0", "1.1.0")] version: &str,
) {
    let h = Harness::new();
    h.add_pod(Some(
        r#"[{"name":"with-caps","ips":["198.51.100.77/24"],"mac":"0a:58:00:00:00:77","cni-args":{"role":"data"}},
            {"name":"no-caps"}]"#,
    ));
    h.add_nad(
        "default",
        "with-caps",
        nad_conf(
            version,
            "hd-a",
            json!({"capabilities": {"ips": true, "mac": true}}),
        ),
    );
    h.add_nad("default", "no-caps", nad_conf(version, "hd-b", json!({})));
    let (stdin, conf) = h.conf(
        version,
        json!({"runtimeConfig": {"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]}}),
    );
    handlers::add(&args(Command::Add, "c1", &stdin), &conf, &h.deps()).unwrap();
    let calls = h.exec.calls();
    let a = &calls[1];
    assert_eq!(
        a.stdin["runtimeConfig"],
        json!({"ips": ["198.51.100.77/24"], "mac": "0a:58:00:00:00:77"})
    );
    assert_eq!(a.stdin["args"]["cni"]["role"], "data");
    assert_eq!(a.stdin["name"], "with-caps");
    assert_eq!(a.stdin["cniVersion"], version);
    assert!(a.cni_args.contains("IP=198.51.100.77/24"));
    assert!(a.cni_args.contains("MAC=0a:58:00:00:00:77"));
    assert!(a
        .cni_args
        .starts_with("IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=testpod;"));
    assert!(a.cni_args.contains(&format!("K8S_POD_UID={POD_UID}")));
    let b = &calls[2];
    assert!(b.stdin.get("runtimeConfig").is_none());
    assert!(!b.cni_args.contains("IP="));
    // The cluster delegate declared nothing either.
    assert!(calls[0].stdin.get("runtimeConfig").is_none());
}

#[rstest]
fn failure_rolls_back_earlier_networks_and_names_the_failing_one(
    #[values("0.3.1", "0.4.0", "1.0.0", "1.1.0")] version: &str,
) {
    let h = Harness::new();
    h.add_pod(Some("net-a,net-b"));
    h.add_nad("default", "net-a", nad_conf(version, "hd-a", json!({})));
    h.add_nad("default", "net-b", nad_conf(version, "hd-b", json!({})));
    h.exec.fail(
        "hd-b",
        "ADD",
        CniError::new(11, "device busy", "ens5 is in use"),
    );
    let (stdin, conf) = h.conf(version, json!({}));
    let err = handlers::add(&args(Command::Add, "c1", &stdin), &conf, &h.deps()).unwrap_err();
    let cni = err.to_cni();
    assert_eq!(cni.code, 11);
    assert_eq!(cni.details, "ens5 is in use");
    assert!(
        cni.msg.contains("\"default/net-b\" (net2): device busy"),
        "{}",
        cni.msg
    );
    assert_eq!(
        h.exec.summary(),
        vec![
            s("ADD", "cluster-cni", "eth0"),
            s("ADD", "hd-a", "net1"),
            s("ADD", "hd-b", "net2"),
            s("DEL", "hd-b", "net2"),
            s("DEL", "hd-a", "net1"),
            s("DEL", "cluster-cni", "eth0"),
        ]
    );
    assert!(h.cache.entries().is_empty(), "nothing left behind");
    assert!(h.kube.api.patches().is_empty());
}

#[rstest]
fn result_is_converted_to_the_callers_version(
    #[values("0.3.1", "0.4.0", "1.0.0", "1.1.0")] version: &str,
) {
    let h = Harness::new();
    h.add_pod(None);
    let (mut stdin, _) = h.conf(version, json!({}));
    stdin["delegates"][0]["cniVersion"] = json!("0.3.1");
    let conf = plexus::config::PlexusConf::parse(stdin.to_string().as_bytes()).unwrap();
    let r = handlers::add(&args(Command::Add, "c1", &stdin), &conf, &h.deps()).unwrap();
    assert_eq!(r["cniVersion"], version);
    assert_eq!(
        r["ips"][0].get("version").is_some(),
        !version.starts_with('1')
    );
}
