//! Operator knobs that could break the node: `--table-base`,
//! `--rule-priority` and `--mtu` are range-checked by clap and by
//! `VnicConfig::new`, and the planner never emits a route or rule action
//! outside our own tables even for a config built around the constructor.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::process::Command;

use plexus_agent::vnic::{
    plan, plan_deconfigure, Action, Current, Route, Rule, VnicConfig, RESERVED_TABLES,
};
use plexus_imds::{NodeNic, Vnic};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/vnic");

fn vnics() -> Vec<NodeNic> {
    let wire: Vec<Vnic> =
        serde_json::from_slice(&fs::read(Path::new(FIXTURES).join("imds-vnics.json")).unwrap())
            .unwrap();
    wire.iter().map(|v| NodeNic::try_from(v).unwrap()).collect()
}

/// The fixture's state plus what a real node always has: main/local/default
/// table routes and the kernel's rules.
fn node_with_kernel_tables() -> Current {
    let mut c: Current =
        serde_json::from_slice(&fs::read(Path::new(FIXTURES).join("current.json")).unwrap())
            .unwrap();
    for table in RESERVED_TABLES {
        c.routes.push(Route {
            table,
            dst: "0.0.0.0/0".parse().unwrap(),
            gateway: Some("203.0.113.1".parse().unwrap()),
            dev: "ens3".into(),
            src: None,
        });
    }
    for (priority, table) in [(0, 255), (32766, 254), (32767, 253), (1000, 254)] {
        c.rules.push(Rule {
            priority,
            src: None,
            dst: None,
            table,
        });
    }
    c
}

#[test]
fn constructor_refuses_ranges_that_cover_kernel_tables_or_wrap() {
    for bad in [
        0,
        188,
        189,
        200,
        252,
        253,
        254,
        255,
        u32::MAX - 63,
        u32::MAX,
    ] {
        assert!(
            VnicConfig::new(bad, 1000, 9000).is_err(),
            "table base {bad}"
        );
    }
    for good in [1, 100, 187, 256, 1000, u32::MAX - 64] {
        let cfg = VnicConfig::new(good, 1000, 9000).unwrap();
        for t in RESERVED_TABLES {
            assert!(!cfg.owns_table(t), "base {good} owns {t}");
        }
    }
    for bad_prio in [0, 1, 32766, 32767, u32::MAX] {
        assert!(
            VnicConfig::new(100, bad_prio, 9000).is_err(),
            "priority {bad_prio}"
        );
    }
    for bad_mtu in [0, 67, 65536] {
        assert!(
            VnicConfig::new(100, 1000, bad_mtu).is_err(),
            "mtu {bad_mtu}"
        );
    }
}

fn touches_kernel_tables(actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .filter(|a| match a {
            Action::AddRoute(r) | Action::DelRoute(r) => RESERVED_TABLES.contains(&r.table),
            // The metadata guard (`to 169.254.169.254 lookup main`) is the one
            // rule naming main that we own.
            Action::AddRule(r) | Action::DelRule(r) => {
                RESERVED_TABLES.contains(&r.table) && r.dst.is_none()
            }
            _ => false,
        })
        .map(Action::describe)
        .collect()
}

#[test]
fn planner_never_plans_outside_our_tables_even_for_unchecked_configs() {
    // Struct literals bypass VnicConfig::new: the planner itself must hold.
    for table_base in [0, 190, 200, 250, 253, 254, 255, u32::MAX - 10, u32::MAX] {
        for rule_priority in [0, 1000, 32766] {
            let cfg = VnicConfig {
                table_base,
                rule_priority,
                mtu: 9000,
            };
            let current = node_with_kernel_tables();
            let p = plan(&cfg, &vnics(), &current, &BTreeSet::new());
            assert_eq!(
                touches_kernel_tables(&p.actions),
                Vec::<String>::new(),
                "plan, base {table_base} priority {rule_priority}"
            );
            let d = plan_deconfigure(&cfg, &vnics(), &current);
            assert_eq!(
                touches_kernel_tables(&d.actions),
                Vec::<String>::new(),
                "deconfigure, base {table_base} priority {rule_priority}"
            );
        }
    }
}

#[test]
fn valid_config_still_plans_its_tables() {
    let cfg = VnicConfig::new(100, 1000, 9000).unwrap();
    let p = plan(&cfg, &vnics(), &node_with_kernel_tables(), &BTreeSet::new());
    assert!(p
        .actions
        .iter()
        .any(|a| matches!(a, Action::AddRoute(r) if cfg.owns_table(r.table))));
}

#[test]
fn cli_refuses_out_of_range_knobs_before_touching_anything() {
    let bin = env!("CARGO_BIN_EXE_plexus-agent");
    for args in [
        &["--table-base", "253", "vnic", "plan"][..],
        &["--table-base", "4294967290", "vnic", "plan"],
        &["--table-base=-1", "vnic", "plan"],
        &["--rule-priority", "32766", "vnic", "plan"],
        &["--rule-priority", "0", "vnic", "plan"],
        &["--mtu", "70000", "vnic", "plan"],
    ] {
        let out = Command::new(bin)
            .args(args)
            .env_clear()
            // Unreachable on purpose: the flag check must fail first.
            .env("PLEXUS_IMDS_URL", "http://127.0.0.1:9")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("invalid value"), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
    let out = Command::new(bin)
        .args(["--table-base", "253", "vnic", "plan"])
        .env_clear()
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("252-255"));
}
