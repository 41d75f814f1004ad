//! plexus-bench-meta: what the meta plugin costs on top of its delegates.
//!
//! Ten series, interleaved round-robin in one run so machine noise hits
//! all of them alike, each an ADD then a DEL of one pod:
//!
//! 1. `static` alone, called directly (the delegate's own cost);
//! 2. `plexus` with that `static` conf as its only (inline) delegate, no
//!    Kubernetes: the meta plugin's own cost (`static` runs in-process);
//! 3. as 2 with the delegate exec'd (a `plexus` link with no delegates next
//!    to it): what in-process delegates save;
//! 4. the delegates of 5 called directly: `static` as the cluster network on
//!    `eth0`, then `host-device` + `static` (the tutorial's NAD) on `net1`;
//! 5. `plexus` with the fake Kubernetes API (pod seeded with the networks
//!    annotation, NAD seeded): it GETs the pod and the NAD, runs the same
//!    delegates, PATCHes the network-status, posts events;
//! 6. as 5 with the delegates exec'd;
//! 7. the API-bound scenario: cluster `static`, one NAD `static`, fake API;
//! 8. as 7 with the delegates exec'd;
//! 9. the tutorial's shape, delegates called directly: the cluster network
//!    is `host-device` too (a second VF, `ens6`, as `eth0`), then the NAD's
//!    `host-device` + `static` on `net1` — four namespace moves per cycle;
//! 10. as 9 through `plexus` with the fake API.
//!
//! The fake API answers after the per-verb delays measured on
//! kube-apiserver v1.28 (`--api-latency`), over TLS from a test CA with ALPN
//! `h2`/`http/1.1` as kube-apiserver serves (`--api-scheme https`, the
//! default: each plugin process pays its TLS handshake, 1.9 ms modelled plus
//! the crypto), TLS with ALPN `http/1.1` only (`https-http1`: the client's
//! fallback, as behind a proxy without h2), or plain HTTP/1.1 (`http`).
//!
//! Plus peak RSS per call (`getrusage(RUSAGE_CHILDREN).ru_maxrss` in a fresh
//! helper process, i.e. the `wait4` figure: the maximum over the plugin and
//! the delegates it reaped) and the API requests per ADD and per DEL from
//! the fake's request log.
//!
//! Runs as root in namespaces it creates: a "node" namespace holding the
//! veth "VF" (`ens5`) and the fake API on its loopback, and a "pod"
//! namespace the VF moves into on every ADD and out of on every DEL.
// A benchmark's report is its output: printing to stdout is the point here.
#![allow(clippy::print_stdout)]
// Benchmark driver (not shipped): `main` and `report::report` are not yet
// split to the 80-line function limit.
#![allow(clippy::too_many_lines)]

mod report;
mod rig;
mod rss;
mod series;

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Parser;
use plexus_testkit::net::{bin_dir, require_root};
use serde_json::json;

use report::report;
use rig::{Rig, VF, VF2};
use rss::{peak_rss_kib, probe_main, PROBE_ARG};
use series::{run_cycles, Series};

#[derive(Debug, Parser)]
#[command(name = "plexus-bench-meta", version = plexus_buildinfo::LONG, about = "Meta-plugin overhead, peak RSS and API requests (run as root)")]
struct Args {
    /// Measured ADD+DEL cycles per series.
    #[arg(long, default_value_t = 200)]
    cycles: usize,
    /// Unmeasured cycles first.
    #[arg(long, default_value_t = 10)]
    warmup: usize,
    /// Helper runs per RSS figure (the maximum is reported).
    #[arg(long, default_value_t = 5)]
    rss_runs: usize,
    /// Our plugins (default: this binary's directory, target/release when
    /// built with `cargo build --release`).
    #[arg(long)]
    ours: Option<PathBuf>,
    /// The fake API's per-verb answer delay: `kube-1.28` (medians measured
    /// on kube-apiserver v1.28), `off`, or `get-pod=MS,get=MS,patch=MS,post=MS`.
    #[arg(long, default_value = "kube-1.28")]
    api_latency: String,
    /// `https` (TLS from a test CA, ALPN h2 then http/1.1, as
    /// kube-apiserver), `https-http1` (ALPN http/1.1 only) or `http`
    /// (plain HTTP/1.1).
    #[arg(long, default_value = "https", value_parser = ["https", "https-http1", "http"])]
    api_scheme: String,
}

