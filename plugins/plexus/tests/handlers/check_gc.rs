//! CHECK, GC and STATUS across the cached attachments and the delegates.

use plexus::handlers;
use plexus_cni::{CniError, Command};
use rstest::rstest;
use serde_json::json;

use crate::common::*;
use crate::support::{added_with_net_a, nad_conf, s};

#[rstest]
fn check_checks_every_attachment(#[values("0.4.0", "1.0.0", "1.1.0")] version: &str) {
    let (h, stdin, conf) = added_with_net_a(version);
    h.exec.clear();
    handlers::check(&args(Command::Check, "c1", &stdin), &conf, &h.deps()).unwrap();
    assert_eq!(
        h.exec.summary(),
        vec![
            s("CHECK", "cluster-cni", "eth0"),
            s("CHECK", "hd-a", "net1")
        ]
    );
    assert_eq!(
        h.exec.calls()[1].stdin["prevResult"]["interfaces"][0]["name"],
        "net1"
    );
    h.exec.fail(
        "hd-a",
        "CHECK",
        CniError::generic("address 198.51.100.9 missing"),
    );
    let e = handlers::check(&args(Command::Check, "c1", &stdin), &conf, &h.deps()).unwrap_err();
    assert!(e.to_string().contains("default/net-a"), "{e}");
    let e = handlers::check(&args(Command::Check, "other", &stdin), &conf, &h.deps()).unwrap_err();
    assert_eq!(e.to_cni().code, 3);
}

#[test]
fn check_skips_delegates_below_0_4_0() {
    let h = Harness::new();
    h.add_pod(Some("net-a"));
    h.add_nad("default", "net-a", nad_conf("0.3.1", "hd-a", json!({})));
    let (stdin, conf) = h.conf("1.0.0", json!({}));
    handlers::add(&args(Command::Add, "c1", &stdin), &conf, &h.deps()).unwrap();
    h.exec.clear();
    handlers::check(&args(Command::Check, "c1", &stdin), &conf, &h.deps()).unwrap();
    assert_eq!(h.exec.summary(), vec![s("CHECK", "cluster-cni", "eth0")]);
}

#[rstest]
fn gc_removes_unlisted_attachments_and_forwards_gc(#[values("1.1.0")] version: &str) {
    let (h, stdin, conf) = added_with_net_a(version);
    handlers::add(&args(Command::Add, "c2", &stdin), &conf, &h.deps()).unwrap();
    h.exec.clear();
    let mut gc_stdin = stdin.clone();
    gc_stdin["cni.dev/valid-attachments"] = json!([{"containerID": "c1", "ifname": "eth0"}]);
    handlers::gc(&args(Command::Gc, "", &gc_stdin), &conf, &h.deps()).unwrap();
    let summary = h.exec.summary();
    assert_eq!(
        summary,
        vec![
            s("DEL", "hd-a", "net1"),
            s("DEL", "cluster-cni", "eth0"),
            s("GC", "cluster-cni", ""),
            s("GC", "hd-a", ""),
        ]
    );
    let calls = h.exec.calls();
    assert_eq!(
        calls[3].stdin["cni.dev/valid-attachments"],
        json!([{"containerID": "c1", "ifname": "net1"}])
    );
    assert_eq!(
        calls[3].stdin["cni.dev/attachments"],
        calls[3].stdin["cni.dev/valid-attachments"]
    );
    let left: Vec<_> = h
        .cache
        .entries()
        .into_iter()
        .map(|e| e.container_id)
        .collect();
    assert_eq!(left, vec!["c1"]);
}

#[rstest]
fn status_reports_readiness_and_delegate_status(#[values("1.1.0")] version: &str) {
    let h = Harness::new();
    let ready = h.dir.path().join("ready");
    let (stdin, conf) = h.conf(version, json!({"readinessindicatorfile": ready}));
    let e = handlers::status(&args(Command::Status, "", &stdin), &conf, &h.deps()).unwrap_err();
    assert_eq!(e.to_cni().code, 50);
    std::fs::write(&ready, b"").unwrap();
    handlers::status(&args(Command::Status, "", &stdin), &conf, &h.deps()).unwrap();
    assert_eq!(h.exec.summary(), vec![s("STATUS", "cluster-cni", "")]);
    h.exec
        .fail("cluster-cni", "STATUS", CniError::new(51, "degraded", ""));
    let e = handlers::status(&args(Command::Status, "", &stdin), &conf, &h.deps()).unwrap_err();
    assert_eq!(e.to_cni().code, 51);
}
