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
// Benchmark driver (not shipped): not yet split to the size limits.
#![allow(clippy::too_many_lines)]

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Parser;
use nix::sys::resource::{getrusage, UsageWho};
use plexus_netns::NetNs;
use plexus_testkit::kube::Options;
use plexus_testkit::kube::{FakeApiServer, RecordedRequest};
use plexus_testkit::net::{
    bin_dir, require_root, unique_name, CniCall, CniOutput, TestNs, Veth, VethEnd,
};
use serde_json::{json, Value};

/// Re-executes this binary as the RSS helper.
const PROBE_ARG: &str = "__rss-probe";
const POD_NS: &str = "default";
const POD: &str = "benchpod";
const NAD: &str = "sriov-vnic";
/// The API-bound scenario: a pod whose one extra network is a `static` NAD.
const POD_STATIC: &str = "benchpod-static";
const NAD_STATIC: &str = "static-net";
const VF: &str = "ens5";
/// The tutorial-shape series' cluster-network VF.
const VF2: &str = "ens6";
/// Targets from the issue.
const TARGET_OVERHEAD_MS: f64 = 2.0;
const TARGET_RSS_KIB: u64 = 15 * 1024;

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

/// A directory removed on drop (the bench links no tempfile crate).
struct ScratchDir(PathBuf);

impl ScratchDir {
    fn new_in(base: &Path) -> Result<Self> {
        let dir = base.join(unique_name("pxbmeta"));
        std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        Ok(Self(dir))
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Median and spread of one series, in milliseconds.
#[derive(Debug, Clone, Copy)]
struct Summary {
    p10: f64,
    median: f64,
    p90: f64,
}

/// Linear-interpolation quantile of sorted data.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    match sorted.len() {
        0 => f64::NAN,
        1 => sorted[0],
        n => {
            let pos = q * (n - 1) as f64;
            let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
            sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
        }
    }
}

impl Summary {
    fn of(samples: &[Duration]) -> Self {
        let mut ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e3).collect();
        ms.sort_by(f64::total_cmp);
        Self {
            p10: quantile(&ms, 0.10),
            median: quantile(&ms, 0.50),
            p90: quantile(&ms, 0.90),
        }
    }

    fn cell(&self) -> String {
        format!("{:.2} ({:.2}–{:.2})", self.median, self.p10, self.p90)
    }
}

/// The fixtures: namespaces, VF, fake API, configs. Fields drop in order:
/// the VF, then the pod and node namespaces, the API, the files.
struct Rig {
    _vf: Veth,
    _vf2: Veth,
    pod: TestNs,
    node: TestNs,
    node_fd: NetNs,
    api: FakeApiServer,
    dir: ScratchDir,
    ours: PathBuf,
    /// A hard link of `plexus` alone: its delegates are always exec'd.
    exec_only: ScratchDir,
    uid: String,
    uid_static: String,
}

