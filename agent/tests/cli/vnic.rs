//! `vnic plan/apply/deconfigure --netns`, and `apply` with the IMDS down.

use std::fs;
use std::path::Path;

use plexus_sysfs::testing::{FakeSysfs, FunctionSpec};
use plexus_testkit::imds::FakeImds;
use serde_json::Value;

use crate::support::{agent, node, ok, v4, vnics};

#[test]
fn vnic_plan_apply_deconfigure_in_netns() {
    let (ns, _vf) = node();
    let fake = FakeImds::start(vnics()).unwrap();
    let url = fake.url();
    // The node's files in a temp root: sysfs describing vf1 as a VF, the
    // state file `apply` writes, empty CNI caches.
    let tmp = tempfile::tempdir().unwrap();
    let sys = FakeSysfs::new(tmp.path()).unwrap();
    sys.add_function(
        &FunctionSpec::new("0000:00:05.0", 0x15b3, 0x101e)
            .driver("mlx5_core")
            .netdev("vf1", Some("02:00:17:dd:00:02")),
    )
    .unwrap();
    let p = |s: &str| tmp.path().join(s).to_string_lossy().into_owned();
    let (root, state, hd, meta) = (p(""), p("run/plexus/state.json"), p("hd"), p("meta"));
    let base = [
        "--imds-url",
        url.as_str(),
        "--netns",
        ns.name(),
        "--host-root",
        &root,
        "--state-file",
        &state,
        "--host-device-dir",
        &hd,
        "--meta-cache-dir",
        &meta,
    ];
    let with =
        |rest: &[&str]| -> Vec<String> { base.iter().chain(rest).map(|s| s.to_string()).collect() };
    let run = |rest: &[&str]| {
        let a = with(rest);
        agent(&a.iter().map(String::as_str).collect::<Vec<_>>(), &[])
    };

    let plan: Value = serde_json::from_str(&ok(run(&["vnic", "plan", "--json"]))).unwrap();
    assert!(!plan["plan"]["actions"].as_array().unwrap().is_empty());
    assert!(v4(&ns, "vf1").is_empty(), "plan changed something");

    assert!(!Path::new(&state).exists(), "plan wrote the state file");
    let table = ok(run(&["vnic", "apply"]));
    assert!(
        table.contains("rule add pref 1000 from 203.0.113.93/32 lookup 101"),
        "{table}"
    );
    assert!(
        table.contains(&format!("state file {state}: written")),
        "{table}"
    );
    assert_eq!(v4(&ns, "vf1")[0]["local"], "203.0.113.93");
    // `apply` alone leaves the vnic IPAM plugin its state file.
    let st: Value = serde_json::from_slice(&fs::read(&state).unwrap()).unwrap();
    let one = st["vnics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["vnic_id"] == "ocid1.vnic.one")
        .unwrap_or_else(|| panic!("{st}"));
    assert_eq!(one["pci"], "0000:00:05.0", "{st}");
    assert_eq!(one["ifname"], "vf1", "{st}");
    assert_eq!(one["ip"], "203.0.113.93", "{st}");
    let json: Value = serde_json::from_str(&ok(run(&["vnic", "apply", "--json"]))).unwrap();
    assert_eq!(json["state_file"]["written"], false, "{json}");
    let again = ok(run(&["vnic", "plan"]));
    assert!(again.contains("no changes"), "{again}");

    ok(run(&["vnic", "deconfigure"]));
    assert!(v4(&ns, "vf1").is_empty());
}

#[test]
fn vnic_apply_with_imds_down_fails_clearly() {
    let (ns, _vf) = node();
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let url = format!("http://{addr}");
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state.json").to_string_lossy().into_owned();
    let out = agent(
        &[
            "--imds-url",
            &url,
            "--netns",
            ns.name(),
            "--state-file",
            &state,
            "vnic",
            "apply",
        ],
        &[],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("metadata"), "{err}");
    assert!(v4(&ns, "vf1").is_empty());
    assert!(!Path::new(&state).exists());
}