fn main() -> Result<()> {
    if std::env::args().nth(1).as_deref() == Some(PROBE_ARG) {
        return probe_main();
    }
    let args = Args::parse();
    require_root();
    let ours = args.ours.clone().unwrap_or_else(bin_dir);
    for bin in ["plexus", "host-device", "static"] {
        if !ours.join(bin).is_file() {
            bail!(
                "{} missing: cargo build --release -p plexus -p plexus-host-device -p plexus-static",
                ours.join(bin).display()
            );
        }
    }
    let load_before = loadavg();
    let latency =
        plexus_testkit::kube::VerbLatency::parse(&args.api_latency).map_err(anyhow::Error::msg)?;
    let rig = Rig::new(ours.clone(), &args.api_scheme)?;
    rig.api.set_verb_latency(latency);
    let st = Rig::static_conf();
    let nad = rig.nad_config();
    let plain = rig.plexus_conf(false, &rig.path("cache"));
    let kube = rig.plexus_conf(true, &rig.path("cache-kube"));
    let cluster_hd = rig.cluster_host_device_conf();
    let mut tutorial = rig.plexus_conf(true, &rig.path("cache-tutorial"));
    tutorial["delegates"] = json!([cluster_hd]);

    // Sanity pass: ADD moves the VF in with the NAD's address, DEL returns it.
    let add = rig.run(&rig.call("plexus", "ADD", "pxbm-kube", "eth0", &kube))?;
    if rig.pod.addrs("net1").get(0).map(|a| a["local"].clone()) != Some(json!("198.51.100.11")) {
        bail!(
            "plexus ADD did not give the pod net1 198.51.100.11: {}",
            add.stdout
        );
    }
    rig.run(&rig.call("plexus", "DEL", "pxbm-kube", "eth0", &kube))?;
    if rig.pod.link("net1").is_some() {
        bail!("plexus DEL left net1 in the pod");
    }

    let mut series = vec![
        Series::new(
            "static (delegate alone)",
            vec![rig.call("static", "ADD", "pxbm-st", "eth0", &st)],
            vec![rig.call("static", "DEL", "pxbm-st", "eth0", &st)],
        ),
        Series::new(
            "plexus → static, no API",
            vec![rig.call("plexus", "ADD", "pxbm-plain", "eth0", &plain)],
            vec![rig.call("plexus", "DEL", "pxbm-plain", "eth0", &plain)],
        ),
        Series::new(
            "plexus → static, no API, delegate exec'd",
            vec![rig.call_exec("ADD", "pxbm-px", &plain)],
            vec![rig.call_exec("DEL", "pxbm-px", &plain)],
        ),
        Series::new(
            "static + host-device/static (delegates alone)",
            vec![
                rig.call("static", "ADD", "pxbm-dir", "eth0", &st),
                rig.call("host-device", "ADD", "pxbm-dir", "net1", &nad),
            ],
            vec![
                rig.call("host-device", "DEL", "pxbm-dir", "net1", &nad),
                rig.call("static", "DEL", "pxbm-dir", "eth0", &st),
            ],
        ),
        Series::new(
            "plexus → static + host-device/static, fake API",
            vec![rig.call("plexus", "ADD", "pxbm-kube", "eth0", &kube)],
            vec![rig.call("plexus", "DEL", "pxbm-kube", "eth0", &kube)],
        ),
        Series::new(
            "same, delegates exec'd",
            vec![rig.call_exec("ADD", "pxbm-kx", &kube)],
            vec![rig.call_exec("DEL", "pxbm-kx", &kube)],
        ),
        Series::new(
            "plexus → static + NAD static, fake API (API-bound)",
            vec![rig.call_static_pod("ADD", "pxbm-api", &kube)],
            vec![rig.call_static_pod("DEL", "pxbm-api", &kube)],
        ),
        Series::new(
            "same, delegates exec'd",
            vec![{
                let mut c = rig.call_static_pod("ADD", "pxbm-apx", &kube);
                c.bin = rig.exec_only.0.join("plexus");
                c
            }],
            vec![{
                let mut c = rig.call_static_pod("DEL", "pxbm-apx", &kube);
                c.bin = rig.exec_only.0.join("plexus");
                c
            }],
        ),
        Series::new(
            "host-device + host-device/static (tutorial shape, delegates alone)",
            vec![
                rig.call("host-device", "ADD", "pxbm-tdir", "eth0", &cluster_hd),
                rig.call("host-device", "ADD", "pxbm-tdir", "net1", &nad),
            ],
            vec![
                rig.call("host-device", "DEL", "pxbm-tdir", "net1", &nad),
                rig.call("host-device", "DEL", "pxbm-tdir", "eth0", &cluster_hd),
            ],
        ),
        Series::new(
            "plexus → host-device + NAD host-device/static, fake API (tutorial shape)",
            vec![rig.call("plexus", "ADD", "pxbm-tut", "eth0", &tutorial)],
            vec![rig.call("plexus", "DEL", "pxbm-tut", "eth0", &tutorial)],
        ),
    ];
    let (add_logs, del_logs) = run_cycles(
        &rig,
        &mut series,
        args.warmup,
        args.cycles,
        &[4, 5, 6, 7, 9],
    )?;
    let home = |vf| rig.node.link(vf).is_some();
    if rig.pod.link("net1").is_some() || rig.pod.link("eth0").is_some() || !home(VF) || !home(VF2) {
        bail!("the VF is not back on the node after the run");
    }

    let rss = [
        (
            "static ADD",
            rig.call("static", "ADD", "pxbm-rss1", "eth0", &st),
            rig.call("static", "DEL", "pxbm-rss1", "eth0", &st),
        ),
        (
            "host-device+static ADD",
            rig.call("host-device", "ADD", "pxbm-rss2", "net1", &nad),
            rig.call("host-device", "DEL", "pxbm-rss2", "net1", &nad),
        ),
        (
            "plexus ADD, no API",
            rig.call("plexus", "ADD", "pxbm-rss3", "eth0", &plain),
            rig.call("plexus", "DEL", "pxbm-rss3", "eth0", &plain),
        ),
        (
            "plexus ADD, fake API",
            rig.call("plexus", "ADD", "pxbm-rss4", "eth0", &kube),
            rig.call("plexus", "DEL", "pxbm-rss4", "eth0", &kube),
        ),
    ];
    let mut rss_rows = Vec::new();
    for (label, add, del) in &rss {
        let mut add_peak = 0;
        let mut del_peak = 0;
        for _ in 0..args.rss_runs.max(1) {
            add_peak = add_peak.max(peak_rss_kib(&rig, add, 1)?);
            del_peak = del_peak.max(peak_rss_kib(&rig, del, 1)?);
        }
        rss_rows.push((*label, add_peak, del_peak));
    }

    let load = format!("{} → {}", load_before, loadavg());
    report(
        &args, &ours, &load, &series, &rss_rows, &add_logs, &del_logs,
    );
    Ok(())
}

/// `/proc/loadavg`'s 1-minute figure: the run shares 2 cores with whatever
/// else the machine does, so the report says how busy it was.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}