impl Rig {
    fn new(ours: PathBuf, scheme: &str) -> Result<Self> {
        let node = TestNs::new("pxbmn");
        let pod = TestNs::new("pxbmp");
        let mut vf = Veth::create(
            VethEnd::new(VF).in_ns(&node).mac("02:00:17:00:0a:05").up(),
            VethEnd::new(unique_name("pxbmw")).in_ns(&node).up(),
        );
        vf.may_visit(&pod);
        let mut vf2 = Veth::create(
            VethEnd::new(VF2).in_ns(&node).mac("02:00:17:00:0a:06").up(),
            VethEnd::new(unique_name("pxbmw")).in_ns(&node).up(),
        );
        vf2.may_visit(&pod);
        let node_fd = NetNs::open(node.path())?;
        // Bound inside the node namespace, so the plugins (run there) reach
        // it on their loopback, as a node reaches its API endpoint.
        let dir = ScratchDir::new_in(&std::env::temp_dir())?;
        let mut options = Options::default();
        if scheme != "http" {
            let ca = plexus_testkit::tls::TestCa::new()?;
            std::fs::write(dir.0.join("ca.pem"), ca.cert_pem())?;
            let mut cert = ca.loopback_cert()?;
            cert.http1_only = scheme == "https-http1";
            options.tls = Some(cert);
        }
        let api = plexus_netns::run_in(&node_fd, move || FakeApiServer::start_with(options))??;
        let exec_only = ScratchDir::new_in(&ours)?;
        std::fs::hard_link(ours.join("plexus"), exec_only.0.join("plexus"))
            .context("hard-link plexus for the exec'd-delegates series")?;
        let rig = Self {
            _vf: vf,
            _vf2: vf2,
            pod,
            node,
            node_fd,
            api,
            dir,
            ours,
            exec_only,
            uid: String::new(),
            uid_static: String::new(),
        };
        rig.write_kubeconfig()?;
        let nad = rig.nad_config().to_string();
        rig.api
            .put_nad(POD_NS, NAD, &nad)
            .map_err(anyhow::Error::msg)?;
        let pod = rig
            .api
            .put_pod(json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": POD, "namespace": POD_NS,
                    "annotations": {"k8s.v1.cni.cncf.io/networks": NAD}},
                "spec": {"nodeName": "node-1"}}))
            .map_err(anyhow::Error::msg)?;
        let uid = pod["metadata"]["uid"]
            .as_str()
            .context("fake API gave the pod no uid")?
            .to_string();
        let mut st = Self::static_conf();
        st["name"] = json!(NAD_STATIC);
        st["ipam"]["addresses"][0]["address"] = json!("198.51.100.12/24");
        rig.api
            .put_nad(POD_NS, NAD_STATIC, &st.to_string())
            .map_err(anyhow::Error::msg)?;
        let pod = rig
            .api
            .put_pod(json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": POD_STATIC, "namespace": POD_NS,
                    "annotations": {"k8s.v1.cni.cncf.io/networks": NAD_STATIC}},
                "spec": {"nodeName": "node-1"}}))
            .map_err(anyhow::Error::msg)?;
        let uid_static = pod["metadata"]["uid"]
            .as_str()
            .context("fake API gave the pod no uid")?
            .to_string();
        Ok(Self {
            uid,
            uid_static,
            ..rig
        })
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.0.join(p)
    }

    fn write_kubeconfig(&self) -> Result<()> {
        let mut cluster = json!({"server": self.api.url()});
        if self.api.url().starts_with("https:") {
            cluster["certificate-authority"] = json!(self.path("ca.pem"));
        }
        let kubeconfig = json!({"apiVersion": "v1", "kind": "Config",
            "clusters": [{"name": "fake", "cluster": cluster}],
            "users": [{"name": "plexus", "user": {}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "plexus"}}],
            "current-context": "fake"});
        std::fs::write(self.path("plexus.kubeconfig"), kubeconfig.to_string())?;
        Ok(())
    }

    /// The tutorial's NAD (Task 3) with a test address; `dataDir` keeps
    /// host-device's records in the scratch dir.
    fn nad_config(&self) -> Value {
        json!({
            "cniVersion": "0.3.1",
            "name": NAD,
            "type": "host-device",
            "device": VF,
            "dataDir": self.path("host-device"),
            "ipam": {
                "type": "static",
                "addresses": [{"address": "198.51.100.11/24", "gateway": "0.0.0.0"}],
                "routes": [{"dst": "198.51.100.0/24", "gw": "0.0.0.0"}]
            }
        })
    }

    /// A static-only conf: the cluster-network stand-in and series 1's
    /// delegate. It only computes a result (no kernel change), so series
    /// 1 → 2 isolates what plexus itself adds.
    fn static_conf() -> Value {
        json!({
            "cniVersion": "1.0.0",
            "name": "cluster",
            "type": "static",
            "ipam": {
                "type": "static",
                "addresses": [{"address": "203.0.113.10/24", "gateway": "203.0.113.1"}]
            }
        })
    }

    /// The tutorial-shape cluster network: `host-device` with the second
    /// VF and a static address.
    fn cluster_host_device_conf(&self) -> Value {
        json!({
            "cniVersion": "1.0.0",
            "name": "cluster",
            "type": "host-device",
            "device": VF2,
            "dataDir": self.path("host-device"),
            "ipam": {
                "type": "static",
                "addresses": [{"address": "203.0.113.10/24", "gateway": "203.0.113.1"}]
            }
        })
    }

    /// The plexus conf; `cache_dir` is its `cniDir` (the ADD record).
    fn plexus_conf(&self, kube: bool, cache_dir: &Path) -> Value {
        json!({
            "cniVersion": "1.0.0",
            "name": "plexus-cni-network",
            "type": "plexus",
            "kubeconfig": if kube { self.path("plexus.kubeconfig") } else { PathBuf::new() },
            "cniDir": cache_dir,
            "confDir": self.path("net.d"),
            "binDir": self.ours,
            "nadNodeKeys": ["dataDir"],
            "delegates": [Self::static_conf()],
        })
    }

    fn call(
        &self,
        bin: &str,
        command: &str,
        container: &str,
        ifname: &str,
        conf: &Value,
    ) -> CniCall {
        CniCall::new(self.ours.join(bin), command)
            .container_id(container)
            .netns(self.pod.path())
            .ifname(ifname)
            .cni_path(&self.ours)
            .args(format!(
                "IgnoreUnknown=1;K8S_POD_NAMESPACE={POD_NS};K8S_POD_NAME={POD};\
                 K8S_POD_INFRA_CONTAINER_ID={container};K8S_POD_UID={}",
                self.uid
            ))
            .stdin(conf.to_string())
    }

    /// [`Self::call`] for the API-bound pod (its one NAD is `static`).
    fn call_static_pod(&self, command: &str, container: &str, conf: &Value) -> CniCall {
        let mut c = self.call("plexus", command, container, "eth0", conf);
        c.args = Some(format!(
            "IgnoreUnknown=1;K8S_POD_NAMESPACE={POD_NS};K8S_POD_NAME={POD_STATIC};\
             K8S_POD_INFRA_CONTAINER_ID={container};K8S_POD_UID={}",
            self.uid_static
        ));
        c
    }

    /// [`Self::call`] of the `plexus` link that has no delegates next to it,
    /// so it execs them (the CNI_PATH is the same).
    fn call_exec(&self, command: &str, container: &str, conf: &Value) -> CniCall {
        let mut c = self.call("plexus", command, container, "eth0", conf);
        c.bin = self.exec_only.0.join("plexus");
        c
    }

    /// Runs a call in the node namespace; fails on a non-zero exit.
    fn run(&self, call: &CniCall) -> Result<CniOutput> {
        let out = plexus_netns::run_in(&self.node_fd, || call.run())?;
        if !out.status.success() {
            bail!(
                "{} {} failed: {} {}",
                call.bin.display(),
                call.command,
                out.stdout.trim(),
                out.stderr.trim()
            );
        }
        Ok(out)
    }
}

