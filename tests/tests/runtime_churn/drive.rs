//! The churn driver: per-pod plans drawn from a seed, worker threads running
//! pod lives through CRI, kubelet-like recovery, the plugin killer, figures.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{anyhow, ensure, Context, Result};
use plexus_e2e::runtime::Cri;
use serde_json::json;

use crate::node::{vf_home, ChurnNode, VFS};

const WORKERS: usize = 4;

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

/// Latencies of the calls that were not killed, and what went wrong.
#[derive(Default)]
pub struct Stats {
    pub run: Vec<Duration>,
    stop: Vec<Duration>,
    remove: Vec<Duration>,
    cycle: Vec<Duration>,
    client_kills: u32,
    failed_calls: u32,
    recoveries: u32,
    pub ids: BTreeSet<String>,
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
pub enum Plan {
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

/// The plan is drawn up front so a seed replays it whatever the timing.
pub fn draw_plans(seed: u64, pods: usize) -> Vec<Plan> {
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
pub struct Run {
    pub outcome: Result<()>,
    pub stats: Stats,
    plugin_kills: u32,
    elapsed: Duration,
}

/// Runs the plans on [`WORKERS`] threads, each taking a free VF per pod and
/// giving it back only once it is home again, while the plugin killer runs.
pub fn drive(t: &ChurnNode, plans: &[Plan], seed: u64) -> Run {
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
pub fn report(run: &mut Run, pods: usize, seed: u64) -> serde_json::Value {
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

/// PIDs of our plugins (run from the node's CNI bin dir) still alive.
pub fn plugin_pids(bin_dir: &Path) -> Vec<i32> {
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
