//! Bearer tokens (401/403), forbidden verbs, and injected faults and latency.

use std::time::{Duration, Instant};

use plexus_testkit::kube::{FakeApiServer, Options};
use serde_json::json;

use crate::support::{call, get, seeded, POD};

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
