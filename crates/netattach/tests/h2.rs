//! HTTP/2 to an `https` API server: h2 is negotiated in ALPN, every request
//! of a client (from any thread) is a stream on one TLS connection, a server
//! that speaks only HTTP/1.1 still works, and a dropped connection is
//! reopened by the retry. Statuses, headers, timeouts and CA checks keep
//! their HTTP/1.1 meaning.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns panic by design

#[path = "support/tls_server.rs"]
mod tls_server;

use std::time::{Duration, Instant};

use plexus_netattach::api::Event;
use plexus_netattach::{
    ApiError, ClientConfig, HttpPodApi, PodApi, PodRef, RetryPolicy, TokenSource,
};
use tls_server::{pem, Behaviour, TlsServer};

fn config(server: &TlsServer) -> ClientConfig {
    ClientConfig {
        server: server.url(),
        ca_pem: Some(pem("ca.pem")),
        insecure_skip_tls_verify: false,
        tls_server_name: None,
        token: Some(TokenSource::Static("t0ken".into())),
        identity: None,
        namespace: None,
    }
}

fn api(cfg: ClientConfig, retry: RetryPolicy) -> HttpPodApi {
    HttpPodApi::new(cfg)
        .with_timeout(Duration::from_secs(5))
        .with_retry(retry)
}

fn fast_retry(attempts: u32) -> RetryPolicy {
    RetryPolicy {
        max_attempts: attempts,
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(50),
        budget: Duration::from_secs(5),
    }
}

fn pod_ref() -> PodRef {
    PodRef {
        namespace: "default".into(),
        name: "p".into(),
        uid: "u-h2".into(),
    }
}

fn events(n: usize) -> Vec<Event> {
    (0..n)
        .map(|i| Event::added_interface(&format!("net{i}"), &[], "default/n"))
        .collect()
}

#[test]
fn every_request_is_a_stream_on_one_connection() {
    let server = TlsServer::start(Behaviour::default());
    let api = api(config(&server), RetryPolicy::none());
    assert_eq!(
        server.counts.handshakes(),
        0,
        "nothing before the first request"
    );
    assert_eq!(api.get_pod("default", "p").unwrap().uid(), "u-h2");
    let nad = api.get_nad("default", "n").unwrap();
    assert_eq!(nad.delegate_config().unwrap()["device"], "ens5");
    api.patch_network_status("default", "p", "u-h2", "[]")
        .unwrap();
    for r in api.create_events(&pod_ref(), &events(2)) {
        r.unwrap();
    }
    assert_eq!(server.counts.handshakes(), 1);
    assert_eq!(
        server
            .counts
            .h2_connections
            .load(std::sync::atomic::Ordering::SeqCst),
        1
    );
    let reqs = server.counts.requests();
    assert_eq!(reqs.len(), 5);
    assert!(reqs.iter().all(|r| r.version == "HTTP/2"), "{reqs:?}");
    for r in &reqs {
        assert_eq!(r.headers["accept"], "application/json");
        assert_eq!(r.headers["authorization"], "Bearer t0ken");
        assert!(r.headers["user-agent"].starts_with("plexus/"), "{r:?}");
    }
    let patch = reqs.iter().find(|r| r.method == "PATCH").unwrap();
    assert_eq!(patch.path, "/api/v1/namespaces/default/pods/p/status");
    assert_eq!(
        patch.headers["content-type"],
        "application/merge-patch+json"
    );
    assert!(patch.body.contains("u-h2"), "{}", patch.body);
    assert_eq!(
        patch.headers["content-length"],
        patch.body.len().to_string()
    );
    let posts: Vec<_> = reqs.iter().filter(|r| r.method == "POST").collect();
    assert_eq!(posts.len(), 2);
    assert!(posts
        .iter()
        .all(|r| r.path == "/api/v1/namespaces/default/events"
            && r.headers["content-type"] == "application/json"
            && r.body.contains("AddedInterface")));
}

#[test]
fn concurrent_writes_overlap_on_one_handshake() {
    let delay = Duration::from_millis(300);
    let server = TlsServer::start(Behaviour {
        delay,
        ..Behaviour::default()
    });
    let api = api(config(&server), RetryPolicy::none());
    let t0 = Instant::now();
    // The end of an ADD: the status PATCH while the events go out.
    std::thread::scope(|s| {
        let posted = s.spawn(|| api.create_events(&pod_ref(), &events(3)));
        api.patch_network_status("default", "p", "u-h2", "[]")
            .unwrap();
        assert!(posted.join().unwrap().iter().all(Result::is_ok));
    });
    let took = t0.elapsed();
    assert_eq!(
        server.counts.handshakes(),
        1,
        "one TLS handshake for all four"
    );
    assert_eq!(
        server
            .counts
            .max_in_flight
            .load(std::sync::atomic::Ordering::SeqCst),
        4
    );
    assert!(took < delay * 2, "four {delay:?} requests took {took:?}");
}

#[test]
fn a_server_without_h2_gets_http1() {
    let server = TlsServer::start(Behaviour {
        h2: false,
        ..Behaviour::default()
    });
    let api = api(config(&server), RetryPolicy::none());
    assert_eq!(api.get_pod("default", "p").unwrap().uid(), "u-h2");
    api.patch_network_status("default", "p", "u-h2", "[]")
        .unwrap();
    assert_eq!(api.get_pod("default", "p").unwrap().uid(), "u-h2");
    let reqs = server.counts.requests();
    assert_eq!(reqs.len(), 3);
    assert!(reqs.iter().all(|r| r.version == "HTTP/1.1"), "{reqs:?}");
    assert_eq!(
        reqs[1].headers["content-type"],
        "application/merge-patch+json"
    );
    assert_eq!(reqs[0].headers["authorization"], "Bearer t0ken");
    // The ALPN probe, then one kept-alive HTTP/1.1 connection.
    assert_eq!(server.counts.handshakes(), 2);
    assert_eq!(
        server
            .counts
            .h2_connections
            .load(std::sync::atomic::Ordering::SeqCst),
        0
    );
}

