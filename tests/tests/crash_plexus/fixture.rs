//! The crash fixture: node netns with the VF and the fake API, plexus and
//! host-device wrappers, the kill-point sweeps and the consistency checks.

use std::collections::BTreeMap;
use std::os::unix::fs::symlink;
use std::path::PathBuf;
use std::sync::Mutex;

use anyhow::{bail, ensure, Result};
use plexus_e2e::consistency::{Live, Node, VfHome};
use plexus_e2e::crash::{kill_points, was_killed, wrapper, KillAt, Mode};
use plexus_netns::NetNs;
use plexus_testkit::kube::FakeApiServer;
use plexus_testkit::net::{
    self, bin_path, require_root, CniCall, CniOutput, TestNs, Veth, VethEnd,
};
use serde_json::json;

const VF_MAC: &str = "02:00:cb:00:71:d1";
const VF_MTU: u32 = 9000;
pub const ADDR: &str = "203.0.113.62";
pub const POD: &str = "crashpod";

/// Which process gets killed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Victim {
    Plexus,
    HostDevice,
}

/// Node netns with one VF and the fake API; a pod netns per container id.
/// Drop order: API, VF, pods, node, temp dir.
pub struct Fixture {
    pub api: FakeApiServer,
    _vf: Veth,
    pods: Mutex<BTreeMap<String, TestNs>>,
    pub node: TestNs,
    pub tmp: tempfile::TempDir,
    pub vf_name: String,
    uid: String,
    /// Extra plexus config keys a test sets.
    pub extra: Mutex<serde_json::Map<String, serde_json::Value>>,
}

