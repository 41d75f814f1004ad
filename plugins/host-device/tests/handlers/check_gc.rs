//! CHECK against prevResult, GC and STATUS.

use plexus_cni::{Command, Plugin};
use rstest::rstest;
use serde_json::json;

use crate::support::{Env, POD};

#[rstest]
fn check_compares_pod_with_prev_result(#[values("0.4.0", "1.0.0", "1.1.0")] version: &str) {
    let env = Env::new();
    env.ipam_ok(version);
    let prev = env.add(version, json!({})).unwrap();
    let mut c = env.conf(version, json!({}));
    c["prevResult"] = prev.clone();
    env.plugin
        .check(&env.args(Command::Check, POD, &c))
        .unwrap();

    env.world().pod.as_mut().unwrap()[0].addrs.clear();
    let e = env
        .plugin
        .check(&env.args(Command::Check, POD, &c))
        .unwrap_err();
    assert!(e.msg.contains("198.51.100.7/24"), "{e}");

    let c = env.conf(version, json!({}));
    let e = env
        .plugin
        .check(&env.args(Command::Check, POD, &c))
        .unwrap_err();
    assert!(e.msg.contains("prevResult"), "{e}");
}

#[test]
fn gc_restores_and_forgets_unlisted_attachments() {
    let env = Env::new();
    env.ipam_ok("1.1.0");
    env.add("1.1.0", json!({})).unwrap();
    let mut c = env.conf("1.1.0", json!({}));
    c["cni.dev/valid-attachments"] = json!([{"containerID": "c1", "ifname": "net1"}]);
    env.plugin.gc(&env.args(Command::Gc, "", &c)).unwrap();
    assert_eq!(env.state_files(), ["c1-net1.json"]);
    c["cni.dev/valid-attachments"] = json!([]);
    env.plugin.gc(&env.args(Command::Gc, "", &c)).unwrap();
    assert!(env.state_files().is_empty());
    env.assert_restored();
    assert_eq!(env.ipam_commands(), ["ADD", "GC", "GC"]);
    env.plugin
        .status(&env.args(Command::Status, "", &c))
        .unwrap();
}