#[test]
fn a_dropped_connection_is_reopened_by_the_retry() {
    let server = TlsServer::start(Behaviour {
        drop_first: true,
        ..Behaviour::default()
    });
    let err = api(config(&server), RetryPolicy::none())
        .get_pod("default", "p")
        .unwrap_err();
    assert!(matches!(err, ApiError::Transport(_)), "{err:?}");
    assert_eq!(server.counts.handshakes(), 1);

    let server = TlsServer::start(Behaviour {
        drop_first: true,
        ..Behaviour::default()
    });
    let api = api(config(&server), fast_retry(3));
    assert_eq!(api.get_pod("default", "p").unwrap().uid(), "u-h2");
    assert_eq!(server.counts.handshakes(), 2);
    assert_eq!(
        server.counts.requests().len(),
        1,
        "the dropped one is not answered"
    );
    api.get_pod("default", "p").unwrap();
    assert_eq!(server.counts.handshakes(), 2, "the new connection is kept");
}

#[test]
fn a_goaway_moves_the_next_request_to_a_new_connection_without_a_retry() {
    let server = TlsServer::start(Behaviour {
        goaway: true,
        ..Behaviour::default()
    });
    let api = api(config(&server), RetryPolicy::none());
    for _ in 0..3 {
        assert_eq!(api.get_pod("default", "p").unwrap().uid(), "u-h2");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(server.counts.requests().len(), 3);
    assert_eq!(server.counts.handshakes(), 3);
}

#[test]
fn statuses_keep_their_meaning_over_h2() {
    let server = TlsServer::start(Behaviour::default());
    let err = api(config(&server), fast_retry(3))
        .get_pod("default", "missing")
        .unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
    assert!(err.to_string().contains("not found"), "{err}");
    // 429 with Retry-After: 0, then 200 on the retry.
    api(config(&server), fast_retry(3))
        .get_pod("default", "busy")
        .unwrap();
    let busy = server
        .counts
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("busy"))
        .count();
    assert_eq!(busy, 2);
    assert_eq!(server.counts.requests().len(), 3, "a 404 is not retried");
}

#[test]
fn a_slow_answer_times_out() {
    let server = TlsServer::start(Behaviour {
        delay: Duration::from_secs(3),
        ..Behaviour::default()
    });
    let api = HttpPodApi::new(config(&server))
        .with_timeout(Duration::from_millis(300))
        .with_retry(RetryPolicy::none());
    let t0 = Instant::now();
    let err = api.get_pod("default", "p").unwrap_err();
    assert!(matches!(err, ApiError::Timeout(_)), "{err:?}");
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
}

#[test]
fn the_kubeconfig_ca_and_client_certificate_apply_to_h2() {
    let server = TlsServer::start(Behaviour::default());
    let mut cfg = config(&server);
    cfg.ca_pem = Some(pem("other-ca.pem"));
    let err = api(cfg.clone(), RetryPolicy::none())
        .get_pod("default", "p")
        .unwrap_err();
    assert!(
        matches!(err, ApiError::Transport(ref m) if m.to_lowercase().contains("certificate")),
        "{err:?}"
    );
    cfg.ca_pem = None;
    cfg.insecure_skip_tls_verify = true;
    api(cfg, RetryPolicy::none())
        .get_pod("default", "p")
        .unwrap();

    let mut cfg = config(&server);
    cfg.identity = Some(plexus_netattach::ClientIdentity {
        cert_pem: pem("client.pem"),
        key_pem: pem("client.key"),
    });
    api(cfg, RetryPolicy::none())
        .get_pod("default", "p")
        .unwrap();
    let c = &server.counts;
    assert_eq!(c.client_certs.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert_eq!(
        c.h2_connections.load(std::sync::atomic::Ordering::SeqCst),
        2
    );
}

#[test]
fn tls_server_name_is_verified_over_h2() {
    let server = TlsServer::start(Behaviour::default());
    let mut cfg = config(&server);
    cfg.tls_server_name = Some("localhost".into());
    api(cfg.clone(), RetryPolicy::none())
        .get_pod("default", "p")
        .unwrap();
    cfg.tls_server_name = Some("kubernetes.default.svc".into());
    let err = api(cfg, RetryPolicy::none())
        .get_pod("default", "p")
        .unwrap_err();
    assert!(
        matches!(err, ApiError::Transport(ref m) if m.to_lowercase().contains("certificate")),
        "{err:?}"
    );
}

#[test]
fn inside_an_async_runtime_http1_is_used_instead_of_blocking_it() {
    let server = TlsServer::start(Behaviour::default());
    let api = api(config(&server), RetryPolicy::none());
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async { api.get_pod("default", "p").unwrap() });
    api.get_pod("default", "p").unwrap();
    let versions: Vec<_> = server.counts.requests().iter().map(|r| r.version).collect();
    assert_eq!(versions, ["HTTP/1.1", "HTTP/2"]);
    // Dropping the client (and its runtime) inside a runtime is fine too.
    rt.block_on(async move { drop(api) });
}