/// User+sys CPU of every child this process has reaped (each with the
/// descendants it reaped: a plugin's delegates count). The delta around
/// a spawn-and-wait is that call's CPU; only one call runs at a time.
fn children_cpu() -> Duration {
    let tv = |t: nix::sys::time::TimeVal| {
        Duration::new(
            u64::try_from(t.tv_sec()).unwrap_or(0),
            u32::try_from(t.tv_usec()).unwrap_or(0) * 1_000,
        )
    };
    getrusage(UsageWho::RUSAGE_CHILDREN)
        .map_or(Duration::ZERO, |u| tv(u.user_time()) + tv(u.system_time()))
}

/// `x` with an explicit sign and a true minus (U+2212), never "−0.00".
fn signed(x: f64) -> String {
    let abs = format!("{:.2}", x.abs());
    if x < 0.0 && abs != "0.00" {
        format!("\u{2212}{abs}")
    } else {
        format!("+{abs}")
    }
}

/// One series: the calls of an ADD and of a DEL (run in order, DEL in the
/// given order too), timed as wall time of the whole sequence, and the
/// CPU (user+sys) of its processes and their reaped children.
struct Series {
    label: &'static str,
    add: Vec<CniCall>,
    del: Vec<CniCall>,
    add_times: Vec<Duration>,
    del_times: Vec<Duration>,
    cycle_times: Vec<Duration>,
    cycle_cpu: Vec<Duration>,
}

