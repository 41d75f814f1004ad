//! `HttpPodApi` against the fake API server: the four calls, typed errors,
//! the UID precondition, retries within budget, token-file rotation and
//! timeouts. Plain HTTP on loopback.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns panic by design

use std::time::{Duration, Instant};

use plexus_netattach::api::Event;
use plexus_netattach::{
    encode_network_status, network_statuses_from_result, ApiError, ClientConfig, HttpPodApi,
    PodApi, RetryPolicy, TokenSource, NETWORK_STATUS_ANNOTATION,
};
use plexus_testkit::kube::{FakeApiServer, Options};
use serde_json::json;

fn config(srv: &FakeApiServer, token: Option<TokenSource>) -> ClientConfig {
    ClientConfig {
        server: srv.url(),
        ca_pem: None,
        insecure_skip_tls_verify: false,
        tls_server_name: None,
        token,
        identity: None,
        namespace: None,
    }
}

fn fast_retry(attempts: u32) -> RetryPolicy {
    RetryPolicy {
        max_attempts: attempts,
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(50),
        budget: Duration::from_secs(5),
    }
}

fn seeded() -> (FakeApiServer, String) {
    let srv = FakeApiServer::start().unwrap();
    let pod = srv
        .put_pod(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "testpod1", "namespace": "default",
                         "annotations": {"k8s.v1.cni.cncf.io/networks": "sriov-vnic-1"}},
            "spec": {"nodeName": "node1"}
        }))
        .unwrap();
    srv.put_nad(
        "default",
        "sriov-vnic-1",
        r#"{"cniVersion":"0.3.1","type":"host-device","device":"ens5"}"#,
    )
    .unwrap();
    let uid = pod["metadata"]["uid"].as_str().unwrap().to_owned();
    (srv, uid)
}

#[test]
fn get_pod_and_nad() {
    let (srv, uid) = seeded();
    let api = HttpPodApi::new(config(&srv, None));
    let pod = api.get_pod("default", "testpod1").unwrap();
    assert_eq!(pod.uid(), uid);
    assert_eq!(pod.networks_annotation(), Some("sriov-vnic-1"));
    assert_eq!(pod.raw["spec"]["nodeName"], "node1");
    let nad = api.get_nad("default", "sriov-vnic-1").unwrap();
    assert_eq!(nad.delegate_config().unwrap()["device"], "ens5");
    let reqs = srv.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[0].path, "/api/v1/namespaces/default/pods/testpod1");
    assert_eq!(
        reqs[1].path,
        "/apis/k8s.cni.cncf.io/v1/namespaces/default/network-attachment-definitions/sriov-vnic-1"
    );
    assert_eq!(reqs[0].authorization, None);
}

#[test]
fn not_found_is_typed_with_the_server_message() {
    let (srv, _) = seeded();
    let api = HttpPodApi::new(config(&srv, None));
    let err = api.get_pod("default", "gone").unwrap_err();
    assert_eq!(
        err,
        ApiError::NotFound {
            message: "pods \"gone\" not found".into()
        }
    );
    let err = api.get_nad("default", "nope").unwrap_err();
    assert!(err.is_not_found());
    assert!(err
        .to_string()
        .contains("network-attachment-definitions.k8s.cni.cncf.io \"nope\""));
    assert_eq!(srv.requests().len(), 2, "404 is not retried");
}

