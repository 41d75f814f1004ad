//! Unit tests of the network fixtures (apart from them, to keep each file
//! short); the privileged ones need root and never skip.

use super::*;
use std::collections::HashSet;

#[test]
fn names_fit_ifnamsiz_and_are_unique() {
    let names: HashSet<String> = (0..500).map(|_| unique_name("pxtestkit")).collect();
    assert_eq!(names.len(), 500);
    assert!(names
        .iter()
        .all(|n| n.len() <= MAX_IFNAME && n.starts_with("px")));
}

#[test]
fn worst_case_name_still_fits() {
    let name = compose_name("averyveryverylongprefix", u32::MAX, u32::MAX);
    assert_eq!(name.len(), MAX_IFNAME);
    assert!(name.ends_with("1z141z3-1z141z3"));
}

#[test]
fn pid_and_counter_do_not_collide_across_processes() {
    // Without the separator pid 1/counter 11 and pid 11/counter 1 clash.
    assert_ne!(compose_name("px", 1, 37), compose_name("px", 37, 1));
}

#[test]
fn base36_digits() {
    assert_eq!(base36(0), "0");
    assert_eq!(base36(35), "z");
    assert_eq!(base36(36), "10");
}

#[test]
fn profile_dir_from_test_and_bin_locations() {
    assert_eq!(
        profile_dir_of(Path::new("/t/target/debug/deps/e2e-123")),
        Some(PathBuf::from("/t/target/debug"))
    );
    assert_eq!(
        profile_dir_of(Path::new("/t/target/release/plexus-bench")),
        Some(PathBuf::from("/t/target/release"))
    );
}

#[test]
fn veth_args_place_each_end() {
    let a = VethEnd::new("vf0").mac("02:00:00:00:00:01").mtu(9000);
    let b = VethEnd::new("wire0");
    assert_eq!(
        veth_add_args(&a, &b).join(" "),
        "link add name vf0 address 02:00:00:00:00:01 mtu 9000 type veth peer name wire0"
    );
}

#[test]
fn cni_env_has_only_set_variables() {
    let call = CniCall::new("/bin/true", "ADD")
        .container_id("c1")
        .netns("/run/netns/x")
        .ifname("net1");
    assert_eq!(
        call.env(),
        vec![
            ("CNI_COMMAND", "ADD".to_owned()),
            ("CNI_CONTAINERID", "c1".to_owned()),
            ("CNI_NETNS", "/run/netns/x".to_owned()),
            ("CNI_IFNAME", "net1".to_owned()),
        ]
    );
    assert_eq!(call.with_command("DEL").env()[0].1, "DEL");
}

#[test]
fn cni_call_passes_exact_env_and_stdin() {
    let call = CniCall::new("/usr/bin/env", "VERSION").args("K=V");
    let out = call.run();
    assert!(out.status.success());
    let mut vars: Vec<&str> = out.stdout.lines().collect();
    vars.sort_unstable();
    assert_eq!(vars.len(), 3, "{vars:?}");
    assert!(vars.contains(&"CNI_ARGS=K=V"));
    assert!(vars.contains(&"CNI_COMMAND=VERSION"));
    assert!(vars.iter().any(|v| v.starts_with("PATH=")));

    let echoed = CniCall::new("/bin/cat", "ADD").stdin(r#"{"a":1}"#).run();
    assert_eq!(echoed.json, serde_json::json!({"a": 1}));
}

/// Proves the guards clean up when the test body panics.
#[test]
fn guards_clean_up_on_panic() {
    require_root();
    let outer = TestNs::new("pxtk");
    let wire = unique_name("pxw");
    let mut inner_name = String::new();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let inner = TestNs::new("pxtk");
        inner_name = inner.name().to_owned();
        let mut veth = Veth::create(
            VethEnd::new(unique_name("pxv"))
                .in_ns(&outer)
                .mtu(1400)
                .up(),
            VethEnd::new(wire.clone())
                .in_ns(&outer)
                .mac("02:42:00:00:00:09"),
        );
        outer.ip(&["link", "set", veth.a(), "netns", inner.name()]);
        veth.may_visit(&inner);
        assert_eq!(
            inner.link(veth.a()).map(|l| l["mtu"].clone()),
            Some(1400.into())
        );
        assert_eq!(
            outer.link(&wire).map(|l| l["address"].clone()),
            Some("02:42:00:00:00:09".into())
        );
        assert!(inner.exec(&["ip", "link", "show", "lo"]).status.success());
        panic!("deliberate");
    }));
    assert!(result.is_err());
    assert!(!Path::new("/run/netns").join(&inner_name).exists());
    assert!(outer.link(&wire).is_none(), "veth left behind");
    let outer_path = outer.path();
    drop(outer);
    assert!(!outer_path.exists());
}

#[test]
fn json_helpers_read_namespace_state() {
    require_root();
    let ns = TestNs::new("pxtk");
    let veth = Veth::create(
        VethEnd::new(unique_name("pxa")).in_ns(&ns).up(),
        VethEnd::new(unique_name("pxb")).in_ns(&ns).up(),
    );
    ns.ip(&["addr", "add", "198.51.100.7/24", "dev", veth.a()]);
    let addrs = ns.addrs(veth.a());
    assert_eq!(addrs[0]["local"], "198.51.100.7");
    let routes = ns.routes();
    assert!(routes
        .as_array()
        .is_some_and(|rs| rs.iter().any(|r| r["dst"] == "198.51.100.0/24")));
    assert!(ns.link("lo").is_some());
}
