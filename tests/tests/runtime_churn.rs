//! Churn through the real runtime: many pod sandboxes created and destroyed
//! through containerd (CRI) with `plexus` + `host-device` + `vnic` IPAM over
//! four "VFs" (veth ends, MTU 9000, up; their VNICs in an agent-format state
//! file), four pods at a time, in random orders (stop then remove, or remove
//! a running sandbox), with some calls killed mid-way: the CRI client
//! SIGKILLed during RunPodSandbox/StopPodSandbox (containerd cancels the
//! request and kills the plugin it runs), and plugin processes SIGKILLed by
//! PID at random moments. After each failure the driver does what kubelet
//! does: stop and remove the pod's sandboxes until that succeeds.
//!
//! Checked: after each pod is gone its VF is home (name, MAC, MTU, up, no
//! address); at the end the shared checker (`plexus_e2e::consistency`) finds
//! every VF home, no stray pod netns, plexus cache entry, host-device record,
//! temp file or held lock, no leaked cluster IP, no libcni cache entry.
//! Latency per call (p50/p99) is printed and, with `PLEXUS_CHURN_REPORT`,
//! written as JSON.
//!
//! `PLEXUS_CHURN_PODS` (default 100, the CI form) sets how many pods;
//! `PLEXUS_CHURN_SEED` replays a run. The benchmark run (1000) is in
//! BENCHMARKS.md / docs/reliability.md.
// Test-only crate: fixture helpers fail the test by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, ensure, Context, Result};
use plexus_e2e::consistency::{Live, Node, VfHome};
use plexus_e2e::runtime::{test_vnic, write_state_file, Cri, PodSpec, RuntimeNode};
use plexus_testkit::kube::{FakeApiServer, Options};
use plexus_testkit::net::{self, Veth, VethEnd};
use serde_json::json;

const NETWORKS: &str = "k8s.v1.cni.cncf.io/networks";
const TOKEN: &str = "churn-node-token";
const VFS: usize = 4;
const VF_MTU: u32 = 9000;
const WORKERS: usize = 4;

fn vf_mac(i: usize) -> String {
    format!("02:00:17:00:c0:{i:02x}")
}

fn vnic_ip(i: usize) -> String {
    format!("203.0.113.{}", 10 + i)
}

/// A small xorshift PRNG: reproducible from the printed seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    /// Uniform in `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The node: containerd with plexus as its CNI, the fake API in the node
/// netns, four VFs. Field order is drop order (node before the API it uses).
struct ChurnNode {
    node: RuntimeNode,
    api: FakeApiServer,
    vfs: Vec<Veth>,
}

impl ChurnNode {
    fn new() -> Result<Self> {
        let node = RuntimeNode::new()?;
        for plugin in ["bridge", "host-local"] {
            node.link_reference_plugin(plugin)?;
        }
        for plugin in ["plexus", "host-device", "static", "vnic"] {
            node.install_plugin(plugin, &net::bin_path(plugin))?;
        }
        let api = node.in_node_netns(|| {
            FakeApiServer::start_with(Options {
                token: Some(TOKEN.to_owned()),
                seed: Vec::new(),
                ..Options::default()
            })
        })??;
        let vfs = (0..VFS)
            .map(|i| {
                Veth::create(
                    VethEnd::new(net::unique_name("vf"))
                        .in_ns(node.netns())
                        .mac(vf_mac(i))
                        .mtu(VF_MTU)
                        .up(),
                    VethEnd::new(net::unique_name("wire"))
                        .in_ns(node.netns())
                        .up(),
                )
            })
            .collect();
        let this = Self { node, api, vfs };
        this.write_configs()?;
        Ok(this)
    }

    fn aux(&self) -> PathBuf {
        self.node.plexus_aux_dir()
    }

    fn host_device_dir(&self) -> PathBuf {
        self.node.work_dir().join("host-device")
    }

    fn state_file(&self) -> PathBuf {
        self.aux().join("state.json")
    }

