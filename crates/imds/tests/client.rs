//! The IMDS client against golden fixtures and the fake IMDS on loopback.

#![allow(clippy::unwrap_used)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use plexus_imds::{
    is_bare_metal, primary_vnic, ClientConfig, ImdsError, Instance, OciImds, RequestObserver,
    RequestOutcome, RetryPolicy, Vnic,
};
use plexus_testkit::imds::{FakeImds, Fault};

fn fixture(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn fixture_json(name: &str) -> serde_json::Value {
    serde_json::from_str(&fixture(name)).unwrap()
}

fn fast(url: String) -> ClientConfig {
    ClientConfig {
        base_url: url,
        connect_timeout: Duration::from_millis(500),
        read_timeout: Duration::from_millis(500),
        retry: RetryPolicy {
            max_attempts: 4,
            initial_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(200),
            budget: Duration::from_secs(5),
        },
    }
}

#[test]
fn golden_bare_metal_doc_example() {
    let vnics: Vec<Vnic> = serde_json::from_str(&fixture("vnics_bm_doc.json")).unwrap();
    assert_eq!(vnics.len(), 2);
    assert!(is_bare_metal(&vnics));
    let p = primary_vnic(&vnics).unwrap();
    assert_eq!(p.private_ip.to_string(), "10.0.3.6");
    assert_eq!(p.vlan_tag, Some(11));
    assert_eq!(p.nic_index, Some(0));
    assert_eq!(p.virtual_router_ip.unwrap().to_string(), "10.0.3.1");
    assert_eq!(p.subnet_cidr_block.to_string(), "10.0.3.0/24");
    assert_eq!(vnics[1].mac_addr, "00:00:00:00:00:02");
}

#[test]
fn golden_vm_response_upper_case_macs_missing_optional_keys() {
    let vnics: Vec<Vnic> = serde_json::from_str(&fixture("vnics_vm.json")).unwrap();
    assert!(!is_bare_metal(&vnics));
    assert!(vnics[0].matches_mac("02:00:17:05:d1:db"));
    assert_eq!(vnics[1].vlan_tag, None);
    assert_eq!(vnics[1].nic_index, None);
    assert_eq!(vnics[1].prefix_len(), 24);
    assert_eq!(vnics[1].mac_lower(), "00:00:17:02:2b:b1");
}

#[test]
fn golden_ipv6_fields_and_unknown_keys() {
    let vnics: Vec<Vnic> = serde_json::from_str(&fixture("vnics_ipv6.json")).unwrap();
    let v = &vnics[0];
    assert_eq!(
        v.ipv6_subnet_cidr_block.unwrap().to_string(),
        "2001:db8:0:1::/64"
    );
    assert_eq!(
        v.ipv6_virtual_router_ip.unwrap().to_string(),
        "fe80::a:b:c:d"
    );
    assert_eq!(v.ipv6_addresses.len(), 1);
    assert_eq!(v.vlan_tag, Some(0));
}

#[test]
fn golden_instance() {
    let i: Instance = serde_json::from_str(&fixture("instance_vm.json")).unwrap();
    assert_eq!(i.id, "ocid1.instance.oc1.phx.exampleuniqueID");
    assert_eq!(i.shape.as_deref(), Some("VM.Standard.E4.Flex"));
    assert_eq!(i.time_created, Some(1_600_381_928_581));
    assert_eq!(i.shape_config.unwrap().max_vnic_attachments, Some(2));
    assert_eq!(
        i.region_info.unwrap().region_identifier.as_deref(),
        Some("us-phoenix-1")
    );
}

#[test]
fn fetches_vnics_and_instance_with_auth_header() {
    let fake = FakeImds::start(fixture_json("vnics_vm.json")).unwrap();
    fake.set_instance(fixture_json("instance_vm.json"));
    let client = OciImds::new(fast(fake.url()));
    let vnics = client.vnics().unwrap();
    assert_eq!(vnics.len(), 2);
    assert_eq!(
        client.instance().unwrap().hostname.as_deref(),
        Some("my-hostname")
    );
    let log = fake.requests();
    assert_eq!(log.len(), 2);
    assert_eq!(log[0].path, "/opc/v2/vnics/");
    assert_eq!(log[1].path, "/opc/v2/instance/");
    assert!(log
        .iter()
        .all(|r| r.authorization.as_deref() == Some("Bearer Oracle")));
    assert_eq!(client.request_count(), 2);
}

#[derive(Default)]
struct Recorder(Mutex<Vec<(String, RequestOutcome)>>);

impl RequestObserver for Recorder {
    fn observe(&self, path: &str, outcome: RequestOutcome, _elapsed: Duration) {
        self.0.lock().unwrap().push((path.to_string(), outcome));
    }
}

#[test]
fn retries_throttling_with_backoff_then_succeeds() {
    let fake = FakeImds::start(fixture_json("vnics_vm.json")).unwrap();
    fake.push_faults(2, Fault::HtmlStatus(429));
    let recorder = Arc::new(Recorder::default());
    let client = OciImds::with_observer(fast(fake.url()), recorder.clone());
    let t0 = Instant::now();
    let vnics = client.vnics().unwrap();
    let elapsed = t0.elapsed();
    assert_eq!(vnics.len(), 2);
    assert_eq!(fake.request_count(), 3);
    // two backoffs: >= 10 ms + 20 ms (the fixed halves of 20 and 40 ms)
    assert!(elapsed >= Duration::from_millis(30), "{elapsed:?}");
    let seen: Vec<_> = recorder.0.lock().unwrap().iter().map(|(_, o)| *o).collect();
    assert_eq!(
        seen,
        vec![
            RequestOutcome::Status(429),
            RequestOutcome::Status(429),
            RequestOutcome::Status(200)
        ]
    );
}

#[test]
fn retries_404_update_window_and_5xx() {
    let fake = FakeImds::start(fixture_json("vnics_vm.json")).unwrap();
    fake.push_faults(1, Fault::Status(404));
    fake.push_faults(1, Fault::Status(503));
    let client = OciImds::new(fast(fake.url()));
    assert_eq!(client.vnics().unwrap().len(), 2);
    assert_eq!(fake.request_count(), 3);
}

#[test]
fn persistent_html_500_reports_status_and_excerpt() {
    let fake = FakeImds::start(fixture_json("vnics_vm.json")).unwrap();
    fake.push_faults(10, Fault::HtmlStatus(500));
    let client = OciImds::new(fast(fake.url()));
    let err = client.vnics().unwrap_err();
    match &err {
        ImdsError::Status {
            status,
            excerpt,
            attempts,
            ..
        } => {
            assert_eq!(*status, 500);
            assert_eq!(*attempts, 4);
            assert_eq!(
                excerpt,
                "500 Internal Server Error 500 Internal Server Error"
            );
        }
        other => panic!("unexpected {other:?}"),
    }
    let msg = err.to_string();
    assert!(msg.contains("HTTP 500 after 4 attempt(s)"), "{msg}");
    assert!(!msg.contains('<'), "{msg}");
    assert_eq!(fake.request_count(), 4);
}

#[test]
fn garbage_json_is_a_decode_error_without_retry() {
    let fake = FakeImds::start(fixture_json("vnics_vm.json")).unwrap();
    fake.push_faults(1, Fault::GarbageJson);
    let client = OciImds::new(fast(fake.url()));
    let err = client.vnics().unwrap_err();
    assert!(matches!(err, ImdsError::Decode { .. }), "{err:?}");
    assert!(err.to_string().contains("invalid JSON"), "{err}");
    assert_eq!(fake.request_count(), 1);
}

#[test]
fn wrong_shape_json_is_a_decode_error() {
    let fake = FakeImds::start(serde_json::json!({"not": "a list"})).unwrap();
    let err = OciImds::new(fast(fake.url())).vnics().unwrap_err();
    assert!(matches!(err, ImdsError::Decode { .. }), "{err:?}");
}

#[test]
fn imds_down_fails_fast_with_clear_error() {
    // Bind then drop: the port is free and nothing listens (connection refused).
    let addr = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let client = OciImds::new(ClientConfig {
        base_url: format!("http://{addr}"),
        ..ClientConfig::default()
    });
    let t0 = Instant::now();
    let err = client.vnics().unwrap_err();
    let elapsed = t0.elapsed();
    assert!(
        matches!(err, ImdsError::Transport { attempts: 4, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("unreachable"), "{err}");
    assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");
}

#[test]
fn slow_answers_hit_the_read_timeout() {
    let fake = FakeImds::start(fixture_json("vnics_vm.json")).unwrap();
    fake.set_latency(Duration::from_millis(400));
    let mut cfg = fast(fake.url());
    cfg.read_timeout = Duration::from_millis(100);
    cfg.retry.max_attempts = 2;
    let err = OciImds::new(cfg).vnics().unwrap_err();
    assert!(
        matches!(err, ImdsError::Transport { attempts: 2, .. }),
        "{err:?}"
    );
}

#[test]
fn budget_bounds_total_retry_time() {
    let fake = FakeImds::start(fixture_json("vnics_vm.json")).unwrap();
    fake.push_faults(100, Fault::Status(429));
    let mut cfg = fast(fake.url());
    cfg.retry = RetryPolicy {
        max_attempts: 100,
        initial_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(50),
        budget: Duration::from_millis(200),
    };
    let t0 = Instant::now();
    let err = OciImds::new(cfg).vnics().unwrap_err();
    assert!(
        t0.elapsed() < Duration::from_millis(600),
        "{:?}",
        t0.elapsed()
    );
    assert!(
        matches!(err, ImdsError::Status { status: 429, .. }),
        "{err:?}"
    );
    assert!(fake.request_count() < 10);
}

#[test]
fn fake_rejects_v2_without_auth_header() {
    let fake = FakeImds::start(fixture_json("vnics_vm.json")).unwrap();
    let resp = ureq::get(&format!("{}/opc/v2/vnics/", fake.url())).call();
    match resp {
        Err(ureq::Error::Status(401, _)) => {}
        other => panic!("expected 401, got {other:?}"),
    }
    assert_eq!(fake.requests()[0].authorization, None);
}