impl Series {
    fn new(label: &'static str, add: Vec<CniCall>, del: Vec<CniCall>) -> Self {
        Self {
            label,
            add,
            del,
            add_times: Vec::new(),
            del_times: Vec::new(),
            cycle_times: Vec::new(),
            cycle_cpu: Vec::new(),
        }
    }
}

/// The API requests of one ADD or DEL: `METHOD path` of each, events apart.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ApiLog {
    core: Vec<String>,
    events: usize,
    /// Connections the fake accepted during the call (TLS handshakes over
    /// https), with the protocol of the first.
    connections: usize,
    protocol: Option<String>,
}

impl ApiLog {
    fn of(requests: &[RecordedRequest]) -> Self {
        let is_event = |r: &RecordedRequest| r.path.ends_with("/events");
        Self {
            core: requests
                .iter()
                .filter(|r| !is_event(r))
                .map(|r| format!("{} {}", r.method, r.path))
                .collect(),
            events: requests.iter().filter(|r| is_event(r)).count(),
            connections: 0,
            protocol: None,
        }
    }

    /// The log of one call, given the fake's connection log before it.
    fn of_call(rig: &Rig, connections_before: usize) -> Self {
        let conns = rig.api.connections();
        let new = conns.get(connections_before..).unwrap_or_default();
        Self {
            connections: new.len(),
            protocol: new.first().map(|c| {
                c.alpn
                    .clone()
                    .unwrap_or_else(|| if c.tls { "tls" } else { "http" }.into())
            }),
            ..Self::of(&rig.api.requests())
        }
    }

    fn total(&self) -> usize {
        self.core.len() + self.events
    }
}

/// Runs `cycles` (+ warm-up) rounds; series rotate their order per round.
/// Returns the API log of every ADD and DEL of the series at `api_series`.
fn run_cycles(
    rig: &Rig,
    series: &mut [Series],
    warmup: usize,
    cycles: usize,
    api_series: &[usize],
) -> Result<(Vec<ApiLog>, Vec<ApiLog>)> {
    let (mut add_logs, mut del_logs) = (Vec::new(), Vec::new());
    let n = series.len();
    for round in 0..warmup + cycles {
        for k in 0..n {
            let i = (round + k) % n;
            let s = &mut series[i];
            rig.api.clear_requests();
            let conns = rig.api.connections().len();
            let cpu = children_cpu();
            let mut add = Duration::ZERO;
            for call in &s.add {
                add += rig.run(call)?.elapsed;
            }
            let add_api = ApiLog::of_call(rig, conns);
            rig.api.clear_requests();
            let conns = rig.api.connections().len();
            let mut del = Duration::ZERO;
            for call in &s.del {
                del += rig.run(call)?.elapsed;
            }
            let cpu = children_cpu().saturating_sub(cpu);
            let del_api = ApiLog::of_call(rig, conns);
            if !api_series.contains(&i) && (add_api.total() > 0 || del_api.total() > 0) {
                bail!("{} made API requests: {add_api:?} {del_api:?}", s.label);
            }
            if round >= warmup {
                s.add_times.push(add);
                s.del_times.push(del);
                // The plugins' own time: spawn to exit of each call, without
                // the bench's bookkeeping between calls.
                s.cycle_times.push(add + del);
                s.cycle_cpu.push(cpu);
                if api_series.first() == Some(&i) {
                    add_logs.push(add_api);
                    del_logs.push(del_api);
                }
            }
        }
    }
    Ok((add_logs, del_logs))
}

