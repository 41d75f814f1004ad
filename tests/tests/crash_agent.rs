//! The agent restarted mid-reconcile: `plexus-agent vnic apply` (the VNIC
//! configuration pass: address, policy table and rule on the VF, the node
//! state file) SIGKILLed at every marker syscall (see `plexus_e2e::crash`),
//! then started again. The restarted pass must converge to exactly what one
//! clean pass leaves: same addresses, routes, rules, link state and state
//! file, and a following `vnic plan` has nothing to do. `deconfigure` then
//! returns the VF to bare.
//!
//! Root only (panics otherwise).
// Test-only crate: fixture helpers fail the test by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::PathBuf;
use std::process::{Command, Output};

use anyhow::{bail, ensure, Result};
use plexus_e2e::crash::{kill_points, was_killed, KillAt, MARKERS};
use plexus_sysfs::testing::{FakeSysfs, FunctionSpec};
use plexus_testkit::imds::FakeImds;
use plexus_testkit::net::{bin_path, require_root, unique_name, TestNs, Veth, VethEnd};
use serde_json::{json, Value};

const VF_MAC: &str = "02:00:17:dd:00:42";

struct Fixture {
    _vf: Veth,
    ns: TestNs,
    imds: FakeImds,
    tmp: tempfile::TempDir,
    vf: String,
}

impl Fixture {
    fn new() -> Result<Self> {
        require_root();
        let ns = TestNs::new("pxag");
        let vf = unique_name("vf");
        let veth = Veth::create(
            VethEnd::new(vf.clone()).in_ns(&ns).mac(VF_MAC).mtu(9000),
            VethEnd::new(unique_name("wire")).in_ns(&ns).up(),
        );
        let imds = FakeImds::start(json!([
            {"vnicId": "ocid1.vnic.primary", "privateIp": "198.51.100.10",
             "macAddr": "02:00:17:DD:00:01", "virtualRouterIp": "198.51.100.1",
             "subnetCidrBlock": "198.51.100.0/25"},
            {"vnicId": "ocid1.vnic.one", "privateIp": "203.0.113.94",
             "macAddr": VF_MAC.to_uppercase(), "virtualRouterIp": "203.0.113.1",
             "subnetCidrBlock": "203.0.113.0/24"}
        ]))?;
        let tmp = tempfile::tempdir()?;
        FakeSysfs::new(tmp.path())?.add_function(
            &FunctionSpec::new("0000:00:05.0", 0x15b3, 0x101e)
                .driver("mlx5_core")
                .netdev(&vf, Some(VF_MAC)),
        )?;
        Ok(Self {
            _vf: veth,
            ns,
            imds,
            tmp,
            vf,
        })
    }

    fn state_file(&self) -> PathBuf {
        self.tmp.path().join("run/plexus/state.json")
    }

    /// `plexus-agent <args>` on the test node, optionally under strace.
    fn agent(&self, args: &[&str], strace: &[String]) -> Output {
        let p = |s: &str| self.tmp.path().join(s).display().to_string();
        let mut cmd = if strace.is_empty() {
            Command::new(bin_path("plexus-agent"))
        } else {
            let mut c = Command::new("strace");
            c.args(strace).arg(bin_path("plexus-agent"));
            c
        };
        cmd.args(["--imds-url", &self.imds.url(), "--netns", self.ns.name()])
            .args(["--host-root", &p(""), "--state-file"])
            .arg(self.state_file())
            .args([
                "--host-device-dir",
                &p("hd"),
                "--meta-cache-dir",
                &p("meta"),
            ])
            .args(args)
            .env_clear()
            .env("RUST_LOG", "warn");
        cmd.output().unwrap()
    }

