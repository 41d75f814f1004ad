//! Helpers for the handler tests: NAD configs, call triples, a pod with one NAD, call ordering.

use plexus::config::PlexusConf;
use plexus::handlers;
use plexus_cni::Command;
use plexus_netattach::testing::Call as Api;
use serde_json::{json, Value};

use crate::common::*;

pub(crate) fn nad_conf(version: &str, plugin: &str, extra: Value) -> Value {
    let mut v = json!({"cniVersion": version, "type": plugin});
    if let (Some(m), Some(e)) = (v.as_object_mut(), extra.as_object()) {
        for (k, val) in e {
            m.insert(k.clone(), val.clone());
        }
    }
    v
}

pub(crate) fn s(a: &str, b: &str, c: &str) -> (String, String, String) {
    (a.into(), b.into(), c.into())
}

/// A pod with the NAD `net-a` (delegate `hd-a`) attached as container `c1`.
pub(crate) fn added_with_net_a(version: &str) -> (Harness, Value, PlexusConf) {
    let h = Harness::new();
    h.add_pod(Some("net-a"));
    h.add_nad("default", "net-a", nad_conf(version, "hd-a", json!({})));
    let (stdin, conf) = h.conf(version, json!({}));
    if let Err(e) = handlers::add(&args(Command::Add, "c1", &stdin), &conf, &h.deps()) {
        panic!("ADD: {e}");
    }
    (h, stdin, conf)
}

/// The calls with the status PATCH moved before the events: ADD sends the
/// PATCH and the events concurrently, so their relative order is free; the
/// reads before them keep theirs.
pub(crate) fn patch_before_events(mut calls: Vec<Api>) -> Vec<Api> {
    if let Some(i) = calls.iter().position(|c| *c == Api::PatchNetworkStatus) {
        let patch = calls.remove(i);
        let first_event = calls
            .iter()
            .position(|c| *c == Api::CreateEvent)
            .unwrap_or(i);
        calls.insert(first_event.min(i), patch);
    }
    calls
}
