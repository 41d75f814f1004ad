//! Writes: create, PUT and DELETE preconditions, the PATCH content types, graceful deletion.

use plexus_testkit::kube::FakeApiServer;
use serde_json::json;

use crate::support::{call, get, seeded, NAD, POD};

#[test]
fn create_conflicts_and_put_resource_version_precondition() {
    let srv = FakeApiServer::start().unwrap();
    let coll = "/apis/k8s.cni.cncf.io/v1/namespaces/default/network-attachment-definitions";
    let body = r#"{"apiVersion":"k8s.cni.cncf.io/v1","kind":"NetworkAttachmentDefinition","metadata":{"name":"n"},"spec":{"config":"{}"}}"#;
    let created = call(&srv, "POST", coll, Some("application/json"), body, None);
    assert_eq!(created.code, 201);
    let rv = created.body["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_owned();
    let again = call(&srv, "POST", coll, Some("application/json"), body, None);
    assert_eq!(again.code, 409);
    assert_eq!(again.body["reason"], "AlreadyExists");
    assert_eq!(
        again.body["message"],
        r#"network-attachment-definitions.k8s.cni.cncf.io "n" already exists"#
    );

    let bad = call(
        &srv,
        "POST",
        coll,
        Some("application/json"),
        r#"{"metadata":{"name":"m"},"spec":{"config":5}}"#,
        None,
    );
    assert_eq!(bad.code, 422);
    assert_eq!(bad.body["reason"], "Invalid");
    assert_eq!(
        bad.body["message"],
        r#"NetworkAttachmentDefinition.k8s.cni.cncf.io "m" is invalid: spec.config: Invalid value: "integer": spec.config in body must be of type string: "integer""#
    );
    assert_eq!(bad.body["details"]["causes"][0]["field"], "spec.config");
    assert_eq!(
        bad.body["details"]["causes"][0]["reason"],
        "FieldValueTypeInvalid"
    );

    let item = format!("{coll}/n");
    let mut obj = created.body.clone();
    obj["spec"]["config"] = json!("{\"type\":\"x\"}");
    let ok = call(
        &srv,
        "PUT",
        &item,
        Some("application/json"),
        &obj.to_string(),
        None,
    );
    assert_eq!(ok.code, 200);
    assert_ne!(
        ok.body["metadata"]["resourceVersion"],
        json!(rv),
        "every write bumps resourceVersion"
    );
    assert_eq!(ok.body["metadata"]["uid"], created.body["metadata"]["uid"]);
    // `obj` still carries the resourceVersion from before that update.
    let stale = call(
        &srv,
        "PUT",
        &item,
        Some("application/json"),
        &obj.to_string(),
        None,
    );
    assert_eq!(stale.code, 409);
    assert_eq!(
        stale.body["message"],
        r#"Operation cannot be fulfilled on network-attachment-definitions.k8s.cni.cncf.io "n": the object has been modified; please apply your changes to the latest version and try again"#
    );
    obj["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("resourceVersion");
    let unconditional = call(
        &srv,
        "PUT",
        &item,
        Some("application/json"),
        &obj.to_string(),
        None,
    );
    assert_eq!(
        unconditional.code, 422,
        "CRDs need a resourceVersion on update"
    );

    let deleted = call(&srv, "DELETE", &item, None, "", None);
    assert_eq!(deleted.code, 200);
    assert_eq!(deleted.body["status"], "Success");
    assert_eq!(call(&srv, "DELETE", &item, None, "", None).code, 404);
}

#[test]
fn merge_patch_on_status_with_uid_precondition() {
    let srv = seeded();
    let uid = get(&srv, POD).body["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_owned();
    let status = format!("{POD}/status");
    let wrong = json!({"metadata":{"uid":"00000000-0000-4000-8000-000000000000","annotations":{"k8s.v1.cni.cncf.io/network-status":"[]"}}});
    let r = call(
        &srv,
        "PATCH",
        &status,
        Some("application/merge-patch+json"),
        &wrong.to_string(),
        None,
    );
    // kube-apiserver v1.28: a patch that changes the uid is invalid (422),
    // not a precondition failure (409 is for a PUT).
    assert_eq!(r.code, 422);
    assert_eq!(r.body["reason"], "Invalid");
    assert_eq!(
        r.body["message"],
        "Pod \"p1\" is invalid: metadata.uid: Invalid value: \"00000000-0000-4000-8000-000000000000\": field is immutable"
    );
    assert_eq!(r.body["details"]["causes"][0]["field"], "metadata.uid");
    assert_eq!(
        r.body["details"]["causes"][0]["reason"],
        "FieldValueInvalid"
    );

    let good = json!({"metadata":{"uid":uid,"annotations":{"k8s.v1.cni.cncf.io/network-status":"[]"}},"spec":{"nodeName":"ignored"}});
    let r = call(
        &srv,
        "PATCH",
        &status,
        Some("application/merge-patch+json"),
        &good.to_string(),
        None,
    );
    assert_eq!(r.code, 200);
    let stored = srv.get_object(POD).unwrap();
    assert_eq!(
        stored["metadata"]["annotations"]["k8s.v1.cni.cncf.io/network-status"],
        "[]"
    );
    assert_eq!(
        stored["metadata"]["annotations"]["a"], "1",
        "merge keeps other annotations"
    );
    assert_eq!(
        stored["spec"]["nodeName"], "n1",
        "status subresource ignores spec"
    );
}

#[test]
fn strategic_json_and_apply_patches() {
    let srv = seeded();
    let r = call(
        &srv,
        "PATCH",
        POD,
        Some("application/strategic-merge-patch+json"),
        r#"{"metadata":{"labels":{"x":"y"}}}"#,
        None,
    );
    assert_eq!(r.code, 200);
    assert_eq!(r.body["metadata"]["labels"]["x"], "y");

    let ops = r#"[{"op":"test","path":"/metadata/labels/x","value":"y"},{"op":"add","path":"/metadata/annotations/b","value":"2"},{"op":"remove","path":"/metadata/annotations/a"}]"#;
    let r = call(
        &srv,
        "PATCH",
        POD,
        Some("application/json-patch+json"),
        ops,
        None,
    );
    assert_eq!(r.code, 200, "{}", r.text);
    assert_eq!(r.body["metadata"]["annotations"], json!({"b": "2"}));
    let failed = call(
        &srv,
        "PATCH",
        POD,
        Some("application/json-patch+json"),
        r#"[{"op":"test","path":"/metadata/name","value":"zz"}]"#,
        None,
    );
    assert_eq!(failed.code, 422);
    assert_eq!(
        failed.body["message"],
        "the server rejected our request due to an error in our request"
    );

    let apply = call(
        &srv,
        "PATCH",
        POD,
        Some("application/apply-patch+yaml"),
        r#"{"metadata":{"labels":{"z":"1"}}}"#,
        None,
    );
    assert_eq!(apply.code, 400);
    assert!(apply.body["message"]
        .as_str()
        .unwrap()
        .contains("fieldManager is required"));
    let apply = call(
        &srv,
        "PATCH",
        &format!("{POD}?fieldManager=plexus"),
        Some("application/apply-patch+yaml"),
        r#"{"metadata":{"labels":{"z":"1"}}}"#,
        None,
    );
    assert_eq!(apply.code, 200);

    let smp_on_crd = call(
        &srv,
        "PATCH",
        NAD,
        Some("application/strategic-merge-patch+json"),
        "{}",
        None,
    );
    assert_eq!(smp_on_crd.code, 415);
    assert_eq!(
        smp_on_crd.body["message"],
        "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml"
    );
    let create = call(
        &srv,
        "POST",
        "/api/v1/namespaces/default/pods",
        Some("text/plain"),
        "{}",
        None,
    );
    assert_eq!(create.code, 415);
    assert_eq!(
        create.body["message"],
        "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf"
    );
    let unknown = call(&srv, "PATCH", POD, Some("text/plain"), "{}", None);
    assert_eq!(unknown.code, 415);
    assert_eq!(unknown.body["reason"], "UnsupportedMediaType");
}

/// kube-apiserver v1.28: deleting a pod bound to a node starts its grace
/// period; the pod lives on with a `deletionTimestamp`, a status PATCH during
/// teardown gets 200, and the kubelet's grace-0 DELETE removes it.
#[test]
fn pod_deletion_is_graceful() {
    let srv = seeded();
    let r = call(&srv, "DELETE", POD, None, "", None);
    assert_eq!(r.code, 200, "{}", r.text);
    assert_eq!(r.body["kind"], "Pod");
    assert_eq!(r.body["metadata"]["deletionGracePeriodSeconds"], 30);
    assert!(r.body["metadata"]["deletionTimestamp"].is_string());
    let live = get(&srv, POD);
    assert_eq!(live.code, 200);
    assert_eq!(
        live.body["metadata"]["deletionTimestamp"],
        r.body["metadata"]["deletionTimestamp"]
    );
    let patch = json!({"metadata":{"annotations":{"k8s.v1.cni.cncf.io/network-status":"[]"}}});
    let status = format!("{POD}/status");
    let r = call(
        &srv,
        "PATCH",
        &status,
        Some("application/merge-patch+json"),
        &patch.to_string(),
        None,
    );
    assert_eq!(r.code, 200, "{}", r.text);
    let gone = call(
        &srv,
        "DELETE",
        &format!("{POD}?gracePeriodSeconds=0"),
        None,
        "",
        None,
    );
    assert_eq!(gone.code, 200, "{}", gone.text);
    assert_eq!(get(&srv, POD).code, 404);
    // A pod never bound to a node goes at once.
    srv.put_pod(json!({"apiVersion":"v1","kind":"Pod","metadata":{"name":"p2","namespace":"default"},"spec":{}}))
        .unwrap();
    let p2 = "/api/v1/namespaces/default/pods/p2";
    assert_eq!(call(&srv, "DELETE", p2, None, "", None).code, 200);
    assert_eq!(get(&srv, p2).code, 404);
}
