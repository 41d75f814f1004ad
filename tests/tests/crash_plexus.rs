//! Crash consistency of the meta plugin: `plexus` (or the `host-device` it
//! delegates to) SIGKILLed at every marker syscall of ADD and DEL, and the
//! Kubernetes API failing (5xx, answers slower than the plugin's timeout).
//! Then what the runtime does next (DEL; a retried ADD; DEL again), and the
//! shared checker must find the node consistent: the VF home as it was or in
//! exactly one live pod, its address in one place, no stray plexus cache
//! entry, host-device record, temp file or held lock.
//!
//! plexus runs in a node netns (through a wrapper, under strace when it is
//! the victim), the fake API listens there, the cluster network is `static`
//! (it only computes eth0's result), the NAD is host-device + static. The
//! host-device in plexus' `binDir` is a wrapper too, so it can be the victim.
//!
//! Root only (panics otherwise).
// Test-only crate: fixture helpers fail the test by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::os::unix::fs::symlink;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{bail, ensure, Result};
use plexus_e2e::consistency::{Live, Node, VfHome};
use plexus_e2e::crash::{kill_points, was_killed, wrapper, KillAt, Mode, TestMount};
use plexus_netns::NetNs;
use plexus_testkit::kube::FakeApiServer;
use plexus_testkit::net::{
    self, bin_path, require_root, CniCall, CniOutput, TestNs, Veth, VethEnd,
};
use serde_json::json;

const VF_MAC: &str = "02:00:cb:00:71:d1";
const VF_MTU: u32 = 9000;
const ADDR: &str = "203.0.113.62";
const POD: &str = "crashpod";

/// Which process gets killed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Victim {
    Plexus,
    HostDevice,
}

/// Node netns with one VF and the fake API; a pod netns per container id.
/// Drop order: API, VF, pods, node, temp dir.
struct Fixture {
    api: FakeApiServer,
    _vf: Veth,
    pods: Mutex<BTreeMap<String, TestNs>>,
    node: TestNs,
    tmp: tempfile::TempDir,
    vf_name: String,
    uid: String,
    /// Extra plexus config keys a test sets.
    extra: Mutex<serde_json::Map<String, serde_json::Value>>,
}

