//! The opt-in switch of paravirtualized nodes to VFIO, and a failed switch.

use std::time::Duration;

use plexus_oci::model::NetworkType;
use plexus_operator::crd::NodePhase;
use serde_json::json;

use crate::support::{all_phase, instance, Harness};

#[test]
fn switches_paravirtualized_nodes_to_vfio_one_at_a_time() {
    let h = Harness::new(&[
        ("a", NetworkType::Paravirtualized),
        ("b", NetworkType::Paravirtualized),
    ]);
    h.pool(1, false);
    let op = h.operator(Duration::from_secs(30));
    op.reconcile_all().unwrap();
    assert!(all_phase(&h.status(), 2, NodePhase::Paravirtualized));
    assert!(
        h.secondaries("a").is_empty(),
        "no VNICs while paravirtualized"
    );

    h.kube.put_pod(json!({"metadata": {"name": "app", "namespace": "default"}, "spec": {"nodeName": "node-a"}})).unwrap();
    h.kube.put_pod(json!({"metadata": {"name": "agent", "namespace": "kube-system",
        "ownerReferences": [{"kind": "DaemonSet", "name": "plexus-agent", "apiVersion": "apps/v1", "uid": "x"}]},
        "spec": {"nodeName": "node-a"}})).unwrap();
    h.pool(1, true);
    op.reconcile_all().unwrap();
    let node_a = h.kube.get_object("/api/v1/nodes/node-a").unwrap();
    assert_eq!(node_a["spec"]["unschedulable"], true, "cordoned");
    let node_b = h.kube.get_object("/api/v1/nodes/node-b").unwrap();
    assert!(
        node_b["spec"]["unschedulable"].is_null(),
        "one node at a time"
    );
    assert!(
        h.kube
            .get_object("/api/v1/namespaces/default/pods/app")
            .is_none(),
        "evicted"
    );
    assert!(
        h.kube
            .get_object("/api/v1/namespaces/kube-system/pods/agent")
            .is_some(),
        "DaemonSet pod stays"
    );

    h.advertise("node-a", 1);
    h.advertise("node-b", 1);
    h.run_until(&op, "both switched", |s| all_phase(s, 2, NodePhase::Ready));
    for n in ["a", "b"] {
        let (nt, state, reboots) = h.oci.instance_state(&instance(n)).unwrap();
        assert_eq!(
            (nt, state.as_str(), reboots),
            (NetworkType::Vfio, "RUNNING", 1)
        );
        let node = h
            .kube
            .get_object(&format!("/api/v1/nodes/node-{n}"))
            .unwrap();
        assert_eq!(node["spec"]["unschedulable"], false, "uncordoned");
        assert!(node["metadata"]["annotations"]["plexus.io/vfio-switch"].is_null());
    }
    let reasons: Vec<String> = h.events().into_iter().map(|e| e.1).collect();
    assert_eq!(
        reasons.iter().filter(|r| *r == "VfioSwitchDone").count(),
        2,
        "{reasons:?}"
    );
}

#[test]
fn a_failed_switch_halts_the_pool() {
    let h = Harness::new(&[
        ("a", NetworkType::Paravirtualized),
        ("b", NetworkType::Paravirtualized),
    ]);
    h.pool(1, true);
    h.oci.inject("PUT", "/instances", 409, 10);
    let op = h.operator(Duration::from_secs(30));
    for _ in 0..4 {
        op.reconcile_all().unwrap();
    }
    let st = h.node_status("node-a");
    assert_eq!(
        (st.phase, st.error.as_ref().unwrap().code.as_str()),
        (NodePhase::Failed, "IncorrectState")
    );
    let node_b = h.kube.get_object("/api/v1/nodes/node-b").unwrap();
    assert!(
        node_b["spec"]["unschedulable"].is_null(),
        "halted before node b"
    );
    assert!(h.events().iter().any(|e| e.1 == "VfioSwitchFailed"));
}
