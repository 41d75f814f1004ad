//! Handler tests with fakes: delegate order and interface names, capability
//! filtering, CNI_ARGS, rollback, DEL from the cache without the API, CHECK
//! of every attachment, GC, namespace isolation, default routes, device IDs,
//! and the bad-input catalogue. Every test runs across cniVersion 0.3.1,
//! 0.4.0, 1.0.0 and 1.1.0.

mod common;

use common::*;
use plexus::config::PlexusConf;
use plexus::handlers;
use plexus_cni::{CniError, Command};
use plexus_netattach::testing::Call as Api;
use plexus_netattach::ApiError;
use rstest::rstest;
use serde_json::{json, Value};

fn nad_conf(version: &str, plugin: &str, extra: Value) -> Value {
    let mut v = json!({"cniVersion": version, "type": plugin});
    if let (Some(m), Some(e)) = (v.as_object_mut(), extra.as_object()) {
        for (k, val) in e {
            m.insert(k.clone(), val.clone());
        }
    }
    v
}

fn s(a: &str, b: &str, c: &str) -> (String, String, String) {
    (a.into(), b.into(), c.into())
}

/// A pod with the NAD `net-a` (delegate `hd-a`) attached as container `c1`.
fn added_with_net_a(version: &str) -> (Harness, Value, PlexusConf) {
    let h = Harness::new();
    h.add_pod(Some("net-a"));
    h.add_nad("default", "net-a", nad_conf(version, "hd-a", json!({})));
    let (stdin, conf) = h.conf(version, json!({}));
    if let Err(e) = handlers::add(&args(Command::Add, "c1", &stdin), &conf, &h.deps()) {
        panic!("ADD: {e}");
    }
    (h, stdin, conf)
}

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
fn del_replays_the_cache_without_the_api(
    #[values("0.3.1", "0.4.0", "1.0.0", "1.1.0")] version: &str,
) {
    let (h, stdin, conf) = added_with_net_a(version);
    h.exec.clear();
    let api_calls = h.kube.api.calls().len();
    let connects = *h.kube.connects.lock().unwrap();
    // The pod and NAD are gone and the API is down: DEL must not care.
    h.kube.api.remove_pod(POD_NS, POD_NAME);
    h.kube.api.fail_next(
        Api::GetPod,
        ApiError::Transport("connection refused".into()),
    );

    handlers::del(&args(Command::Del, "c1", &stdin), &conf, &h.deps()).unwrap();

    assert_eq!(
        h.exec.summary(),
        vec![s("DEL", "hd-a", "net1"), s("DEL", "cluster-cni", "eth0")]
    );
    assert_eq!(h.kube.api.calls().len(), api_calls);
    assert_eq!(*h.kube.connects.lock().unwrap(), connects);
    let calls = h.exec.calls();
    // prevResult only for delegates at >= 0.4.0, as libcni.
    assert_eq!(
        calls[0].stdin.get("prevResult").is_some(),
        version != "0.3.1"
    );
    if version != "0.3.1" {
        assert_eq!(
            calls[0].stdin["prevResult"]["interfaces"][0]["name"],
            "net1"
        );
    }
    // The netns of the test does not exist: delegates get an empty one.
    assert_eq!(calls[0].netns, "");
    assert!(h.cache.entries().is_empty());
    // A second DEL (containerd's RemovePodSandbox) succeeds too.
    handlers::del(&args(Command::Del, "c1", &stdin), &conf, &h.deps()).unwrap();
}

#[rstest]
fn del_without_cache_deletes_the_config_cluster_network(
    #[values("0.3.1", "0.4.0", "1.0.0", "1.1.0")] version: &str,
) {
    let h = Harness::new();
    let (stdin, conf) = h.conf(version, json!({}));
    handlers::del(&args(Command::Del, "never-added", &stdin), &conf, &h.deps()).unwrap();
    assert_eq!(h.exec.summary(), vec![s("DEL", "cluster-cni", "eth0")]);
    assert!(h.kube.api.calls().is_empty());
    // A NAD-only cluster network cannot be resolved without the API: success.
    let h = Harness::new();
    let (stdin, conf) = h.conf(version, json!({"clusterNetwork": "kube-system/flannel"}));
    handlers::del(&args(Command::Del, "c9", &stdin), &conf, &h.deps()).unwrap();
    assert!(h.exec.calls().is_empty());
}

