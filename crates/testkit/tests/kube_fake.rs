//! Contract tests for the fake Kubernetes API server: status codes and Status
//! bodies, the four PATCH content types, UID/resourceVersion preconditions,
//! 401/403/405/415, fault and latency injection. Plain HTTP/1.1 over std
//! sockets so what goes over the wire is exactly what we assert.

#![allow(clippy::unwrap_used, clippy::too_many_lines)] // test helpers outside #[test] fns panic by design

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use plexus_testkit::kube::{FakeApiServer, Options};
use serde_json::{json, Value};

struct Reply {
    code: u16,
    headers: String,
    body: Value,
    text: String,
}

fn call(
    srv: &FakeApiServer,
    method: &str,
    path: &str,
    ctype: Option<&str>,
    body: &str,
    token: Option<&str>,
) -> Reply {
    let mut s = TcpStream::connect(srv.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nAccept: application/json\r\nContent-Length: {}\r\n", srv.addr(), body.len());
    if let Some(c) = ctype {
        req.push_str(&format!("Content-Type: {c}\r\n"));
    }
    if let Some(t) = token {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, text) = raw.split_once("\r\n\r\n").unwrap();
    let code = head[9..12].parse().unwrap();
    Reply {
        code,
        headers: head.to_ascii_lowercase(),
        body: serde_json::from_str(text).unwrap_or(Value::Null),
        text: text.to_owned(),
    }
}

fn get(srv: &FakeApiServer, path: &str) -> Reply {
    call(srv, "GET", path, None, "", None)
}

const POD: &str = "/api/v1/namespaces/default/pods/p1";
const NAD: &str =
    "/apis/k8s.cni.cncf.io/v1/namespaces/default/network-attachment-definitions/sriov-net";

fn seeded() -> FakeApiServer {
    let srv = FakeApiServer::start().unwrap();
    srv.put_pod(json!({"apiVersion":"v1","kind":"Pod","metadata":{"name":"p1","namespace":"default","annotations":{"a":"1"}},"spec":{"nodeName":"n1"}}))
        .unwrap();
    srv.put_nad("default", "sriov-net", r#"{"type":"host-device"}"#)
        .unwrap();
    srv
}

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

#[test]
fn bearer_token_401_anonymous_403_and_forbid() {
    let srv = FakeApiServer::start_with(Options {
        token: Some("t0k".into()),
        seed: vec![],
        ..Options::default()
    })
    .unwrap();
    srv.put_pod(json!({"metadata":{"name":"p1","namespace":"default"}}))
        .unwrap();
    let wrong = call(&srv, "GET", POD, None, "", Some("nope"));
    assert_eq!(wrong.code, 401);
    assert_eq!(
        wrong.text,
        r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"Unauthorized","reason":"Unauthorized","code":401}"#
    );
    let anon = get(&srv, POD);
    assert_eq!(anon.code, 403);
    assert_eq!(
        anon.body["message"],
        r#"pods "p1" is forbidden: User "system:anonymous" cannot get resource "pods" in API group "" in the namespace "default""#
    );
    assert_eq!(get(&srv, "/healthz").code, 200, "health is public");
    assert_eq!(call(&srv, "GET", POD, None, "", Some("t0k")).code, 200);

    srv.forbid("PATCH", "/api/v1/namespaces/*/pods");
    let r = call(
        &srv,
        "PATCH",
        &format!("{POD}/status"),
        Some("application/merge-patch+json"),
        "{}",
        Some("t0k"),
    );
    assert_eq!(r.code, 403);
    assert_eq!(
        r.body["message"],
        r#"pods "p1" is forbidden: User "system:serviceaccount:kube-system:plexus" cannot patch resource "pods/status" in API group "" in the namespace "default""#
    );
    let log = srv.requests();
    assert_eq!(
        log.last().unwrap().authorization.as_deref(),
        Some("Bearer t0k")
    );
    assert_eq!(
        log.last().unwrap().content_type.as_deref(),
        Some("application/merge-patch+json")
    );
}

#[test]
fn injected_faults_and_latency() {
    let srv = seeded();
    srv.inject("GET", "/api/v1/namespaces/default/pods", 429, 1);
    srv.inject("*", "/api/v1", 500, 1);
    let r = get(&srv, POD);
    assert_eq!(r.code, 429);
    assert!(r.headers.contains("retry-after: 1"));
    assert_eq!(r.body["reason"], "TooManyRequests");
    assert_eq!(get(&srv, POD).body["reason"], "InternalError");
    assert_eq!(get(&srv, POD).code, 200, "injections are consumed");

    srv.inject_latency("GET", "/api/v1", Duration::from_millis(300), 1);
    let t = Instant::now();
    assert_eq!(get(&srv, POD).code, 200);
    assert!(t.elapsed() >= Duration::from_millis(300));
    let t = Instant::now();
    get(&srv, POD);
    assert!(t.elapsed() < Duration::from_millis(300));
}

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
fn binary_writes_port_file_and_serves_seed() {
    let dir = tempfile::tempdir().unwrap();
    let seed = dir.path().join("seed.json");
    std::fs::write(
        &seed,
        r#"[{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p1","namespace":"default"}}]"#,
    )
    .unwrap();
    let port_file = dir.path().join("port");
    let exe = env!("CARGO_BIN_EXE_fake-kube-apiserver");
    let mut child = std::process::Command::new(exe)
        .args(["--listen", "127.0.0.1:0", "--port-file"])
        .arg(&port_file)
        .arg("--seed")
        .arg(&seed)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while !port_file.exists() {
        assert!(Instant::now() < deadline, "port file never appeared");
        std::thread::sleep(Duration::from_millis(20));
    }
    let stdout = child.stdout.take().unwrap();
    let guard = Kill(child);
    let addr = std::fs::read_to_string(&port_file).unwrap();
    let mut s = TcpStream::connect(addr.trim()).unwrap();
    s.write_all(format!("GET {POD} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    assert!(raw.starts_with("HTTP/1.1 200"), "{raw}");
    drop(guard);
    let mut out = String::new();
    let mut stdout = stdout;
    stdout.read_to_string(&mut out).unwrap();
    assert!(out.is_empty(), "stdout must stay empty: {out:?}");
}

/// Minimal protobuf encoder for the Kubernetes envelope, as client-go writes it.
mod proto {
    fn varint(mut v: u64, out: &mut Vec<u8>) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    pub fn bytes(no: u64, b: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        varint(no << 3 | 2, &mut out);
        varint(b.len() as u64, &mut out);
        out.extend_from_slice(b);
        out
    }

    pub fn str(no: u64, s: &str) -> Vec<u8> {
        bytes(no, s.as_bytes())
    }

    pub fn int(no: u64, v: u64) -> Vec<u8> {
        let mut out = Vec::new();
        varint(no << 3, &mut out);
        varint(v, &mut out);
        out
    }

    pub fn msg(parts: &[Vec<u8>]) -> Vec<u8> {
        parts.concat()
    }

    pub fn map_entry(no: u64, k: &str, v: &str) -> Vec<u8> {
        bytes(no, &msg(&[str(1, k), str(2, v)]))
    }

    /// `k8s\0` + runtime.Unknown{typeMeta, raw}.
    pub fn envelope(api_version: &str, kind: &str, raw: &[u8]) -> Vec<u8> {
        let type_meta = msg(&[str(1, api_version), str(2, kind)]);
        let mut out = b"k8s\0".to_vec();
        out.extend(msg(&[bytes(1, &type_meta), bytes(2, raw)]));
        out
    }
}

fn call_bytes(srv: &FakeApiServer, method: &str, path: &str, ctype: &str, body: &[u8]) -> Reply {
    let mut s = TcpStream::connect(srv.addr()).unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAccept: application/vnd.kubernetes.protobuf,application/json\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, text) = raw.split_once("\r\n\r\n").unwrap();
    Reply {
        code: head[9..12].parse().unwrap(),
        headers: head.to_ascii_lowercase(),
        body: serde_json::from_str(text).unwrap_or(Value::Null),
        text: text.to_owned(),
    }
}

#[test]
fn protobuf_status_update_and_event_like_client_go() {
    use proto::*;
    let srv = seeded();
    let current = get(&srv, POD).body;
    let uid = current["metadata"]["uid"].as_str().unwrap().to_owned();
    let rv = current["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_owned();
    let meta = |uid: &str| {
        msg(&[
            str(1, "p1"),
            str(3, "default"),
            str(5, uid),
            str(6, &rv),
            map_entry(12, "a", "1"),
            map_entry(12, "k8s.v1.cni.cncf.io/network-status", "[]"),
        ])
    };
    let pod = |uid: &str| envelope("v1", "Pod", &bytes(1, &meta(uid)));
    let status = format!("{POD}/status");
    let pb = "application/vnd.kubernetes.protobuf";

    let r = call_bytes(
        &srv,
        "PUT",
        &status,
        pb,
        &pod("99999999-9999-4999-8999-999999999999"),
    );
    assert_eq!(r.code, 409, "{}", r.text);
    assert!(r.body["message"]
        .as_str()
        .unwrap()
        .contains("Precondition failed: UID in precondition"));

    let r = call_bytes(&srv, "PUT", &status, pb, &pod(&uid));
    assert_eq!(r.code, 200, "{}", r.text);
    let stored = srv.get_object(POD).unwrap();
    assert_eq!(
        stored["metadata"]["annotations"]["k8s.v1.cni.cncf.io/network-status"],
        "[]"
    );
    assert_eq!(stored["spec"]["nodeName"], "n1", "spec kept");

    let involved = msg(&[
        str(1, "Pod"),
        str(2, "default"),
        str(3, "p1"),
        str(4, &uid),
        str(5, "v1"),
    ]);
    let event = msg(&[
        bytes(1, &msg(&[str(1, "p1.187a"), str(3, "default")])),
        bytes(2, &involved),
        str(3, "AddedInterface"),
        str(4, "Add net1 [198.51.100.5/24] from default/sriov-net"),
        bytes(5, &str(1, "multus")),
        bytes(6, &int(1, 1_764_153_600)),
        bytes(7, &int(1, 1_764_153_600)),
        int(8, 1),
        str(9, "Normal"),
    ]);
    let r = call_bytes(
        &srv,
        "POST",
        "/api/v1/namespaces/default/events",
        pb,
        &envelope("v1", "Event", &event),
    );
    assert_eq!(r.code, 201, "{}", r.text);
    let stored = srv
        .get_object("/api/v1/namespaces/default/events/p1.187a")
        .unwrap();
    assert_eq!(stored["involvedObject"]["uid"], uid.as_str());
    assert_eq!(
        stored["message"],
        "Add net1 [198.51.100.5/24] from default/sriov-net"
    );
    assert_eq!(stored["source"]["component"], "multus");
    assert_eq!(stored["firstTimestamp"], "2025-11-26T10:40:00Z");
    assert_eq!(stored["count"], 1);
    assert_eq!(stored["type"], "Normal");

    let garbage = call_bytes(&srv, "PUT", &status, pb, b"not protobuf");
    assert_eq!(garbage.code, 400);
    let crd = call_bytes(
        &srv,
        "PUT",
        NAD,
        pb,
        &envelope("k8s.cni.cncf.io/v1", "NetworkAttachmentDefinition", &[]),
    );
    assert_eq!(crd.code, 415, "CRDs have no protobuf");
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