#[test]
fn patch_network_status_with_uid_precondition() {
    let (srv, uid) = seeded();
    let api = HttpPodApi::new(config(&srv, None));
    let result = json!({
        "cniVersion": "0.3.1",
        "interfaces": [{"name": "net1", "mac": "02:00:17:00:aa:01", "sandbox": "/var/run/netns/t"}],
        "ips": [{"version": "4", "address": "198.51.100.93/24", "interface": 0}]
    });
    let statuses =
        network_statuses_from_result(&result, "default/sriov-vnic-1", false, None).unwrap();
    let value = encode_network_status(&statuses).unwrap();
    api.patch_network_status("default", "testpod1", &uid, &value)
        .unwrap();

    let req = srv.requests().pop().unwrap();
    assert_eq!(req.method, "PATCH");
    assert_eq!(req.path, "/api/v1/namespaces/default/pods/testpod1/status");
    assert_eq!(
        req.content_type.as_deref(),
        Some("application/merge-patch+json")
    );
    let body: serde_json::Value = serde_json::from_str(&req.body).unwrap();
    assert_eq!(body["metadata"]["uid"], uid.as_str());

    let pod = api.get_pod("default", "testpod1").unwrap();
    assert_eq!(
        pod.annotation(NETWORK_STATUS_ANNOTATION),
        Some(value.as_str())
    );
    assert_eq!(
        pod.networks_annotation(),
        Some("sriov-vnic-1"),
        "other annotations kept"
    );

    let err = api
        .patch_network_status(
            "default",
            "testpod1",
            "11111111-1111-4111-8111-111111111111",
            "[]",
        )
        .unwrap_err();
    // kube-apiserver v1.28 answers a uid-changing patch with 422 Invalid.
    match err {
        ApiError::Status {
            code: 422,
            reason,
            message,
        } => {
            assert_eq!(reason, "Invalid");
            assert!(
                message.contains(
                    "metadata.uid: Invalid value: \"11111111-1111-4111-8111-111111111111\": field is immutable"
                ),
                "{message}"
            );
        }
        other => panic!("expected 422 Invalid, got {other:?}"),
    }
    let pod = api.get_pod("default", "testpod1").unwrap();
    assert_eq!(
        pod.annotation(NETWORK_STATUS_ANNOTATION),
        Some(value.as_str()),
        "unchanged"
    );
}

#[test]
fn create_event_like_multus() {
    let (srv, uid) = seeded();
    let api = HttpPodApi::new(config(&srv, None));
    let pod = api.get_pod("default", "testpod1").unwrap();
    let ev = Event::added_interface("net1", &["198.51.100.93/24".into()], "default/sriov-vnic-1");
    api.create_event(&pod.to_ref(), &ev).unwrap();
    let events = srv.objects_under("/api/v1/namespaces/default/events/");
    assert_eq!(events.len(), 1);
    let e = &events[0];
    assert_eq!(e["reason"], "AddedInterface");
    assert_eq!(e["type"], "Normal");
    assert_eq!(
        e["message"],
        "Add net1 [198.51.100.93/24] from default/sriov-vnic-1"
    );
    assert_eq!(e["involvedObject"]["uid"], uid.as_str());
    assert_eq!(e["involvedObject"]["kind"], "Pod");
    assert_eq!(e["source"]["component"], "plexus");
}

#[test]
fn retryable_errors_are_retried_within_budget() {
    let (srv, _) = seeded();
    let api = HttpPodApi::new(config(&srv, None)).with_retry(fast_retry(4));
    srv.inject("GET", "/api/v1", 500, 2);
    srv.inject("GET", "/api/v1", 503, 1);
    assert!(api.get_pod("default", "testpod1").is_ok());
    assert_eq!(srv.requests().len(), 4);

    srv.clear_requests();
    srv.inject("GET", "/api/v1", 500, 10);
    let err = api.get_pod("default", "testpod1").unwrap_err();
    assert!(
        matches!(err, ApiError::Retryable { code: 500, ref reason, .. } if reason == "InternalError"),
        "{err:?}"
    );
    assert_eq!(srv.requests().len(), 4, "max_attempts bounds the tries");
    srv.clear_faults();

    // 429 carries Retry-After: 1, capped here by max_backoff (50 ms).
    srv.clear_requests();
    srv.inject("PATCH", "/api/v1", 429, 1);
    let uid = api.get_pod("default", "testpod1").unwrap().uid().to_owned();
    api.patch_network_status("default", "testpod1", &uid, "[]")
        .unwrap();
    assert_eq!(srv.requests().len(), 3);

    // A tight time budget stops retrying early.
    let api = HttpPodApi::new(config(&srv, None)).with_retry(RetryPolicy {
        max_attempts: 100,
        initial_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_millis(100),
        budget: Duration::from_millis(250),
    });
    srv.clear_requests();
    srv.inject("GET", "/api/v1", 503, 100);
    let t = Instant::now();
    assert!(api
        .get_pod("default", "testpod1")
        .unwrap_err()
        .is_retryable());
    assert!(t.elapsed() < Duration::from_secs(2));
    assert!(srv.requests().len() <= 3, "{}", srv.requests().len());
}

