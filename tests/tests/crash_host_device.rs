//! Crash consistency of `host-device` (+ in-process `static` IPAM): the
//! plugin is SIGKILLed at every marker syscall of an ADD or a DEL (see
//! `plexus_e2e::crash`), then the node does what a runtime does next, and
//! the shared checker (`plexus_e2e::consistency`) must find the node
//! consistent: the VF home as it was, or in exactly one live pod; its address
//! in one place; no stray record, temp file or held lock.
//!
//! What a runtime does next, per the CNI spec and containerd:
//! - ADD killed: the runtime DELs the same attachment (containerd does so at
//!   once); the pod is then retried from scratch (ADD, DEL).
//! - ADD killed and the runtime itself lost track (it crashed too): the next
//!   sandbox ADDs the same device under a new container id; the stale
//!   attachment is DELed later (kubelet's garbage collection).
//! - DEL killed: DEL again (kubelet retries until it succeeds).
//!
//! Root only (panics otherwise). Each sweep point costs ~3 plugin runs.
// Test-only crate: fixture helpers fail the test by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;

use anyhow::{bail, ensure, Result};
use plexus_e2e::consistency::{Live, Node, VfHome};
use plexus_e2e::crash::{kill_points, was_killed, wrapper, KillAt, Mode, TestMount};
use plexus_netns::NetNs;
use plexus_testkit::imds::{FakeImds, Fault};
use plexus_testkit::net::{
    self, bin_path, require_root, CniCall, CniOutput, TestNs, Veth, VethEnd,
};
use serde_json::json;

const VF_MAC: &str = "02:00:cb:00:71:c1";
const VF_MTU: u32 = 9000;
const ADDR: &str = "203.0.113.61";

/// A node netns with one VF (veth end, MTU 9000, up), a pod netns per
/// container id (each sandbox has its own), and host-device's data dir;
/// plugins run inside the node through a wrapper. Drop order: the VF, the
/// pods (taking the VF with them if it is still there), the node.
struct Fixture {
    _vf: Veth,
    pods: Mutex<BTreeMap<String, TestNs>>,
    node: TestNs,
    tmp: tempfile::TempDir,
    vf_name: String,
    /// The `ipam` section; `static` unless a test swaps it.
    ipam: Mutex<serde_json::Value>,
}

impl Fixture {
    fn new() -> Self {
        require_root();
        let node = TestNs::new("pxcn");
        let vf_name = net::unique_name("vf");
        let vf = Veth::create(
            VethEnd::new(vf_name.clone())
                .in_ns(&node)
                .mac(VF_MAC)
                .mtu(VF_MTU)
                .up(),
            VethEnd::new(net::unique_name("wire")).in_ns(&node).up(),
        );
        Self {
            _vf: vf,
            pods: Mutex::default(),
            node,
            tmp: tempfile::tempdir().unwrap(),
            vf_name,
            ipam: Mutex::new(
                json!({"type": "static", "addresses": [{"address": format!("{ADDR}/24")}]}),
            ),
        }
    }

    /// The pod netns of container `cid`, created on first use.
    fn pod(&self, cid: &str) -> PathBuf {
        self.pods
            .lock()
            .unwrap()
            .entry(cid.to_owned())
            .or_insert_with(|| TestNs::new("pxcp"))
            .path()
    }

    fn data_dir(&self) -> PathBuf {
        self.tmp.path().join("host-device")
    }

    fn conf(&self) -> String {
        json!({
            "cniVersion": "1.0.0",
            "name": "crash",
            "type": "host-device",
            "device": self.vf_name,
            "dataDir": self.data_dir(),
            "ipam": *self.ipam.lock().unwrap(),
        })
        .to_string()
    }

    fn checker(&self) -> Node {
        Node {
            netns: self.node.path(),
            vfs: vec![VfHome {
                name: self.vf_name.clone(),
                mac: VF_MAC.to_owned(),
                mtu: u64::from(VF_MTU),
                up: true,
            }],
            pod_addrs: vec![ADDR.to_owned()],
            record_dirs: vec![self.data_dir()],
        }
    }

    /// Runs `command` for container `cid` with host-device under `mode`.
    fn call(&self, command: &str, cid: &str, mode: &Mode) -> CniOutput {
        let bin = wrapper(
            self.tmp.path(),
            "host-device-run",
            &self.node.path(),
            &bin_path("host-device"),
            mode,
            true,
        )
        .unwrap();
        CniCall::new(bin, command)
            .container_id(cid)
            .netns(self.pod(cid))
            .ifname("net1")
            .cni_path(net::bin_dir())
            .stdin(self.conf())
            .run()
    }

