//! Running the agent binary: a test node with a VF, fake VNICs, and process helpers.

use std::fs;
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

use plexus_testkit::net::{require_root, TestNs, Veth, VethEnd};
use serde_json::{json, Value};

/// The binary under test; `PLEXUS_AGENT_BIN` points the RSS measurement at
/// a release build.
pub(crate) fn bin() -> String {
    std::env::var("PLEXUS_AGENT_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_plexus-agent").into())
}

pub(crate) fn vnics() -> Value {
    json!([
        {"vnicId": "ocid1.vnic.primary", "privateIp": "198.51.100.10", "macAddr": "02:00:17:DD:00:01",
         "virtualRouterIp": "198.51.100.1", "subnetCidrBlock": "198.51.100.0/25"},
        {"vnicId": "ocid1.vnic.one", "privateIp": "203.0.113.93", "macAddr": "02:00:17:DD:00:02",
         "virtualRouterIp": "203.0.113.1", "subnetCidrBlock": "203.0.113.0/24"}
    ])
}

pub(crate) fn node() -> (TestNs, Veth) {
    require_root();
    let ns = TestNs::new("pxcli");
    let vf = Veth::create(
        VethEnd::new("vf1").in_ns(&ns).mac("02:00:17:dd:00:02"),
        VethEnd::new("vf1p").in_ns(&ns).up(),
    );
    (ns, vf)
}

pub(crate) fn v4(ns: &TestNs, dev: &str) -> Vec<Value> {
    ns.addrs(dev)
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["family"] == "inet")
        .cloned()
        .collect()
}

pub(crate) fn agent(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(bin());
    c.args(args).env_clear().env("RUST_LOG", "warn");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

pub(crate) fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "plexus-agent failed: {}\nstdout: {}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stdout).unwrap()
}

pub(crate) fn rss_kib(pid: u32, key: &str) -> u64 {
    let s = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap()
        .parse()
        .unwrap()
}

pub(crate) fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out waiting for {what}");
}

pub(crate) struct Kill(pub(crate) Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