/// Peak RSS (KiB) of one call: the maximum over `runs` fresh helpers.
fn peak_rss_kib(rig: &Rig, call: &CniCall, runs: usize) -> Result<u64> {
    let exe = std::env::current_exe().context("locate plexus-bench-meta")?;
    let request = json!({
        "bin": call.bin, "command": call.command, "container_id": call.container_id,
        "netns": call.netns, "ifname": call.ifname, "cni_path": call.cni_path,
        "args": call.args, "stdin": String::from_utf8_lossy(&call.stdin),
    })
    .to_string();
    let mut peak = 0;
    for _ in 0..runs.max(1) {
        // Spawned from the node namespace: the helper and the plugin run there.
        let out = plexus_netns::run_in(&rig.node_fd, || -> Result<_> {
            let mut child = Command::new(&exe)
                .arg(PROBE_ARG)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .context("spawn the RSS helper")?;
            if let Some(mut stdin) = child.stdin.take() {
                stdin.write_all(request.as_bytes())?;
            }
            Ok(child.wait_with_output()?)
        })??;
        let reply: Value = serde_json::from_slice(&out.stdout)
            .with_context(|| format!("helper said {:?}", String::from_utf8_lossy(&out.stdout)))?;
        if reply["ok"] != true {
            bail!(
                "{} {} under the RSS helper: {}",
                call.bin.display(),
                call.command,
                reply["output"]
            );
        }
        peak = peak.max(reply["maxrss_kib"].as_u64().context("no maxrss_kib")?);
    }
    Ok(peak)
}