#[rstest]
fn del_goes_on_past_failures_and_reports_the_real_ones(
    #[values("0.3.1", "0.4.0", "1.0.0", "1.1.0")] version: &str,
) {
    let h = Harness::new();
    h.add_pod(Some("net-a,net-b"));
    h.add_nad("default", "net-a", nad_conf(version, "hd-a", json!({})));
    h.add_nad("default", "net-b", nad_conf(version, "hd-b", json!({})));
    let (stdin, conf) = h.conf(version, json!({}));
    handlers::add(&args(Command::Add, "c1", &stdin), &conf, &h.deps()).unwrap();
    h.exec.clear();
    // Code 3 is the spec's "nothing to clean up": not a failure.
    h.exec.fail(
        "hd-b",
        "DEL",
        CniError::new(
            CniError::UNKNOWN_CONTAINER,
            "failed to find \"net2\": Link not found",
            "",
        ),
    );
    h.exec.fail("hd-a", "DEL", CniError::generic("EBUSY"));
    let err = handlers::del(&args(Command::Del, "c1", &stdin), &conf, &h.deps()).unwrap_err();
    assert_eq!(h.exec.calls().len(), 3, "every delegate was tried");
    let msg = err.to_string();
    assert!(
        msg.contains("EBUSY") && !msg.contains("Link not found"),
        "{msg}"
    );
    // A real failure keeps the record the retried DEL needs (unlike Multus'
    // default, see docs/plexus.md).
    assert_eq!(h.cache.entries().len(), 1);
}

#[rstest]
fn del_judges_gone_by_code_not_by_message(
    #[values("0.3.1", "0.4.0", "1.0.0", "1.1.0")] version: &str,
) {
    let (h, stdin, conf) = added_with_net_a(version);
    // A third-party delegate's real failure that happens to say "not found"
    // (or an exec ENOENT) must not pass as "already gone".
    h.exec.fail(
        "hd-a",
        "DEL",
        CniError::generic("failed to release VF: no such file or directory (not found)"),
    );
    let err = handlers::del(&args(Command::Del, "c1", &stdin), &conf, &h.deps()).unwrap_err();
    assert!(err.to_string().contains("failed to release VF"), "{err}");
    assert_eq!(h.cache.entries().len(), 1, "the record DEL needs is kept");
    // A delegate binary gone missing (exec ENOENT) is no "already gone".
    h.exec.clear_failures();
    h.exec.remove("hd-a");
    assert!(handlers::del(&args(Command::Del, "c1", &stdin), &conf, &h.deps()).is_err());
    assert_eq!(h.cache.entries().len(), 1);
    // Once the delegate recovers, the retried DEL replays the same record.
    h.exec.clear();
    h.exec.clear_failures();
    handlers::del(&args(Command::Del, "c1", &stdin), &conf, &h.deps()).unwrap();
    assert_eq!(
        h.exec.summary(),
        vec![s("DEL", "hd-a", "net1"), s("DEL", "cluster-cni", "eth0")]
    );
    assert!(h.cache.entries().is_empty());
}

#[rstest]
fn retry_delete_on_error_keeps_the_entry(#[values("0.3.1", "1.1.0")] version: &str) {
    let h = Harness::new();
    h.add_pod(None);
    let (stdin, conf) = h.conf(version, json!({"retryDeleteOnError": true}));
    handlers::add(&args(Command::Add, "c1", &stdin), &conf, &h.deps()).unwrap();
    h.exec
        .fail("cluster-cni", "DEL", CniError::generic("EBUSY"));
    assert!(handlers::del(&args(Command::Del, "c1", &stdin), &conf, &h.deps()).is_err());
    assert_eq!(h.cache.entries().len(), 1);
}

#[rstest]
fn check_checks_every_attachment(#[values("0.4.0", "1.0.0", "1.1.0")] version: &str) {
    let (h, stdin, conf) = added_with_net_a(version);
    h.exec.clear();
    handlers::check(&args(Command::Check, "c1", &stdin), &conf, &h.deps()).unwrap();
    assert_eq!(
        h.exec.summary(),
        vec![
            s("CHECK", "cluster-cni", "eth0"),
            s("CHECK", "hd-a", "net1")
        ]
    );
    assert_eq!(
        h.exec.calls()[1].stdin["prevResult"]["interfaces"][0]["name"],
        "net1"
    );
    h.exec.fail(
        "hd-a",
        "CHECK",
        CniError::generic("address 198.51.100.9 missing"),
    );
    let e = handlers::check(&args(Command::Check, "c1", &stdin), &conf, &h.deps()).unwrap_err();
    assert!(e.to_string().contains("default/net-a"), "{e}");
    let e = handlers::check(&args(Command::Check, "other", &stdin), &conf, &h.deps()).unwrap_err();
    assert_eq!(e.to_cni().code, 3);
}

#[test]
fn check_skips_delegates_below_0_4_0() {
    let h = Harness::new();
    h.add_pod(Some("net-a"));
    h.add_nad("default", "net-a", nad_conf("0.3.1", "hd-a", json!({})));
    let (stdin, conf) = h.conf("1.0.0", json!({}));
    handlers::add(&args(Command::Add, "c1", &stdin), &conf, &h.deps()).unwrap();
    h.exec.clear();
    handlers::check(&args(Command::Check, "c1", &stdin), &conf, &h.deps()).unwrap();
    assert_eq!(h.exec.summary(), vec![s("CHECK", "cluster-cni", "eth0")]);
}

