//! Pure VNIC planning: golden plan output from fixture IMDS + current state,
//! and apply/deconfigure through the in-memory netlink fake.
//!
//! Regenerate goldens with `UPDATE_GOLDEN=1 cargo test -p plexus-agent --test vnic_plan`.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use plexus_agent::vnic::testing::FakeNet;
use plexus_agent::vnic::{
    apply, plan, plan_deconfigure, Action, Current, NetOps, VnicConfig, VnicStatus,
};
use plexus_imds::{NodeNic, Vnic};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/vnic");

/// The IMDS fixture as the OCI provider hands it to the agent.
fn vnics() -> Vec<NodeNic> {
    let wire: Vec<Vnic> =
        serde_json::from_slice(&fs::read(Path::new(FIXTURES).join("imds-vnics.json")).unwrap())
            .unwrap();
    wire.iter().map(NodeNic::from).collect()
}

fn current() -> Current {
    serde_json::from_slice(&fs::read(Path::new(FIXTURES).join("current.json")).unwrap()).unwrap()
}

fn in_pod() -> BTreeSet<String> {
    ["02:00:17:00:00:04".to_string()].into()
}

fn check_golden(name: &str, actual: &str) {
    let path = Path::new(FIXTURES).join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        fs::write(&path, actual).unwrap();
    }
    let expected = fs::read_to_string(&path).unwrap();
    assert_eq!(actual, expected, "golden {name} differs");
}

#[test]
fn plan_table_golden() {
    let p = plan(&VnicConfig::default(), &vnics(), &current(), &in_pod());
    check_golden("plan.txt", &p.render_table());
}

#[test]
fn plan_json_golden() {
    let p = plan(&VnicConfig::default(), &vnics(), &current(), &in_pod());
    let mut json = serde_json::to_string_pretty(&p).unwrap();
    json.push('\n');
    check_golden("plan.json", &json);
}

#[test]
fn deconfigure_golden() {
    let p = plan_deconfigure(&VnicConfig::default(), &vnics(), &current());
    check_golden("deconfigure.txt", &p.render_table());
}

#[test]
fn primary_is_never_touched() {
    let p = plan(&VnicConfig::default(), &vnics(), &current(), &in_pod());
    assert_eq!(p.vnics[0].status, VnicStatus::Primary);
    assert!(p.actions.iter().all(|a| a.link() != Some("ens3")));
    let d = plan_deconfigure(&VnicConfig::default(), &vnics(), &current());
    assert!(d.actions.iter().all(|a| a.link() != Some("ens3")));
    // Foreign rules (other priorities/tables) are never ours to delete.
    assert!(!d.actions.iter().any(
        |a| matches!(a, Action::DelRule(r) if r.table == 7 || r.table == 254 && r.priority != 999)
    ));
}

#[test]
fn apply_then_plan_is_empty_and_deconfigure_restores() {
    let cfg = VnicConfig::default();
    let net = FakeNet::new(current());
    let p = plan(&cfg, &vnics(), &net.current(&cfg).unwrap(), &in_pod());
    assert!(!p.is_empty());
    apply(&net, &p).into_result().unwrap();
    let again = plan(&cfg, &vnics(), &net.current(&cfg).unwrap(), &in_pod());
    assert!(again.is_empty(), "{}", again.render_table());

    let d = plan_deconfigure(&cfg, &vnics(), &net.current(&cfg).unwrap());
    apply(&net, &d).into_result().unwrap();
    let after = net.snapshot();
    assert!(after.routes.iter().all(|r| !cfg.owns_table(r.table)));
    let ours: Vec<_> = after
        .rules
        .iter()
        .filter(|r| r.priority == 999 || (r.priority == 1000 && cfg.owns_table(r.table)))
        .collect();
    assert!(ours.is_empty(), "{ours:?}");
    // The unrelated rule in table 7 and the primary's address survive.
    assert!(after.rules.iter().any(|r| r.table == 7));
    assert_eq!(after.links[0].addrs, current().links[0].addrs);
    assert!(after.links[1].addrs.is_empty() && after.links[2].addrs.is_empty());
}

