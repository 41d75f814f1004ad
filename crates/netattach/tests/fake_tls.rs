//! `HttpPodApi` against the fake API server over TLS (test CA, ALPN h2 then
//! http/1.1, as kube-apiserver): one handshake per client, and the fake's
//! per-verb latency applies per HTTP/2 stream, so concurrent writes overlap
//! as on the real server.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns panic by design

use std::time::{Duration, Instant};

use plexus_netattach::api::Event;
use plexus_netattach::{ClientConfig, HttpPodApi, PodApi, PodRef, RetryPolicy};
use plexus_testkit::kube::{FakeApiServer, Options, VerbLatency};
use plexus_testkit::tls::{Connection, TestCa};
use serde_json::json;

const DELAY_MS: u64 = 200;

fn start() -> (FakeApiServer, TestCa, String) {
    start_with(false)
}

fn start_with(http1_only: bool) -> (FakeApiServer, TestCa, String) {
    let ca = TestCa::new().unwrap();
    let mut cert = ca.loopback_cert().unwrap();
    cert.http1_only = http1_only;
    let srv = FakeApiServer::start_with(Options {
        tls: Some(cert),
        ..Options::default()
    })
    .unwrap();
    let pod = srv
        .put_pod(json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "namespace": "default"}, "spec": {}}))
        .unwrap();
    for n in ["a", "b", "c"] {
        srv.put_nad("default", n, r#"{"cniVersion":"1.0.0","type":"static"}"#)
            .unwrap();
    }
    let every = format!("get-pod={DELAY_MS},get={DELAY_MS},patch={DELAY_MS},post={DELAY_MS},tls=0");
    srv.set_verb_latency(VerbLatency::parse(&every).unwrap());
    let uid = pod["metadata"]["uid"].as_str().unwrap().to_owned();
    (srv, ca, uid)
}

fn api(srv: &FakeApiServer, ca: &TestCa) -> HttpPodApi {
    HttpPodApi::new(ClientConfig {
        server: srv.url(),
        ca_pem: Some(ca.cert_pem().into_bytes()),
        insecure_skip_tls_verify: false,
        tls_server_name: None,
        token: None,
        identity: None,
        namespace: None,
    })
    .with_retry(RetryPolicy::none())
}

#[test]
fn an_add_is_one_h2_connection_and_its_writes_overlap() {
    let (srv, ca, uid) = start();
    let api = api(&srv, &ca);
    let pod = api.get_pod("default", "p").unwrap();
    assert_eq!(pod.uid(), uid);
    let pod_ref = PodRef {
        namespace: "default".into(),
        name: "p".into(),
        uid,
    };
    let events: Vec<Event> = (0..3)
        .map(|i| Event::added_interface(&format!("net{i}"), &[], "default/a"))
        .collect();
    let t0 = Instant::now();
    std::thread::scope(|s| {
        let nads: Vec<_> = ["a", "b", "c"]
            .map(|n| s.spawn(|| api.get_nad("default", n)))
            .into_iter()
            .collect();
        for h in nads {
            h.join().unwrap().unwrap();
        }
    });
    let nads_took = t0.elapsed();
    let t0 = Instant::now();
    std::thread::scope(|s| {
        let posted = s.spawn(|| api.create_events(&pod_ref, &events));
        api.patch_network_status("default", "p", &pod_ref.uid, "[]")
            .unwrap();
        assert!(posted.join().unwrap().iter().all(Result::is_ok));
    });
    let writes_took = t0.elapsed();
    let delay = Duration::from_millis(DELAY_MS);
    assert!(nads_took < delay * 2, "three NAD GETs took {nads_took:?}");
    assert!(
        writes_took < delay * 2,
        "PATCH + 3 POSTs took {writes_took:?}"
    );
    assert_eq!(
        srv.connections(),
        vec![Connection {
            tls: true,
            alpn: Some("h2".into())
        }]
    );
    assert_eq!(srv.requests().len(), 8);
}

#[test]
fn a_server_offering_only_http1_gets_http1_after_one_probe() {
    let (srv, ca, uid) = start_with(true);
    srv.set_verb_latency(None);
    let api = api(&srv, &ca);
    assert_eq!(api.get_pod("default", "p").unwrap().uid(), uid);
    api.get_nad("default", "a").unwrap();
    api.patch_network_status("default", "p", &uid, "[]")
        .unwrap();
    // The probe that learnt the server's choice, then ureq's kept-alive one
    // (ureq offers no ALPN).
    let probe = Connection {
        tls: true,
        alpn: Some("http/1.1".into()),
    };
    let ureq = Connection {
        tls: true,
        alpn: None,
    };
    assert_eq!(srv.connections(), vec![probe, ureq]);
    assert_eq!(srv.requests().len(), 3);
}
