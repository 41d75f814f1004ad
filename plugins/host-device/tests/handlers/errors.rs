//! Failures that roll back or change nothing: IPAM, configure, name clashes, bad devices.

use plexus_cni::{CniError, Command, Plugin};
use plexus_host_device::net::Side;
use serde_json::json;

use crate::support::Env;

#[test]
fn failed_ipam_leaves_device_untouched() {
    let env = Env::new();
    env.plugin
        .exec
        .push_error(CniError::generic("static: no addresses"));
    let e = env.add("1.0.0", json!({})).unwrap_err();
    assert!(e.msg.contains("no addresses"), "{e}");
    env.assert_restored();
    assert!(env.state_files().is_empty());
    assert_eq!(env.ipam_commands(), ["ADD", "DEL"]);
}

#[test]
fn failed_configure_rolls_back_device_and_ipam() {
    let env = Env::new();
    env.ipam_ok("1.0.0");
    env.world().fail.push("add_address");
    let e = env.add("1.0.0", json!({})).unwrap_err();
    assert!(e.msg.contains("add address 198.51.100.7/24"), "{e}");
    env.assert_restored();
    assert!(env.state_files().is_empty());
    assert_eq!(env.ipam_commands(), ["ADD", "DEL"]);
}

#[test]
fn ifname_clash_in_pod_changes_nothing() {
    let env = Env::new();
    env.world()
        .add_link(Side::Pod, "net1", "02:00:00:00:00:99", 1500, true);
    let e = env.add("1.0.0", json!({})).unwrap_err();
    assert!(e.msg.contains("\"net1\" already exists"), "{e}");
    let w = env.world();
    let l = &w.get(Side::Host, "ens5").unwrap().link;
    assert_eq!((l.mtu, l.up), (9000, true));
    assert!(env.ipam_commands().is_empty());
}

#[test]
fn unknown_device_and_missing_netns_are_clear_errors() {
    let env = Env::new();
    let e = env.add("1.0.0", json!({"device": "ens9"})).unwrap_err();
    assert_eq!(e.code, 999);
    assert!(e.msg.contains("device \"ens9\": device not found"), "{e}");
    let c = env.conf("1.0.0", json!({}));
    let e = env
        .plugin
        .add(&env.args(Command::Add, "/var/run/netns/nope", &c))
        .unwrap_err();
    assert!(e.msg.contains("/var/run/netns/nope"), "{e}");
    env.assert_restored();
    assert!(env.ipam_commands().is_empty());
}