#[test]
fn one_failing_link_does_not_stop_the_others() {
    let cfg = VnicConfig::default();
    let mut net = FakeNet::new(current());
    net.fail_links.insert("ens5".into());
    let p = plan(&cfg, &vnics(), &net.current(&cfg).unwrap(), &in_pod());
    let r = apply(&net, &p);
    assert_eq!(r.failed.len(), 1, "{r:?}");
    // Nothing else of ens5 was attempted, including its rule.
    assert!(r
        .skipped
        .iter()
        .any(|a| matches!(a, Action::AddRule(rule) if rule.table == 101)));
    assert!(r.into_result().is_err());
    let after = plan(&cfg, &vnics(), &net.current(&cfg).unwrap(), &in_pod());
    assert!(after.actions.iter().all(
        |a| a.link() == Some("ens5") || matches!(a, Action::AddRule(rule) if rule.table == 101)
    ));
}

#[test]
fn vnic_attached_later_is_picked_up_and_detached_one_cleaned() {
    let cfg = VnicConfig::default();
    let net = FakeNet::new(current());
    let all = vnics();
    apply(
        &net,
        &plan(&cfg, &all, &net.current(&cfg).unwrap(), &in_pod()),
    )
    .into_result()
    .unwrap();
    // The "missing" VNIC's VF shows up.
    net.state
        .lock()
        .unwrap()
        .links
        .push(plexus_agent::vnic::Link {
            name: "ens8".into(),
            mac: "02:00:17:00:00:05".into(),
            mtu: 1500,
            up: false,
            addrs: vec![],
        });
    let p = plan(&cfg, &all, &net.current(&cfg).unwrap(), &in_pod());
    assert!(p.vnics[4].status == VnicStatus::Configured && p.vnics[4].table == Some(104));
    apply(&net, &p).into_result().unwrap();
    // The "done" VNIC (index 2) is detached: its table and rule go away.
    let fewer: Vec<NodeNic> = all
        .iter()
        .filter(|v| !v.id.ends_with("done"))
        .cloned()
        .collect();
    net.state.lock().unwrap().links.retain(|l| l.name != "ens6");
    let p = plan(&cfg, &fewer, &net.current(&cfg).unwrap(), &in_pod());
    assert!(p
        .actions
        .iter()
        .any(|a| matches!(a, Action::DelRule(r) if r.table == 102)));
    apply(&net, &p).into_result().unwrap();
    assert!(plan(&cfg, &fewer, &net.current(&cfg).unwrap(), &in_pod()).is_empty());
}

#[test]
fn only_primary_means_no_guard_rule() {
    let cfg = VnicConfig::default();
    let p = plan(&cfg, &vnics()[..1], &Current::default(), &BTreeSet::new());
    assert!(p.actions.is_empty());
}

#[test]
fn shared_mac_is_ambiguous_unless_the_inventory_names_one_link() {
    let cfg = VnicConfig::default();
    let mut cur = current();
    // net_failover: master, standby and VF all carry ens5's MAC.
    for name in ["ens5sby", "ens5vf"] {
        let mut l = cur.links[1].clone();
        l.name = name.into();
        cur.links.push(l);
    }
    let p = plan(&cfg, &vnics(), &cur, &in_pod());
    assert_eq!(p.vnics[1].status, VnicStatus::Ambiguous);
    assert!(p
        .actions
        .iter()
        .all(|a| a.link().is_none_or(|l| !l.starts_with("ens5"))));
    let hints = [(
        "02:00:17:00:00:02".to_string(),
        ["ens5vf".to_string()].into(),
    )]
    .into();
    let p = plexus_agent::vnic::plan_with_hints(&cfg, &vnics(), &cur, &in_pod(), &hints);
    assert_eq!(p.vnics[1].status, VnicStatus::Configured);
    assert_eq!(p.vnics[1].link.as_deref(), Some("ens5vf"));
}

#[test]
fn link_of_the_main_default_route_is_never_configured() {
    let cfg = VnicConfig::default();
    let mut cur = current();
    cur.uplinks = vec!["ens5".into()];
    let p = plan(&cfg, &vnics(), &cur, &in_pod());
    assert_eq!(p.vnics[1].status, VnicStatus::Uplink);
    assert!(p.actions.iter().all(|a| a.link() != Some("ens5")));
    assert!(!p
        .actions
        .iter()
        .any(|a| matches!(a, Action::AddRule(r) if r.table == 101)));
}