/// The helper: run one call from stdin, report the reaped children's peak.
fn probe_main() -> Result<()> {
    let mut input = String::new();
    std::io::stdin().read_to_string(&mut input)?;
    let v: Value = serde_json::from_str(&input)?;
    let s = |k: &str| v[k].as_str().map(str::to_owned);
    let mut call = CniCall::new(s("bin").context("bin")?, &s("command").context("command")?);
    call.container_id = s("container_id");
    call.netns = s("netns");
    call.ifname = s("ifname");
    call.cni_path = s("cni_path");
    call.args = s("args");
    call.stdin = s("stdin").unwrap_or_default().into_bytes();
    let out = call.run();
    let usage = getrusage(UsageWho::RUSAGE_CHILDREN)?;
    println!(
        "{}",
        json!({
            "ok": out.status.success(),
            "output": format!("{} {}", out.stdout.trim(), out.stderr.trim()),
            // Linux reports ru_maxrss in KiB.
            "maxrss_kib": usage.max_rss(),
        })
    );
    Ok(())
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
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

fn report(
    args: &Args,
    ours: &Path,
    load: &str,
    series: &[Series],
    rss: &[(&str, u64, u64)],
    add_logs: &[ApiLog],
    del_logs: &[ApiLog],
) {
    println!(
        "### Meta plugin (plexus) — {} cycles per series, {} warm-up, binaries in `{}`, \
         fake API over {} with latency `{}`\n",
        args.cycles,
        args.warmup,
        ours.display(),
        args.api_scheme,
        args.api_latency
    );
    println!(
        "Wall time per call sequence in ms, median (p10–p90); CPU is user+sys of \
         the calls' processes and the delegates they reap (`getrusage(RUSAGE_CHILDREN)` \
         delta), median (p10–p90). Series with a VF move wait ~16 ms per move in the \
         kernel's `rcu_barrier()`, asleep and quantised to 4 ms ticks, so their wall \
         medians move by ±4 ms between runs; that wait costs no CPU, so the CPU delta \
         is the meta plugin's own work. 1-minute load average {load} ({} cores).\n",
        std::thread::available_parallelism().map_or(0, usize::from)
    );
    println!("| series | ADD | DEL | ADD+DEL | ADD+DEL CPU |");
    println!("|---|---|---|---|---|");
    for s in series {
        println!(
            "| {} | {} | {} | {} | {} |",
            s.label,
            Summary::of(&s.add_times).cell(),
            Summary::of(&s.del_times).cell(),
            Summary::of(&s.cycle_times).cell(),
            Summary::of(&s.cycle_cpu).cell()
        );
    }
    let med = |s: &Series| Summary::of(&s.cycle_times).median;
    let cpu = |s: &Series| Summary::of(&s.cycle_cpu).median;
    println!(
        "\n| plexus on top of its delegates (ADD+DEL medians) | extra wall ms | ratio | \
         extra CPU ms | CPU ratio | ≤ {TARGET_OVERHEAD_MS} ms: wall / CPU |"
    );
    println!("|---|---|---|---|---|---|");
    for (label, base, meta) in [
        ("no API (1 → 2)", 0, 1),
        ("no API, delegate exec'd (1 → 3)", 0, 2),
        ("fake API, host-device NAD (4 → 5)", 3, 4),
        ("fake API, host-device NAD, exec'd (4 → 6)", 3, 5),
        ("API-bound, static NAD (1 → 7)", 0, 6),
        ("API-bound, static NAD, exec'd (1 → 8)", 0, 7),
        ("tutorial shape, 4 moves (9 → 10)", 8, 9),
    ] {
        let (b, m) = (med(&series[base]), med(&series[meta]));
        let (bc, mc) = (cpu(&series[base]), cpu(&series[meta]));
        let verdict = |extra: f64| {
            if extra <= TARGET_OVERHEAD_MS {
                "met"
            } else {
                "missed"
            }
        };
        println!(
            "| {label} | {} | {:.2}× | {} | {:.2}× | {} / {} |",
            signed(m - b),
            m / b,
            signed(mc - bc),
            mc / bc,
            verdict(m - b),
            verdict(mc - bc)
        );
    }
    println!(
        "\nPeak RSS (`ru_maxrss` of the call's process tree, max of {} runs):\n",
        args.rss_runs
    );
    println!("| call | ADD | DEL |");
    println!("|---|---|---|");
    for (label, add, del) in rss {
        println!("| {label} | {} | {} |", mib(*add), mib(*del));
    }
    let plexus_peak = rss
        .iter()
        .filter(|r| r.0.starts_with("plexus"))
        .map(|r| r.1.max(r.2))
        .max()
        .unwrap_or(0);
    println!(
        "\nplexus peak: {} (target ≤ {}: {})",
        mib(plexus_peak),
        mib(TARGET_RSS_KIB),
        if plexus_peak <= TARGET_RSS_KIB {
            "met"
        } else {
            "missed"
        }
    );
    let dist = |logs: &[ApiLog]| {
        let mut totals: Vec<usize> = logs.iter().map(ApiLog::total).collect();
        totals.sort_unstable();
        (
            totals.first().copied().unwrap_or(0),
            totals.last().copied().unwrap_or(0),
        )
    };
    println!(
        "\nKubernetes API requests per call (fake API request log, {} calls each):\n",
        add_logs.len()
    );
    println!("| call | requests (min–max) | of which events | connections (min–max) | protocol | requests |");
    println!("|---|---|---|---|---|---|");
    for (label, logs) in [("ADD", add_logs), ("DEL", del_logs)] {
        let (lo, hi) = dist(logs);
        let first = logs.first().cloned().unwrap_or(ApiLog {
            core: Vec::new(),
            events: 0,
            connections: 0,
            protocol: None,
        });
        let mut conns: Vec<usize> = logs.iter().map(|l| l.connections).collect();
        conns.sort_unstable();
        let conns = format!(
            "{}–{}",
            conns.first().copied().unwrap_or(0),
            conns.last().copied().unwrap_or(0)
        );
        let protocol = first.protocol.clone().unwrap_or_else(|| "—".into());
        let list = if first.core.is_empty() {
            "none".to_string()
        } else {
            first.core.join(", ")
        };
        println!(
            "| {label} | {lo}–{hi} | {} | {conns} | {protocol} | {list} |",
            first.events
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate_between_ranks() {
        let ms = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert_eq!(quantile(&ms, 0.5), 3.0);
        assert!((quantile(&ms, 0.1) - 1.4).abs() < 1e-9);
        assert!(quantile(&[], 0.5).is_nan());
        let s = Summary::of(&[Duration::from_millis(4), Duration::from_millis(2)]);
        assert!((s.median - 3.0).abs() < 1e-9);
    }

    #[test]
    fn api_log_sets_events_apart() {
        let req = |method: &str, path: &str| RecordedRequest {
            method: method.into(),
            path: path.into(),
            query: None,
            content_type: None,
            body: String::new(),
            authorization: None,
        };
        let log = ApiLog::of(&[
            req("GET", "/api/v1/namespaces/default/pods/p"),
            req("POST", "/api/v1/namespaces/default/events"),
            req("PATCH", "/api/v1/namespaces/default/pods/p/status"),
        ]);
        assert_eq!(
            log.core,
            vec![
                "GET /api/v1/namespaces/default/pods/p",
                "PATCH /api/v1/namespaces/default/pods/p/status"
            ]
        );
        assert_eq!((log.events, log.total()), (1, 3));
    }
}