impl Fixture {
    fn new() -> Result<Self> {
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

    fn pod(&self, cid: &str) -> PathBuf {
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
    fn call(&self, command: &str, cid: &str, plexus: &Mode) -> CniOutput {
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

    /// Checks the node; when nothing is live and it is consistent, the pod
    /// netns of finished attachments are deleted (the next check need not
    /// search them again).
    fn check(&self, cids: &[&str], when: &str) -> Result<()> {
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
    fn sweep_add(&self, victim: Victim) -> Result<usize> {
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
    fn sweep_add_again(&self, victim: Victim) -> Result<usize> {
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
    fn sweep_del(&self, victim: Victim) -> Result<usize> {
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
    fn under_fault(&self, cid: &str, what: &str) -> Result<()> {
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

#[test]
fn crash_plexus_killed_during_add_then_del_and_retry() -> Result<()> {
    let f = Fixture::new()?;
    let n = f.sweep_add(Victim::Plexus)?;
    eprintln!("plexus ADD: {n} kill points consistent");
    Ok(())
}

#[test]
fn crash_plexus_killed_during_add_then_add_again() -> Result<()> {
    let f = Fixture::new()?;
    let n = f.sweep_add_again(Victim::Plexus)?;
    eprintln!("plexus ADD then ADD again: {n} kill points consistent");
    Ok(())
}

#[test]
fn crash_plexus_killed_during_del_then_del_again() -> Result<()> {
    let f = Fixture::new()?;
    let n = f.sweep_del(Victim::Plexus)?;
    eprintln!("plexus DEL: {n} kill points consistent");
    Ok(())
}

#[test]
fn crash_plexus_host_device_killed_under_plexus() -> Result<()> {
    let f = Fixture::new()?;
    let add = f.sweep_add(Victim::HostDevice)?;
    let del = f.sweep_del(Victim::HostDevice)?;
    eprintln!("host-device under plexus: ADD {add}, DEL {del} kill points consistent");
    Ok(())
}

/// The API server failing: 5xx on the pod GET and on the status PATCH,
/// answers slower than `apiTimeoutSeconds`. Whatever ADD decides, the node
/// is consistent, and DEL (needing no API) cleans it.
#[test]
fn crash_plexus_api_faults() -> Result<()> {
    let f = Fixture::new()?;
    let pod = format!("/api/v1/namespaces/default/pods/{POD}");
    f.api.inject("GET", &pod, 503, 100);
    f.under_fault("get503", "GET pod 503")?;
    f.api.inject("PATCH", &pod, 500, 100);
    f.under_fault("patch500", "PATCH status 500")?;
    f.api
        .inject_latency("GET", &pod, Duration::from_secs(4), 100);
    f.under_fault("getslow", "GET pod slower than the timeout")?;
    f.api
        .inject_latency("PATCH", &pod, Duration::from_secs(4), 100);
    f.under_fault("patchslow", "PATCH slower than the timeout")?;
    Ok(())
}

/// Two runtimes (or a runtime and its retry) racing ADD and DEL for one
/// container: whatever order they land in, the node is consistent while the
/// container may still exist, and the DEL kubelet sends last cleans it.
#[test]
fn crash_plexus_racing_add_and_del_one_container() -> Result<()> {
    let f = Fixture::new()?;
    // Writes the wrapper once, before two callers share it.
    f.ok("DEL", "warmup")?;
    for i in 0..12 {
        let cid = format!("race{i}");
        f.pod(&cid);
        let (add, del) = std::thread::scope(|s| {
            let add = s.spawn(|| f.call("ADD", &cid, &Mode::Plain));
            if i % 2 == 1 {
                std::thread::sleep(Duration::from_millis(5 * i));
            }
            let del = s.spawn(|| f.call("DEL", &cid, &Mode::Plain));
            (add.join().unwrap(), del.join().unwrap())
        });
        ensure!(
            del.status.success(),
            "racing DEL failed: {}{}",
            del.stdout,
            del.stderr
        );
        let when = format!("race {i} (ADD ok: {})", add.status.success());
        f.check(&[&cid], &when)?;
        f.ok("DEL", &cid)?;
        f.check(&[], &format!("{when}, final DEL"))?;
    }
    Ok(())
}

/// plexus' cache dir read-only, then full (a 64 KiB tmpfs filled up): ADD
/// fails with a CNI error and undoes the delegates, or succeeds; DEL always
/// succeeds; the node ends consistent.
#[test]
fn crash_plexus_cache_dir_read_only_or_full() -> Result<()> {
    let f = Fixture::new()?;
    let cache = f.tmp.path().join("cache");
    std::fs::create_dir_all(&cache)?;
    {
        let _ro = TestMount::bind_read_only(&cache)?;
        f.under_fault("ro", "read-only cache dir")?;
    }
    let _full = TestMount::tiny_tmpfs(&cache)?;
    let _ = std::fs::write(cache.join("filler"), vec![b' '; 128 * 1024]);
    let out = f.call("ADD", "full", &Mode::Plain);
    let _ = std::fs::remove_file(cache.join("filler"));
    if out.status.success() {
        f.check(&["full"], "full cache dir: ADD succeeded")?;
    } else {
        ensure!(
            out.json["code"].as_u64().is_some(),
            "full: no CNI error: {}",
            out.stdout
        );
        f.check(&[], "full cache dir: ADD failed")?;
    }
    f.ok("DEL", "full")?;
    f.check(&[], "full cache dir: after DEL")
}

/// The NAD names a device-plugin resource and the kubelet's PodResources
/// socket is down (missing, or a stale socket file nobody serves): ADD
/// fails with a CNI error before touching anything, DEL succeeds.
#[test]
fn crash_plexus_pod_resources_down() -> Result<()> {
    let f = Fixture::new()?;
    let nad = json!({
        "apiVersion": "k8s.cni.cncf.io/v1", "kind": "NetworkAttachmentDefinition",
        "metadata": {"name": "vf", "namespace": "default",
            "annotations": {"k8s.v1.cni.cncf.io/resourceName": "oracle.com/vf"}},
        "spec": {"config": json!({
            "cniVersion": "1.0.0", "type": "host-device", "device": f.vf_name,
            "dataDir": f.tmp.path().join("host-device"),
            "ipam": {"type": "static", "addresses": [{"address": format!("{ADDR}/24")}]},
        }).to_string()},
    });
    f.api.put_object(nad).map_err(anyhow::Error::msg)?;
    let stale = f.tmp.path().join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale)?);
    for (name, socket) in [
        ("missing", f.tmp.path().join("none.sock")),
        ("stale", stale),
    ] {
        {
            let mut extra = f.extra.lock().unwrap();
            extra.insert("podResourcesSocket".into(), json!(socket));
            extra.insert("podResourcesTimeoutSeconds".into(), json!(1));
        }
        let out = f.call("ADD", name, &Mode::Plain);
        ensure!(
            !out.status.success(),
            "ADD {name} succeeded without PodResources"
        );
        ensure!(
            out.json["code"].as_u64().is_some(),
            "{name}: no CNI error: {}",
            out.stdout
        );
        f.check(&[], &format!("PodResources {name}: ADD failed"))?;
        f.ok("DEL", name)?;
        f.check(&[], &format!("PodResources {name}: after DEL"))?;
    }
    Ok(())
}

/// "ok" or "CNI error <code>: <msg>", for the test log.
fn outcome(out: &CniOutput) -> String {
    if out.status.success() {
        "ok".to_owned()
    } else {
        format!("CNI error {}: {}", out.json["code"], out.json["msg"])
    }
}

/// An API server that sends a response's headers and the start of its body,
/// then hangs (a proxy or server stalled mid-response): plexus gives up at
/// `apiTimeoutSeconds` with a retriable CNI error, nothing changed; DEL
/// needs no API.
#[test]
fn crash_plexus_api_hangs_mid_body() -> Result<()> {
    use std::io::{Read, Write};
    let f = Fixture::new()?;
    let node = NetNs::open(f.node.path())?;
    let listener = plexus_netns::run_in(&node, || std::net::TcpListener::bind("127.0.0.1:0"))??;
    let url = format!("http://{}", listener.local_addr()?);
    listener.set_nonblocking(true)?;
    let stop = std::sync::atomic::AtomicBool::new(false);
    let kubeconfig = f.tmp.path().join("kubeconfig");
    let text = std::fs::read_to_string(&kubeconfig)?.replace(&f.api.url(), &url);
    std::fs::write(&kubeconfig, text)?;
    let result = std::thread::scope(|s| {
        s.spawn(|| {
            let mut held = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut conn, _)) => {
                        let mut buf = [0u8; 4096];
                        let _ = conn.read(&mut buf);
                        let _ = conn.write_all(
                            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
                              Content-Length: 4096\r\n\r\n{\"kind\":\"Pod\",\"metadata\":{",
                        );
                        held.push(conn);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        let r = (|| {
            let out = f.call("ADD", "hang", &Mode::Plain);
            eprintln!(
                "API hangs mid-body: ADD -> {} after {:?}",
                outcome(&out),
                out.elapsed
            );
            ensure!(!out.status.success(), "ADD succeeded against a hanging API");
            ensure!(
                out.json["code"] == 11,
                "not a retriable error: {}",
                out.stdout
            );
            ensure!(
                out.elapsed < Duration::from_secs(15),
                "ADD hung {:?}",
                out.elapsed
            );
            f.check(&[], "API hangs mid-body: ADD failed")?;
            f.ok("DEL", "hang")?;
            f.check(&[], "API hangs mid-body: after DEL")
        })();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        r
    });
    result
}