#[rstest]
fn gc_removes_unlisted_attachments_and_forwards_gc(#[values("1.1.0")] version: &str) {
    let (h, stdin, conf) = added_with_net_a(version);
    handlers::add(&args(Command::Add, "c2", &stdin), &conf, &h.deps()).unwrap();
    h.exec.clear();
    let mut gc_stdin = stdin.clone();
    gc_stdin["cni.dev/valid-attachments"] = json!([{"containerID": "c1", "ifname": "eth0"}]);
    handlers::gc(&args(Command::Gc, "", &gc_stdin), &conf, &h.deps()).unwrap();
    let summary = h.exec.summary();
    assert_eq!(
        summary,
        vec![
            s("DEL", "hd-a", "net1"),
            s("DEL", "cluster-cni", "eth0"),
            s("GC", "cluster-cni", ""),
            s("GC", "hd-a", ""),
        ]
    );
    let calls = h.exec.calls();
    assert_eq!(
        calls[3].stdin["cni.dev/valid-attachments"],
        json!([{"containerID": "c1", "ifname": "net1"}])
    );
    assert_eq!(
        calls[3].stdin["cni.dev/attachments"],
        calls[3].stdin["cni.dev/valid-attachments"]
    );
    let left: Vec<_> = h
        .cache
        .entries()
        .into_iter()
        .map(|e| e.container_id)
        .collect();
    assert_eq!(left, vec!["c1"]);
}

#[rstest]
fn status_reports_readiness_and_delegate_status(#[values("1.1.0")] version: &str) {
    let h = Harness::new();
    let ready = h.dir.path().join("ready");
    let (stdin, conf) = h.conf(version, json!({"readinessindicatorfile": ready}));
    let e = handlers::status(&args(Command::Status, "", &stdin), &conf, &h.deps()).unwrap_err();
    assert_eq!(e.to_cni().code, 50);
    std::fs::write(&ready, b"").unwrap();
    handlers::status(&args(Command::Status, "", &stdin), &conf, &h.deps()).unwrap();
    assert_eq!(h.exec.summary(), vec![s("STATUS", "cluster-cni", "")]);
    h.exec
        .fail("cluster-cni", "STATUS", CniError::new(51, "degraded", ""));
    let e = handlers::status(&args(Command::Status, "", &stdin), &conf, &h.deps()).unwrap_err();
    assert_eq!(e.to_cni().code, 51);
}

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

// ---- bad-input catalogue ----

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

/// Golden: a v1 cache file written by an earlier plexus must still replay.
#[test]
fn golden_cache_v1_replays_on_del() {
    let h = Harness::new();
    let cache_dir = h.dir.path().join("cache");
    std::fs::create_dir_all(&cache_dir).unwrap();
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/cache-v1.json"),
        cache_dir.join("3def4cdd07b3-eth0.json"),
    )
    .unwrap();
    let store = plexus::cache::FsCacheStore::new(&cache_dir);
    let deps = plexus::handlers::Deps {
        cache: &store,
        ..h.deps()
    };
    let (stdin, conf) = h.conf("1.0.0", json!({}));
    handlers::check(&args(Command::Check, "3def4cdd07b3", &stdin), &conf, &deps).unwrap();
    // 0.3.1 cluster network: no CHECK (libcni refuses it); net1 checked.
    assert_eq!(h.exec.summary(), vec![s("CHECK", "host-device", "net1")]);
    h.exec.clear();
    handlers::del(&args(Command::Del, "3def4cdd07b3", &stdin), &conf, &deps).unwrap();
    assert_eq!(
        h.exec.summary(),
        vec![
            s("DEL", "host-device", "net1"),
            s("DEL", "portmap", "eth0"),
            s("DEL", "flannel", "eth0")
        ]
    );
    let calls = h.exec.calls();
    assert_eq!(calls[0].stdin["pciBusID"], "0000:00:04.0");
    assert_eq!(
        calls[0].stdin["prevResult"]["ips"][0]["address"],
        "203.0.113.93/24"
    );
    assert!(
        calls[1].stdin.get("prevResult").is_none(),
        "0.3.1: no prevResult on DEL"
    );
    assert_eq!(
        calls[1].stdin["runtimeConfig"]["portMappings"][0]["hostPort"],
        8080
    );
    assert!(std::fs::read_dir(&cache_dir).unwrap().next().is_none());
}

/// The calls with the status PATCH moved before the events: ADD sends the
/// PATCH and the events concurrently, so their relative order is free; the
/// reads before them keep theirs.
fn patch_before_events(mut calls: Vec<Api>) -> Vec<Api> {
    if let Some(i) = calls.iter().position(|c| *c == Api::PatchNetworkStatus) {
        let patch = calls.remove(i);
        let first_event = calls
            .iter()
            .position(|c| *c == Api::CreateEvent)
            .unwrap_or(i);
        calls.insert(first_event.min(i), patch);
    }
    calls
}
