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

mod drive;
mod leaks;
mod node;

use std::fs;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, ensure, Result};

use drive::{draw_plans, drive, plugin_pids, report};
use leaks::{assert_clean, libcni_cache_entries};
use node::ChurnNode;

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
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