    /// kubeconfig, conflists, the agent-format state file and one NAD per VF.
    fn write_configs(&self) -> Result<()> {
        let aux = self.aux();
        fs::create_dir_all(&aux)?;
        fs::write(aux.join("token"), TOKEN)?;
        self.node.write_plexus_layout(
            json!({"server": self.api.url()}),
            json!({"tokenFile": aux.join("token")}),
        )?;
        let path = |p: &Path| p.display().to_string();
        let vnic = |i: usize, ifname, mac: &str, ip: &str, primary| {
            let id = format!("ocid1.vnic.oc1..churn{i}");
            test_vnic(id, ifname, mac, ip, primary, VF_MTU)
        };
        let mut vnics = vec![vnic(99, None, "02:00:17:00:c0:ff", "203.0.113.2", true)?];
        for (i, vf) in self.vfs.iter().enumerate() {
            vnics.push(vnic(
                i,
                Some(vf.a().to_owned()),
                &vf_mac(i),
                &vnic_ip(i),
                false,
            )?);
        }
        write_state_file(&self.state_file(), vnics)?;
        for (i, vf) in self.vfs.iter().enumerate() {
            let config = json!({
                "cniVersion": "1.0.0",
                "type": "host-device",
                "device": vf.a(),
                "dataDir": path(&self.host_device_dir()),
                "ipam": {"type": "vnic", "stateFile": path(&self.state_file())},
            });
            self.api
                .put_nad("default", &format!("vf{i}"), &config.to_string())
                .map_err(|e| anyhow!("put_nad: {e}"))?;
        }
        Ok(())
    }

    fn vf_homes(&self) -> Vec<VfHome> {
        self.vfs
            .iter()
            .enumerate()
            .map(|(i, vf)| VfHome {
                name: vf.a().to_owned(),
                mac: vf_mac(i),
                mtu: u64::from(VF_MTU),
                up: true,
            })
            .collect()
    }

    fn checker(&self) -> Node {
        Node {
            netns: self.node.netns().path(),
            vfs: self.vf_homes(),
            pod_addrs: (0..VFS).map(vnic_ip).collect(),
            record_dirs: vec![self.host_device_dir(), self.aux().join("cache")],
        }
    }

    /// A pod in the API requesting VF `vf`.
    fn pod(&self, n: usize, vf: usize) -> Result<PodSpec> {
        let networks = format!("vf{vf}");
        let pod = PodSpec::new(&format!("churn-{n}"))?.annotation(NETWORKS, &networks);
        self.api
            .put_pod(json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": pod.name, "namespace": pod.namespace, "uid": pod.uid,
                             "annotations": {NETWORKS: networks}},
                "spec": {"containers": [{"name": "app", "image": "localhost/app"}]},
            }))
            .map_err(|e| anyhow!("put_pod: {e}"))?;
        Ok(pod)
    }
}

/// Latencies of the calls that were not killed, and what went wrong.
#[derive(Default)]
struct Stats {
    run: Vec<Duration>,
    stop: Vec<Duration>,
    remove: Vec<Duration>,
    cycle: Vec<Duration>,
    client_kills: u32,
    failed_calls: u32,
    recoveries: u32,
    ids: BTreeSet<String>,
}

fn percentile(v: &mut [Duration], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_unstable();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i].as_secs_f64() * 1000.0
}

/// What one pod's life looks like.
#[derive(Debug, Clone, Copy)]
enum Plan {
    StopRemove,
    RemoveRunning,
    KillRun(u64),
    KillStop(u64),
}

