//! Events in both API groups; cluster-scoped pools and nodes, leases and eviction.

use plexus_testkit::kube::FakeApiServer;
use serde_json::json;

use crate::support::{call, get, seeded};

#[test]
fn events_in_both_groups() {
    let srv = seeded();
    let ev = json!({"metadata":{"name":"p1.1"},"involvedObject":{"kind":"Pod","namespace":"default","name":"p1","uid":"u"},"reason":"AddedInterface","message":"Add net1 [198.51.100.5/24] from default/sriov-net","type":"Normal"});
    let r = call(
        &srv,
        "POST",
        "/api/v1/namespaces/default/events",
        Some("application/json"),
        &ev.to_string(),
        None,
    );
    assert_eq!(r.code, 201);
    let bad = json!({"metadata":{"name":"p1.2"},"involvedObject":{"namespace":"other"}});
    assert_eq!(
        call(
            &srv,
            "POST",
            "/api/v1/namespaces/default/events",
            Some("application/json"),
            &bad.to_string(),
            None
        )
        .code,
        422
    );
    let ev2 = json!({"apiVersion":"events.k8s.io/v1","kind":"Event","metadata":{"name":"p1.3"},"regarding":{"kind":"Pod","name":"p1"},"reason":"AddedInterface","note":"x","type":"Normal","action":"Add"});
    assert_eq!(
        call(
            &srv,
            "POST",
            "/apis/events.k8s.io/v1/namespaces/default/events",
            Some("application/json"),
            &ev2.to_string(),
            None
        )
        .code,
        201
    );
    assert_eq!(
        srv.objects_under("/api/v1/namespaces/default/events/")
            .len(),
        1
    );
}

#[test]
fn cluster_scoped_nodes_pools_leases_and_eviction() {
    let srv = FakeApiServer::start().unwrap();
    let json = Some("application/json");
    // A cluster-scoped CRD: no namespace in the path or the stored object,
    // generation 1 on create, bumped by spec changes only.
    let pool = json!({"apiVersion": "plexus.io/v1alpha1", "kind": "VnicPool",
        "metadata": {"name": "pods"}, "spec": {"vnicsPerNode": 1}});
    let r = call(
        &srv,
        "POST",
        "/apis/plexus.io/v1alpha1/vnicpools",
        json,
        &pool.to_string(),
        None,
    );
    assert_eq!(r.code, 201, "{}", r.text);
    assert_eq!(r.body["metadata"]["generation"], 1);
    assert!(r.body["metadata"].get("namespace").is_none());
    let path = "/apis/plexus.io/v1alpha1/vnicpools/pods";
    let status = json!({"status": {"nodes": []}});
    let r = call(
        &srv,
        "PATCH",
        &format!("{path}/status"),
        Some("application/merge-patch+json"),
        &status.to_string(),
        None,
    );
    assert_eq!(
        (r.code, r.body["metadata"]["generation"].as_u64()),
        (200, Some(1))
    );
    let r = call(
        &srv,
        "PATCH",
        path,
        Some("application/merge-patch+json"),
        r#"{"spec":{"vnicsPerNode":2}}"#,
        None,
    );
    assert_eq!(r.body["metadata"]["generation"], 2);
    assert_eq!(
        r.body["status"],
        json!({"nodes": []}),
        "main resource keeps status"
    );
    // Strategic merge is refused for a CRD.
    let r = call(
        &srv,
        "PATCH",
        path,
        Some("application/strategic-merge-patch+json"),
        "{}",
        None,
    );
    assert_eq!(r.code, 415);
    let list = get(&srv, "/apis/plexus.io/v1alpha1/vnicpools");
    assert_eq!(list.body["kind"], "VnicPoolList");
    assert_eq!(list.body["items"].as_array().unwrap().len(), 1);

    // Nodes: cordon through a strategic merge patch.
    let node = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}});
    assert_eq!(
        call(&srv, "POST", "/api/v1/nodes", json, &node.to_string(), None).code,
        201
    );
    let r = call(
        &srv,
        "PATCH",
        "/api/v1/nodes/n1",
        Some("application/strategic-merge-patch+json"),
        r#"{"spec":{"unschedulable":true}}"#,
        None,
    );
    assert_eq!(r.body["spec"]["unschedulable"], true);
    assert_eq!(
        get(&srv, "/api/v1/nodes").body["items"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // Leases: optimistic locking on resourceVersion.
    let lease = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "plexus-operator", "namespace": "kube-system"}, "spec": {"holderIdentity": "a"}});
    let lp = "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases";
    let r = call(&srv, "POST", lp, json, &lease.to_string(), None);
    assert_eq!(r.code, 201);
    let mut stale = r.body.clone();
    stale["metadata"]["resourceVersion"] = json!("1");
    let r = call(
        &srv,
        "PUT",
        &format!("{lp}/plexus-operator"),
        json,
        &stale.to_string(),
        None,
    );
    assert_eq!((r.code, r.body["reason"].as_str()), (409, Some("Conflict")));

    // Eviction deletes the pod with a 201 Success Status; 404 afterwards.
    srv.put_pod(
        json!({"metadata": {"name": "p", "namespace": "default"}, "spec": {"nodeName": "n1"}}),
    )
    .unwrap();
    let ev = json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "p", "namespace": "default"}});
    let ep = "/api/v1/namespaces/default/pods/p/eviction";
    let r = call(&srv, "POST", ep, json, &ev.to_string(), None);
    assert_eq!((r.code, r.body["status"].as_str()), (201, Some("Success")));
    assert_eq!(
        call(&srv, "POST", ep, json, &ev.to_string(), None).code,
        404
    );
    srv.forbid("POST", "/api/v1/namespaces/default/pods/p/eviction");
    let r = call(&srv, "POST", ep, json, &ev.to_string(), None);
    assert_eq!(r.code, 403);
}