#[test]
fn auth_errors_are_not_retried() {
    let srv = FakeApiServer::start_with(Options {
        token: Some("right".into()),
        seed: vec![],
        ..Options::default()
    })
    .unwrap();
    srv.put_pod(json!({"metadata": {"name": "p", "namespace": "default"}}))
        .unwrap();
    let api = HttpPodApi::new(config(&srv, Some(TokenSource::Static("wrong".into()))))
        .with_retry(fast_retry(5));
    assert!(matches!(
        api.get_pod("default", "p"),
        Err(ApiError::Unauthorized { .. })
    ));
    assert_eq!(srv.requests().len(), 1);

    let api = HttpPodApi::new(config(&srv, Some(TokenSource::Static("right".into()))));
    srv.forbid("GET", "/apis/k8s.cni.cncf.io");
    match api.get_nad("default", "x") {
        Err(ApiError::Forbidden { message }) => assert!(message.contains("cannot get resource \"network-attachment-definitions\" in API group \"k8s.cni.cncf.io\""), "{message}"),
        other => panic!("expected Forbidden, got {other:?}"),
    }
}

#[test]
fn token_file_is_reread_on_every_request() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "token-one\n").unwrap();
    let srv = FakeApiServer::start_with(Options {
        token: Some("token-one".into()),
        seed: vec![],
        ..Options::default()
    })
    .unwrap();
    srv.put_pod(json!({"metadata": {"name": "p", "namespace": "default"}}))
        .unwrap();
    let api = HttpPodApi::new(config(&srv, Some(TokenSource::File(token.clone()))));
    api.get_pod("default", "p").unwrap();
    // The kubelet rotates the bound token; the server only accepts the new one.
    std::fs::write(&token, "token-two").unwrap();
    srv.set_token(Some("token-two"));
    api.get_pod("default", "p").unwrap();
    let auth: Vec<_> = srv
        .requests()
        .into_iter()
        .map(|r| r.authorization.unwrap_or_default())
        .collect();
    assert_eq!(auth, ["Bearer token-one", "Bearer token-two"]);

    std::fs::remove_file(&token).unwrap();
    assert!(matches!(
        api.get_pod("default", "p"),
        Err(ApiError::Config(_))
    ));
}

#[test]
fn slow_responses_time_out_and_are_retried() {
    let (srv, _) = seeded();
    srv.inject_latency("GET", "/api/v1", Duration::from_millis(1500), 1);
    let api = HttpPodApi::new(config(&srv, None))
        .with_timeout(Duration::from_millis(300))
        .with_retry(RetryPolicy::none());
    let t = Instant::now();
    assert!(matches!(
        api.get_pod("default", "testpod1"),
        Err(ApiError::Timeout(_))
    ));
    assert!(t.elapsed() < Duration::from_millis(1400));

    srv.inject_latency("GET", "/api/v1", Duration::from_millis(1500), 1);
    let api = HttpPodApi::new(config(&srv, None))
        .with_timeout(Duration::from_millis(300))
        .with_retry(fast_retry(3));
    assert!(
        api.get_pod("default", "testpod1").is_ok(),
        "second attempt is fast"
    );
}

#[test]
fn connection_refused_is_a_transport_error() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let cfg = ClientConfig {
        server: format!("http://127.0.0.1:{port}"),
        ca_pem: None,
        insecure_skip_tls_verify: false,
        tls_server_name: None,
        token: None,
        identity: None,
        namespace: None,
    };
    let api = HttpPodApi::new(cfg).with_retry(fast_retry(2));
    let err = api.get_pod("default", "p").unwrap_err();
    assert!(matches!(err, ApiError::Transport(_)), "{err:?}");
    assert!(err.is_retryable());
}

#[test]
fn keep_alive_requests_do_not_stall_on_delayed_acks() {
    let (srv, uid) = seeded();
    let api = HttpPodApi::new(config(&srv, None));
    api.get_pod("default", "testpod1").unwrap();
    let t = Instant::now();
    for _ in 0..25 {
        api.get_pod("default", "testpod1").unwrap();
        api.patch_network_status("default", "testpod1", &uid, "[]")
            .unwrap();
    }
    // 50 requests; with Nagle + delayed ACK each PATCH alone would cost ~40 ms.
    let elapsed = t.elapsed();
    eprintln!("50 requests in {elapsed:?}");
    assert!(elapsed < Duration::from_millis(1500), "{elapsed:?}");
}