/// Kubelet after a failed call: stop and remove every sandbox of the pod
/// until none is left. A killed RunPodSandbox may still finish inside
/// containerd, so the pod must stay gone for a while before it counts.
fn reap(cri: &Cri, uid: &str, stats: &Mutex<Stats>) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut quiet = 0;
    while quiet < 3 {
        ensure!(
            Instant::now() < deadline,
            "pod {uid} could not be removed in 60 s"
        );
        let ids: Vec<String> = cri
            .sandboxes()?
            .iter()
            .filter(|s| s["metadata"]["uid"] == uid)
            .filter_map(|s| s["id"].as_str().map(str::to_owned))
            .collect();
        if ids.is_empty() {
            quiet += 1;
        } else {
            quiet = 0;
            stats.lock().unwrap().recoveries += 1;
        }
        for id in ids {
            stats.lock().unwrap().ids.insert(id.clone());
            let _ = cri.stop(&id);
            let _ = cri.remove(&id);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

fn timed<T, E>(f: impl FnOnce() -> Result<T, E>) -> (Duration, Result<T, E>) {
    let t = Instant::now();
    let r = f();
    (t.elapsed(), r)
}

/// One pod's life through the runtime; errors are counted and followed by
/// kubelet's cleanup, never fatal. Fails only if the node cannot recover.
fn pod_life(t: &ChurnNode, n: usize, vf: usize, plan: Plan, stats: &Mutex<Stats>) -> Result<()> {
    let cri = t.node.cri();
    let pod = t.pod(n, vf)?;
    let config = t.node.pod_config(&pod);
    let started = Instant::now();
    let clean = match plan {
        Plan::KillRun(ms) => {
            let killed =
                cri.call_killed_after(&["runp"], Some(&config), Duration::from_millis(ms))?;
            stats.lock().unwrap().client_kills += u32::from(killed);
            false
        }
        _ => {
            let (took, id) = timed(|| cri.run_pod(&config));
            match id {
                Ok(id) => {
                    let mut s = stats.lock().unwrap();
                    s.run.push(took);
                    s.ids.insert(id.clone());
                    drop(s);
                    finish(cri, &id, plan, stats)
                }
                Err(_) => {
                    stats.lock().unwrap().failed_calls += 1;
                    false
                }
            }
        }
    };
    if !clean {
        reap(cri, &pod.uid, stats)?;
    } else {
        stats.lock().unwrap().cycle.push(started.elapsed());
    }
    t.api
        .delete_object(&format!("/api/v1/namespaces/default/pods/{}", pod.name));
    Ok(())
}

/// Stop/remove per plan; false if a call failed or was killed.
fn finish(cri: &Cri, id: &str, plan: Plan, stats: &Mutex<Stats>) -> bool {
    if let Plan::KillStop(ms) = plan {
        let killed = cri
            .call_killed_after(&["stopp", id], None, Duration::from_millis(ms))
            .unwrap_or(false);
        stats.lock().unwrap().client_kills += u32::from(killed);
        return false;
    }
    if matches!(plan, Plan::StopRemove) {
        let (took, r) = timed(|| cri.stop(id));
        if r.is_err() {
            stats.lock().unwrap().failed_calls += 1;
            return false;
        }
        stats.lock().unwrap().stop.push(took);
    }
    let (took, r) = timed(|| cri.remove(id));
    if r.is_err() {
        stats.lock().unwrap().failed_calls += 1;
        return false;
    }
    stats.lock().unwrap().remove.push(took);
    true
}

/// The VF `i` is home as the node had it.
fn vf_home(t: &ChurnNode, i: usize) -> Result<()> {
    let want = &t.vf_homes()[i];
    let Some(link) = t.node.netns().link(&want.name) else {
        return Err(anyhow!(
            "VF {} not on the node: {}",
            want.name,
            where_is(t, i)
        ));
    };
    let up = link["flags"]
        .as_array()
        .is_some_and(|f| f.iter().any(|x| x == "UP"));
    ensure!(
        link["address"] == want.mac.as_str() && link["mtu"] == want.mtu && up == want.up,
        "VF {} changed: {link}",
        want.name
    );
    Ok(())
}

/// Where VF `i` went: a link with its MAC on the node (renamed) or in a pod
/// netns, and whether its veth peer still exists (gone: the pair died with
/// a pod netns, as a real VF would have fallen back to the host as `net1`).
fn where_is(t: &ChurnNode, i: usize) -> String {
    let mac = vf_mac(i);
    let mut seen = Vec::new();
    let node_links = t.node.netns().links();
    for l in node_links.as_array().into_iter().flatten() {
        if l["address"] == mac.as_str() {
            seen.push(format!("on the node as {}", l["ifname"]));
        }
    }
    for e in fs::read_dir("/run/netns").into_iter().flatten().flatten() {
        let path = e.path();
        if !e.file_name().to_string_lossy().starts_with("cni-") {
            continue;
        }
        if let Ok(links) = plexus_e2e::runtime::ip_json_at(&path, &["link", "show"]) {
            for l in links.as_array().into_iter().flatten() {
                if l["address"] == mac.as_str() {
                    seen.push(format!("in {} as {}", path.display(), l["ifname"]));
                }
            }
        }
    }
    let peer = t.vfs[i].b();
    let peer_alive = t.node.netns().link(peer).is_some();
    format!("seen {seen:?}; veth peer {peer} exists: {peer_alive}")
}

/// SIGKILLs plexus/host-device/vnic processes started from the node's CNI
/// bin dir, at random, until `stop` is set. Returns how many it killed.
fn plugin_killer(bin_dir: &Path, seed: u64, stop: &AtomicBool, kills: &AtomicU32) {
    let mut rng = Rng(seed | 1);
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(20 + rng.below(200)));
        if rng.below(100) >= 15 {
            continue;
        }
        if let Some(&pid) = plugin_pids(bin_dir).first() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
            kills.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// The plan is drawn up front so a seed replays it whatever the timing.
fn draw_plans(seed: u64, pods: usize) -> Vec<Plan> {
    let mut rng = Rng(seed | 1);
    (0..pods)
        .map(|_| match rng.below(100) {
            0..=64 => Plan::StopRemove,
            65..=84 => Plan::RemoveRunning,
            85..=92 => Plan::KillRun(50 + rng.below(600)),
            _ => Plan::KillStop(20 + rng.below(300)),
        })
        .collect()
}

/// What a run measured.
struct Run {
    outcome: Result<()>,
    stats: Stats,
    plugin_kills: u32,
    elapsed: Duration,
}

/// Runs the plans on [`WORKERS`] threads, each taking a free VF per pod and
/// giving it back only once it is home again, while the plugin killer runs.
fn drive(t: &ChurnNode, plans: &[Plan], seed: u64) -> Run {
    let free = Mutex::new((0..VFS).collect::<Vec<usize>>());
    let next = Mutex::new(0usize);
    let stats = Mutex::new(Stats::default());
    let stop = AtomicBool::new(false);
    let plugin_kills = AtomicU32::new(0);
    let started = Instant::now();
    let worker = || -> Result<()> {
        loop {
            let n = {
                let mut n = next.lock().unwrap();
                if *n >= plans.len() {
                    return Ok(());
                }
                *n += 1;
                *n - 1
            };
            let vf = free.lock().unwrap().pop().context("no free VF")?;
            pod_life(t, n, vf, plans[n], &stats)?;
            vf_home(t, vf).with_context(|| format!("after pod {n} ({:?})", plans[n]))?;
            free.lock().unwrap().push(vf);
        }
    };
    let bin_dir = t.node.cni_bin_dir();
    let outcome = std::thread::scope(|s| {
        let killer =
            s.spawn(|| plugin_killer(&bin_dir, seed.rotate_left(17), &stop, &plugin_kills));
        let workers: Vec<_> = (0..WORKERS).map(|_| s.spawn(worker)).collect();
        let mut result = Ok(());
        for w in workers {
            let r = w.join().unwrap_or_else(|_| Err(anyhow!("worker panicked")));
            if result.is_ok() {
                result = r;
            }
        }
        stop.store(true, Ordering::Relaxed);
        let _ = killer.join();
        result
    });
    Run {
        outcome,
        stats: stats.into_inner().unwrap(),
        plugin_kills: plugin_kills.load(Ordering::Relaxed),
        elapsed: started.elapsed(),
    }
}

/// The run's figures as JSON (milliseconds per CRI call that was not killed).
fn report(run: &mut Run, pods: usize, seed: u64) -> serde_json::Value {
    let s = &mut run.stats;
    let ms = |v: &mut Vec<Duration>| json!({"n": v.len(), "p50": percentile(v, 0.5), "p99": percentile(v, 0.99)});
    json!({
        "pods": pods,
        "seed": seed,
        "seconds": run.elapsed.as_secs_f64(),
        "client_kills": s.client_kills,
        "plugin_kills": run.plugin_kills,
        "failed_calls": s.failed_calls,
        "recoveries": s.recoveries,
        "run_ms": ms(&mut s.run),
        "stop_ms": ms(&mut s.stop),
        "remove_ms": ms(&mut s.remove),
        "cycle_ms": ms(&mut s.cycle),
    })
}

/// The end state: nothing left anywhere.
fn assert_clean(t: &ChurnNode, stats: &Stats, results_before: &BTreeSet<String>) -> Result<()> {
    t.node.assert_no_sandboxes()?;
    let cni_netns: Vec<PathBuf> = fs::read_dir("/run/netns")?
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("cni-"))
        .map(|e| e.path())
        .collect();
    t.checker().check(&Live::new(), &[], &cni_netns)?;
    let leaked = leaked_cluster_ips(&t.node.work_dir().join("cni/ipam"))?;
    ensure!(
        leaked.is_empty(),
        "host-local leaked cluster IPs: {leaked:?}"
    );
    let stale: Vec<String> = libcni_cache_entries()
        .difference(results_before)
        .filter(|e| stats.ids.iter().any(|id| e.contains(id.as_str())))
        .cloned()
        .collect();
    ensure!(stale.is_empty(), "libcni cache entries left: {stale:?}");
    ensure!(!stats.run.is_empty(), "no pod ran");
    Ok(())
}

#[test]
fn runtime_churn_pods_keep_vfs_and_leave_nothing() -> Result<()> {
    let pods = env_u64("PLEXUS_CHURN_PODS").unwrap_or(100) as usize;
    let seed = env_u64("PLEXUS_CHURN_SEED").unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    });
    eprintln!("churn: {pods} pods, seed {seed} (PLEXUS_CHURN_SEED={seed} replays the plan)");
    let mut t = ChurnNode::new()?;
    t.node.start()?;
    let results_before = libcni_cache_entries();
    let mut run = drive(&t, &draw_plans(seed, pods), seed);
    let figures = report(&mut run, pods, seed);
    eprintln!("churn report: {figures}");
    if let Ok(path) = std::env::var("PLEXUS_CHURN_REPORT") {
        fs::write(&path, serde_json::to_string_pretty(&figures)?)?;
    }
    if let Err(e) = run.outcome {
        // The node's work dir goes with the teardown: keep the plugin log.
        let kept = std::env::temp_dir().join(format!("plexus-churn-{seed}.log"));
        let _ = fs::copy(t.node.work_dir().join("logs/plexus.log"), &kept);
        bail!(
            "{e:#}\nplexus log kept in {}\n{}",
            kept.display(),
            t.node.log_tail()
        );
    }
    assert_clean(&t, &run.stats, &results_before)?;
    // A delegate dies with a killed plexus (PR_SET_PDEATHSIG) and a plugin
    // still running seconds after the last call is hung.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut plugins = plugin_pids(&t.node.cni_bin_dir());
    while !plugins.is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        plugins = plugin_pids(&t.node.cni_bin_dir());
    }
    ensure!(
        plugins.is_empty(),
        "plugin processes still running: {plugins:?}"
    );
    let ChurnNode { node, api, vfs } = t;
    let forced = node.shutdown_forced();
    drop(vfs);
    drop(api);
    // containerd 1.6 can leave a sandbox's shim or pause process behind when
    // its client is killed mid-RunPodSandbox: the runtime's leak, not a
    // plugin's (no sandbox, netns, VF or record is left, checked above).
    let (runtime, other): (Vec<_>, Vec<_>) = forced
        .into_iter()
        .partition(|e| e.starts_with("killed stray process"));
    if !runtime.is_empty() {
        eprintln!("churn: containerd left processes behind (its own leak): {runtime:?}");
    }
    ensure!(other.is_empty(), "teardown had to clean up: {other:?}");
    Ok(())
}

/// PIDs of our plugins (run from the node's CNI bin dir) still alive.
fn plugin_pids(bin_dir: &Path) -> Vec<i32> {
    let targets: Vec<PathBuf> = ["plexus", "host-device", "vnic"]
        .iter()
        .map(|p| bin_dir.join(p))
        .collect();
    fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|p| {
            let pid = p.file_name().to_string_lossy().parse::<i32>().ok()?;
            let exe = fs::read_link(p.path().join("exe")).ok()?;
            targets.contains(&exe).then_some(pid)
        })
        .collect()
}

/// host-local's per-IP reservation files (anything but its bookkeeping).
fn leaked_cluster_ips(dir: &Path) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let Ok(nets) = fs::read_dir(dir) else {
        return Ok(out);
    };
    for net in nets.flatten() {
        for f in fs::read_dir(net.path())?.flatten() {
            let name = f.file_name().to_string_lossy().into_owned();
            if name != "lock" && !name.starts_with("last_reserved_ip") {
                out.push(name);
            }
        }
    }
    Ok(out)
}

/// libcni's result cache (`/var/lib/cni/results`), as file names.
fn libcni_cache_entries() -> BTreeSet<String> {
    fs::read_dir("/var/lib/cni/results")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}