    fn ok(&self, command: &str, cid: &str) -> Result<()> {
        let out = self.call(command, cid, &Mode::Plain);
        ensure!(
            out.status.success(),
            "{command} {cid} failed: {}{}",
            out.stdout,
            out.stderr
        );
        Ok(())
    }

    fn live(&self, cids: &[&str]) -> Live {
        cids.iter()
            .map(|c| ((*c).to_owned(), self.pod(c)))
            .collect()
    }

    /// Checks the node; when nothing is live and it is consistent, the pod
    /// netns of finished attachments are deleted (the next check need not
    /// search them again).
    fn check(&self, cids: &[&str], when: &str) -> Result<()> {
        self.checker()
            .check_fixture(&self.live(cids), &self.pods, when)
    }

    /// The kill points of one clean `command` (ADD from a fresh node, or
    /// DEL of an attachment), leaving the node as it found it.
    fn points(&self, command: &str) -> Result<Vec<KillAt>> {
        let log = self.tmp.path().join(format!("{command}.strace"));
        if command == "DEL" {
            self.ok("ADD", "count")?;
        }
        let out = self.call(command, "count", &Mode::Count(log.clone()));
        ensure!(out.status.success(), "counted {command}: {}", out.stdout);
        if command == "ADD" {
            self.ok("DEL", "count")?;
        }
        self.check(&[], "after the counting run")?;
        let points = kill_points(&log)?;
        // ADD: lock, record write + rename, lookups, move, address, route,
        // result; anything much smaller means the markers went blind.
        ensure!(points.len() >= 6, "only {points:?} for {command}");
        Ok(points)
    }

    /// Runs `command` killed at `at`, failing unless it really died there.
    fn killed(&self, command: &str, cid: &str, at: &KillAt) -> Result<()> {
        let out = self.call(command, cid, &Mode::Kill(at.clone()));
        if !was_killed(&out.status) {
            bail!(
                "{command} not killed at {at} ({}): {}{}",
                out.status,
                out.stdout,
                out.stderr
            );
        }
        Ok(())
    }
}

/// ADD killed at each step, then the runtime's DEL: the VF is home as it
/// was, nothing recorded or locked; the retried pod then gets it and gives
/// it back.
#[test]
fn crash_host_device_add_killed_then_del() -> Result<()> {
    let f = Fixture::new();
    let points = f.points("ADD")?;
    for (i, at) in points.iter().enumerate() {
        let cid = format!("add{i}");
        f.killed("ADD", &cid, at)?;
        f.ok("DEL", &cid)?;
        f.check(&[], &format!("ADD killed at {at}, then DEL"))?;
        let retry = format!("retry{i}");
        f.ok("ADD", &retry)?;
        f.check(&[&retry], &format!("ADD killed at {at}, retried ADD"))?;
        f.ok("DEL", &retry)?;
        f.check(&[], &format!("ADD killed at {at}, retried pod deleted"))?;
    }
    eprintln!(
        "host-device ADD then DEL: {} kill points consistent",
        points.len()
    );
    Ok(())
}

/// ADD killed at each step and the runtime forgets it (no DEL): the next
/// sandbox ADDs the same device under a new id and must get it (or fail
/// cleanly), the stale attachment's DEL later must not take the VF from the
/// new pod, and after both DELs the VF is home.
#[test]
fn crash_host_device_add_killed_then_add_again() -> Result<()> {
    let f = Fixture::new();
    let points = f.points("ADD")?;
    for (i, at) in points.iter().enumerate() {
        let (stale, next) = (format!("stale{i}"), format!("next{i}"));
        f.killed("ADD", &stale, at)?;
        let again = f.call("ADD", &next, &Mode::Plain);
        if again.status.success() {
            f.check(&[&stale, &next], &format!("ADD killed at {at}, ADD again"))?;
            f.ok("DEL", &stale)?;
            f.check(&[&next], &format!("ADD killed at {at}, stale DEL"))?;
            f.ok("DEL", &next)?;
        } else {
            f.ok("DEL", &next)?;
            f.ok("DEL", &stale)?;
        }
        f.check(&[], &format!("ADD killed at {at}, both DELs"))?;
    }
    eprintln!(
        "host-device ADD then ADD again: {} kill points consistent",
        points.len()
    );
    Ok(())
}

/// DEL killed at each step, then DEL again: the VF is home as it was.
#[test]
fn crash_host_device_del_killed_then_del_again() -> Result<()> {
    let f = Fixture::new();
    let points = f.points("DEL")?;
    for (i, at) in points.iter().enumerate() {
        let cid = format!("del{i}");
        f.ok("ADD", &cid)?;
        f.killed("DEL", &cid, at)?;
        f.ok("DEL", &cid)?;
        f.check(&[], &format!("DEL killed at {at}, DEL again"))?;
    }
    eprintln!("host-device DEL: {} kill points consistent", points.len());
    Ok(())
}