    fn ok(&self, args: &[&str]) -> Result<String> {
        let out = self.agent(args, &[]);
        ensure!(
            out.status.success(),
            "plexus-agent {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// What a VNIC pass leaves on the node: the VF's link and addresses,
    /// every rule and every route, and the state file without its timestamp.
    fn snapshot(&self) -> Result<Value> {
        let ip = |args: &[&str]| -> Value {
            let out = self.ns.ip(&[&["-j"], args].concat());
            serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
        };
        // Kernel-volatile fields (lifetimes, DAD, carrier timing) left out.
        let link = ip(&["addr", "show", "dev", &self.vf])
            .as_array()
            .into_iter()
            .flatten()
            .map(|l| {
                let up = l["flags"]
                    .as_array()
                    .is_some_and(|f| f.iter().any(|x| x == "UP"));
                let addrs: Vec<Value> = l["addr_info"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|a| a["family"] == "inet")
                    .map(|a| json!([a["local"], a["prefixlen"]]))
                    .collect();
                json!({"ifname": l["ifname"], "mtu": l["mtu"], "up": up, "addrs": addrs})
            })
            .collect::<Vec<_>>();
        let mut state: Value = match fs::read(self.state_file()) {
            Ok(b) => serde_json::from_slice(&b)?,
            Err(_) => Value::Null,
        };
        if let Some(o) = state.as_object_mut() {
            o.remove("updated_at");
        }
        Ok(json!({
            "link": link,
            "rules": ip(&["-4", "rule", "show"]),
            "routes": ip(&["-4", "route", "show", "table", "all"]),
            "state": state,
        }))
    }
}

#[test]
fn crash_agent_vnic_apply_killed_at_each_step_then_restarted() -> Result<()> {
    let f = Fixture::new()?;
    let bare = f.snapshot()?;
    // One clean pass and its undo first: every later pass starts from what
    // deconfigure leaves (the VF stays up; only what apply added goes).
    f.ok(&["vnic", "apply"])?;
    let want = f.snapshot()?;
    ensure!(want != bare, "apply changed nothing: {want}");
    f.ok(&["vnic", "deconfigure"])?;
    fs::remove_file(f.state_file())?;
    let deconfigured = f.snapshot()?;
    let log = f.tmp.path().join("apply.strace");
    let counted = f.agent(
        &["vnic", "apply"],
        &[
            "-f".into(),
            "-qq".into(),
            "-o".into(),
            log.display().to_string(),
            "-e".into(),
            format!("trace={}", MARKERS.join(",")),
        ],
    );
    ensure!(counted.status.success(), "counted apply failed");
    ensure!(
        f.snapshot()? == want,
        "traced apply differs from a clean one"
    );
    f.ok(&["vnic", "deconfigure"])?;
    fs::remove_file(f.state_file())?;
    let points: Vec<KillAt> = kill_points(&log)?;
    ensure!(points.len() >= 5, "only {points:?}");
    for at in &points {
        let out = f.agent(
            &["vnic", "apply"],
            &[
                "-f".into(),
                "-qq".into(),
                "-o".into(),
                "/dev/null".into(),
                "-e".into(),
                format!("trace={}", at.syscall),
                "-e".into(),
                format!("inject={}:signal=KILL:when={}", at.syscall, at.nth),
            ],
        );
        if !was_killed(&out.status) {
            // Thread scheduling may reorder syscalls of other threads: a
            // point the run never reached is reported, not silently passed.
            bail!("apply not killed at {at}: {}", out.status);
        }
        f.ok(&["vnic", "apply"])?;
        let got = f.snapshot()?;
        ensure!(
            got == want,
            "apply killed at {at} then restarted: node differs from a clean pass\n got: {got}\nwant: {want}"
        );
        let plan = f.ok(&["vnic", "plan"])?;
        ensure!(plan.contains("no changes"), "after kill at {at}: {plan}");
        f.ok(&["vnic", "deconfigure"])?;
        fs::remove_file(f.state_file())?;
        let after = f.snapshot()?;
        ensure!(
            after == deconfigured,
            "deconfigure after kill at {at} differs\n got: {after}\nwant: {deconfigured}"
        );
    }
    eprintln!("agent vnic apply: {} kill points converge", points.len());
    Ok(())
}