impl Fixture {
    pub fn new() -> Result<Self> {
        require_root();
        let node = TestNs::new("pxkn");
        let vf_name = net::unique_name("vf");
        let vf = Veth::create(
            VethEnd::new(vf_name.clone())
                .in_ns(&node)
                .mac(VF_MAC)
                .mtu(VF_MTU)
                .up(),
            VethEnd::new(net::unique_name("wire")).in_ns(&node).up(),
        );
        let node_ns = NetNs::open(node.path())?;
        let api = plexus_netns::run_in(&node_ns, FakeApiServer::start)??;
        let tmp = tempfile::tempdir()?;
        let nad = json!({
            "cniVersion": "1.0.0", "type": "host-device", "device": vf_name,
            "dataDir": tmp.path().join("host-device"),
            "ipam": {"type": "static", "addresses": [{"address": format!("{ADDR}/24")}]},
        });
        api.put_nad("default", "vf", &nad.to_string())
            .map_err(anyhow::Error::msg)?;
        let pod = api
            .put_pod(json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": POD, "namespace": "default",
                    "annotations": {"k8s.v1.cni.cncf.io/networks": "vf"}},
                "spec": {"containers": [{"name": "app", "image": "localhost/app"}]}}))
            .map_err(anyhow::Error::msg)?;
        let uid = pod["metadata"]["uid"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let kc = json!({"apiVersion": "v1", "kind": "Config",
            "clusters": [{"name": "c", "cluster": {"server": api.url()}}],
            "users": [{"name": "plexus", "user": {}}],
            "contexts": [{"name": "c", "context": {"cluster": "c", "user": "plexus"}}],
            "current-context": "c"});
        std::fs::write(tmp.path().join("kubeconfig"), kc.to_string())?;
        for dir in ["bin", "conf.d"] {
            std::fs::create_dir_all(tmp.path().join(dir))?;
        }
        symlink(bin_path("static"), tmp.path().join("bin/static"))?;
        let this = Self {
            api,
            _vf: vf,
            pods: Mutex::default(),
            node,
            tmp,
            vf_name,
            uid,
            extra: Mutex::default(),
        };
        this.host_device_mode(&Mode::Plain)?;
        Ok(this)
    }

    pub fn pod(&self, cid: &str) -> PathBuf {
        self.pods
            .lock()
            .unwrap()
            .entry(cid.to_owned())
            .or_insert_with(|| TestNs::new("pxkp"))
            .path()
    }

    /// The host-device plexus delegates to: plain, counted or killed.
    fn host_device_mode(&self, mode: &Mode) -> Result<()> {
        wrapper(
            &self.tmp.path().join("bin"),
            "host-device",
            &self.node.path(),
            &bin_path("host-device"),
            mode,
            true,
        )?;
        Ok(())
    }

    fn conf(&self) -> String {
        let t = self.tmp.path();
        let mut conf = json!({
            "cniVersion": "1.0.0", "name": "plexus", "type": "plexus",
            "kubeconfig": t.join("kubeconfig"),
            "cniDir": t.join("cache"),
            "confDir": t.join("conf.d"),
            "binDir": t.join("bin"),
            "apiTimeoutSeconds": 2,
            "apiRetryBudgetSeconds": 2,
            // The test's NADs keep host-device's records in the test dir.
            "nadNodeKeys": ["dataDir", "stateFile"],
            "delegates": [{"cniVersion": "1.0.0", "name": "cluster", "type": "static",
                "ipam": {"type": "static", "addresses": [{"address": "198.51.100.2/24"}]}}],
        });
        for (k, v) in self.extra.lock().unwrap().iter() {
            conf[k] = v.clone();
        }
        conf.to_string()
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
            record_dirs: vec![
                self.tmp.path().join("host-device"),
                self.tmp.path().join("cache"),
            ],
        }
    }

    /// The runtime calling plexus for container `cid` of the pod.
    pub fn call(&self, command: &str, cid: &str, plexus: &Mode) -> CniOutput {
        let name = match plexus {
            Mode::Plain => "plexus-plain".to_owned(),
            Mode::Count(_) => "plexus-count".to_owned(),
            Mode::Kill(k) => format!("plexus-kill-{}-{}", k.syscall, k.nth),
        };
        let bin = wrapper(
            self.tmp.path(),
            &name,
            &self.node.path(),
            &bin_path("plexus"),
            plexus,
            false,
        )
        .unwrap();
        let out = CniCall::new(bin, command)
            .container_id(cid)
            .netns(self.pod(cid))
            .ifname("eth0")
            .cni_path(self.tmp.path().join("bin"))
            .args(format!(
                "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME={POD};\
                 K8S_POD_INFRA_CONTAINER_ID={cid};K8S_POD_UID={}",
                self.uid
            ))
            .stdin(self.conf())
            .run();
        out
    }

    pub fn ok(&self, command: &str, cid: &str) -> Result<()> {
        let out = self.call(command, cid, &Mode::Plain);
        ensure!(
            out.status.success(),
            "{command} {cid} failed: {}{}",
            out.stdout,
            out.stderr
        );
        Ok(())
    }

    /// Checks the node; when nothing is live and it is consistent, the pod
    /// netns of finished attachments are deleted (the next check need not
    /// search them again).
    pub fn check(&self, cids: &[&str], when: &str) -> Result<()> {
        let live: Live = cids
            .iter()
            .map(|c| ((*c).to_owned(), self.pod(c)))
            .collect();
        self.checker().check_fixture(&live, &self.pods, when)
    }

    /// Kill points of one clean `command` in `victim`.
    fn points(&self, victim: Victim, command: &str) -> Result<Vec<KillAt>> {
        let log = self.tmp.path().join(format!("{victim:?}-{command}.strace"));
        let count = Mode::Count(log.clone());
        if command == "DEL" {
            self.ok("ADD", "count")?;
        }
        let out = match victim {
            Victim::Plexus => self.call(command, "count", &count),
            Victim::HostDevice => {
                self.host_device_mode(&count)?;
                let out = self.call(command, "count", &Mode::Plain);
                self.host_device_mode(&Mode::Plain)?;
                out
            }
        };
        ensure!(
            out.status.success(),
            "counted {command}: {}{}",
            out.stdout,
            out.stderr
        );
        if command == "ADD" {
            self.ok("DEL", "count")?;
        }
        self.check(&[], "after the counting run")?;
        let points = kill_points(&log)?;
        ensure!(
            points.len() >= 4,
            "only {points:?} for {victim:?} {command}"
        );
        Ok(points)
    }

    /// `command` with `victim` killed at `at`: true when the kill landed
    /// (plexus itself, or host-device seen as a failed delegate), false when
    /// the call completed cleanly first (the point was a syscall of one of
    /// plexus's event threads, whose order varies run to run); any other
    /// outcome fails.
    fn killed(&self, victim: Victim, command: &str, cid: &str, at: &KillAt) -> Result<bool> {
        let out = match victim {
            Victim::Plexus => self.call(command, cid, &Mode::Kill(at.clone())),
            Victim::HostDevice => {
                self.host_device_mode(&Mode::Kill(at.clone()))?;
                let out = self.call(command, cid, &Mode::Plain);
                self.host_device_mode(&Mode::Plain)?;
                out
            }
        };
        let landed = match victim {
            Victim::Plexus => was_killed(&out.status),
            Victim::HostDevice => !out.status.success(),
        };
        if !landed && victim == Victim::Plexus && out.status.success() {
            eprintln!("{victim:?} {command}: {at} not reached in this run; completed");
            return Ok(false);
        }
        if !landed {
            bail!(
                "{victim:?} {command} not killed at {at} ({}): {}{}",
                out.status,
                out.stdout,
                out.stderr
            );
        }
        Ok(true)
    }

    /// Fails unless most kill points of a sweep landed: a point may go
    /// unreached only when a thread's syscall order changed.
    fn enough_landed(landed: usize, points: usize, what: &str) -> Result<()> {
        ensure!(
            landed * 2 >= points,
            "{what}: only {landed} of {points} kill points landed"
        );
        Ok(())
    }

    /// ADD killed at each point, runtime DELs, pod retried and deleted.
    pub fn sweep_add(&self, victim: Victim) -> Result<usize> {
        let points = self.points(victim, "ADD")?;
        let mut landed = 0;
        for (i, at) in points.iter().enumerate() {
            let (cid, retry) = (format!("add{i}"), format!("retry{i}"));
            let when = format!("{victim:?} ADD killed at {at}");
            landed += usize::from(self.killed(victim, "ADD", &cid, at)?);
            self.ok("DEL", &cid)?;
            self.check(&[], &format!("{when}, then DEL"))?;
            self.ok("ADD", &retry)?;
            self.check(&[&retry], &format!("{when}, retried ADD"))?;
            self.ok("DEL", &retry)?;
            self.check(&[], &format!("{when}, retried pod deleted"))?;
        }
        Self::enough_landed(landed, points.len(), "ADD sweep")?;
        Ok(points.len())
    }

    /// ADD killed at each point and the runtime lost track of it: the next
    /// sandbox of the pod ADDs under a new container id (it gets the VF or
    /// fails cleanly while the stale attachment holds it), then the stale
    /// sandbox is DELed (kubelet's garbage collection), then the new one.
    pub fn sweep_add_again(&self, victim: Victim) -> Result<usize> {
        let points = self.points(victim, "ADD")?;
        let mut landed = 0;
        for (i, at) in points.iter().enumerate() {
            let (stale, next) = (format!("stale{i}"), format!("next{i}"));
            let when = format!("{victim:?} ADD killed at {at}");
            landed += usize::from(self.killed(victim, "ADD", &stale, at)?);
            let again = self.call("ADD", &next, &Mode::Plain);
            eprintln!(
                "{when}: ADD again {:?} -> {}",
                again.elapsed,
                outcome(&again)
            );
            let live: &[&str] = if again.status.success() {
                &[&stale, &next]
            } else {
                &[&stale]
            };
            self.check(live, &format!("{when}, ADD again -> {}", outcome(&again)))?;
            self.ok("DEL", &stale)?;
            let live: &[&str] = if again.status.success() {
                &[&next]
            } else {
                &[]
            };
            self.check(live, &format!("{when}, stale DEL"))?;
            self.ok("DEL", &next)?;
            self.check(&[], &format!("{when}, both DELs"))?;
        }
        Self::enough_landed(landed, points.len(), "ADD-again sweep")?;
        Ok(points.len())
    }

    /// DEL killed at each point, then DEL again.
    pub fn sweep_del(&self, victim: Victim) -> Result<usize> {
        let points = self.points(victim, "DEL")?;
        for (i, at) in points.iter().enumerate() {
            let cid = format!("del{i}");
            self.ok("ADD", &cid)?;
            // With host-device killed, plexus' DEL reports the failure (DEL
            // best-effort, errors listed); either way the retry must finish.
            let _ = self.killed(victim, "DEL", &cid, at);
            self.ok("DEL", &cid)?;
            self.check(&[], &format!("{victim:?} DEL killed at {at}, DEL again"))?;
        }
        Ok(points.len())
    }

    /// ADD under an API fault (whatever it answers), check, DEL, check.
    pub fn under_fault(&self, cid: &str, what: &str) -> Result<()> {
        let out = self.call("ADD", cid, &Mode::Plain);
        eprintln!("{what}: ADD -> {}", outcome(&out));
        if out.status.success() {
            self.check(&[cid], &format!("{what}: ADD succeeded"))?;
        } else {
            ensure!(
                out.json["code"].as_u64().is_some(),
                "{what}: no CNI error: {}",
                out.stdout
            );
            self.check(&[], &format!("{what}: ADD failed"))?;
        }
        self.api.clear_faults();
        self.ok("DEL", cid)?;
        self.check(&[], &format!("{what}: after DEL"))
    }
}

/// "ok" or "CNI error <code>: <msg>", for the test log.
pub fn outcome(out: &CniOutput) -> String {
    if out.status.success() {
        "ok".to_owned()
    } else {
        format!("CNI error {}: {}", out.json["code"], out.json["msg"])
    }
}
