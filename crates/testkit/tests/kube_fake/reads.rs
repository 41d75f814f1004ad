//! GET and LIST: objects, exact NotFound bodies, lists, 405s and discovery.

use crate::support::{call, get, seeded, NAD, POD};

#[test]
fn get_pod_and_nad_and_exact_not_found_bodies() {
    let srv = seeded();
    let pod = get(&srv, POD);
    assert_eq!(pod.code, 200);
    assert!(pod.headers.contains("content-type: application/json"));
    assert_eq!(pod.body["metadata"]["annotations"]["a"], "1");
    assert_eq!(pod.body["metadata"]["uid"].as_str().unwrap().len(), 36);
    assert!(pod.body["metadata"]["creationTimestamp"].is_string());
    assert_eq!(
        get(&srv, NAD).body["spec"]["config"],
        r#"{"type":"host-device"}"#
    );

    let missing = get(&srv, "/api/v1/namespaces/default/pods/x");
    assert_eq!(missing.code, 404);
    assert_eq!(
        missing.text,
        r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"pods \"x\" not found","reason":"NotFound","details":{"name":"x","kind":"pods"},"code":404}"#
    );
    let missing = get(
        &srv,
        "/apis/k8s.cni.cncf.io/v1/namespaces/default/network-attachment-definitions/x",
    );
    assert_eq!(
        missing.text,
        r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"network-attachment-definitions.k8s.cni.cncf.io \"x\" not found","reason":"NotFound","details":{"name":"x","group":"k8s.cni.cncf.io","kind":"network-attachment-definitions"},"code":404}"#
    );
    assert_eq!(get(&srv, "/api/v1/namespaces/default/widgets/x").code, 404);
}

#[test]
fn lists_namespaced_and_cluster_wide() {
    let srv = seeded();
    srv.put_nad("other", "b", "{}").unwrap();
    let ns = get(
        &srv,
        "/apis/k8s.cni.cncf.io/v1/namespaces/default/network-attachment-definitions",
    );
    assert_eq!(ns.body["kind"], "NetworkAttachmentDefinitionList");
    assert_eq!(ns.body["items"].as_array().unwrap().len(), 1);
    assert_eq!(
        ns.body["items"][0]["kind"], "NetworkAttachmentDefinition",
        "CR list items keep kind"
    );
    let all = get(
        &srv,
        "/apis/k8s.cni.cncf.io/v1/network-attachment-definitions",
    );
    assert_eq!(all.body["items"].as_array().unwrap().len(), 2);
    let pods = get(&srv, "/api/v1/namespaces/default/pods");
    assert_eq!(pods.body["kind"], "PodList");
    assert!(
        pods.body["items"][0].get("kind").is_none(),
        "built-in list items omit kind"
    );
}

#[test]
fn method_not_allowed_and_discovery() {
    let srv = seeded();
    let r = call(&srv, "POST", POD, Some("application/json"), "{}", None);
    assert_eq!(r.code, 405);
    assert_eq!(
        r.text,
        r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"the server does not allow this method on the requested resource","reason":"MethodNotAllowed","details":{},"code":405}"#
    );
    assert_eq!(
        call(&srv, "DELETE", &format!("{POD}/status"), None, "", None).code,
        405
    );
    assert_eq!(get(&srv, "/healthz").text, "ok");
    assert_eq!(get(&srv, "/readyz").code, 200);
    assert_eq!(get(&srv, "/version").body["major"], "1");
    assert_eq!(get(&srv, "/api").body["versions"][0], "v1");
    let groups = get(&srv, "/apis").body;
    assert!(groups["groups"]
        .as_array()
        .unwrap()
        .iter()
        .any(|g| g["name"] == "k8s.cni.cncf.io"));
    let core = get(&srv, "/api/v1").body;
    assert!(core["resources"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["name"] == "pods/status"));
}