/// The data dir is read-only: ADD fails cleanly (nothing moved) and DEL
/// succeeds; the node is unchanged.
#[test]
fn crash_host_device_read_only_data_dir() -> Result<()> {
    let f = Fixture::new();
    std::fs::create_dir_all(f.data_dir())?;
    let _ro = TestMount::bind_read_only(&f.data_dir())?;
    let out = f.call("ADD", "ro", &Mode::Plain);
    ensure!(
        !out.status.success(),
        "ADD succeeded on a read-only dataDir"
    );
    ensure!(
        out.json["code"].as_u64().is_some(),
        "no CNI error: {}",
        out.stdout
    );
    f.ok("DEL", "ro")?;
    f.check(&[], "read-only dataDir")
}

/// The data dir's filesystem is full (a 64 KiB tmpfs filled up): ADD fails
/// cleanly, DEL succeeds, nothing half-written stays.
#[test]
fn crash_host_device_full_data_dir() -> Result<()> {
    let f = Fixture::new();
    let mnt = f.data_dir();
    std::fs::create_dir_all(&mnt)?;
    let _fs = TestMount::tiny_tmpfs(&mnt)?;
    // Fill it: ENOSPC on the next data block.
    let filler = mnt.join("filler.json.x");
    let _ = std::fs::write(&filler, vec![b' '; 128 * 1024]);
    let out = f.call("ADD", "full", &Mode::Plain);
    ensure!(!out.status.success(), "ADD succeeded on a full dataDir");
    ensure!(
        out.json["code"].as_u64().is_some(),
        "no CNI error: {}",
        out.stdout
    );
    f.ok("DEL", "full")?;
    std::fs::remove_file(&filler)?;
    f.check(&[], "full dataDir")
}

/// `vnic` IPAM without a state file asks IMDS, which answers garbage, 5xx,
/// or flaps between those and good answers: ADD either gives the pod the
/// VNIC's address or fails with a CNI error leaving the VF home; DEL always
/// succeeds; the node ends consistent.
#[test]
fn crash_host_device_vnic_imds_garbage_errors_and_flapping() -> Result<()> {
    let f = Fixture::new();
    let node = NetNs::open(f.node.path())?;
    let vnics = json!([
        {"vnicId": "ocid1.vnic.oc1..primary", "privateIp": "203.0.113.2",
         "macAddr": "02:00:CB:00:71:FF", "virtualRouterIp": "203.0.113.1",
         "subnetCidrBlock": "203.0.113.0/24"},
        {"vnicId": "ocid1.vnic.oc1..vf", "privateIp": ADDR,
         "macAddr": VF_MAC.to_uppercase(), "virtualRouterIp": "203.0.113.1",
         "subnetCidrBlock": "203.0.113.0/24"},
    ]);
    let cases: [(&str, Vec<Fault>); 4] = [
        ("good", vec![]),
        ("flapping", vec![Fault::Status(503), Fault::Status(500)]),
        ("garbage", vec![Fault::GarbageJson; 50]),
        ("5xx", vec![Fault::Status(500); 50]),
    ];
    for (name, faults) in cases {
        // A fresh IMDS per case: unconsumed faults must not carry over.
        let imds = plexus_netns::run_in(&node, || FakeImds::start(vnics.clone()))??;
        for fault in faults.iter().cloned() {
            imds.push_faults(1, fault);
        }
        *f.ipam.lock().unwrap() = json!({
            "type": "vnic",
            "stateFile": f.tmp.path().join("no-state.json"),
            "imdsUrl": imds.url(),
        });
        let out = f.call("ADD", name, &Mode::Plain);
        eprintln!("IMDS {name}: ADD -> {} {}", out.status, out.json["msg"]);
        if out.status.success() {
            ensure!(
                out.json["ips"][0]["address"] == format!("{ADDR}/24"),
                "IMDS {name}: wrong address {}",
                out.stdout
            );
            f.check(&[name], &format!("IMDS {name}: ADD succeeded"))?;
        } else {
            ensure!(
                out.json["code"].as_u64().is_some(),
                "IMDS {name}: {}",
                out.stdout
            );
            ensure!(
                name != "good",
                "ADD failed with a healthy IMDS: {}",
                out.stdout
            );
            f.check(&[], &format!("IMDS {name}: ADD failed"))?;
        }
        f.ok("DEL", name)?;
        f.check(&[], &format!("IMDS {name}: after DEL"))?;
    }
    Ok(())
}
