//! plexus-bench-concurrency: many pods at once on one node.
//!
//! For each level N (default 1, 4, 8, 16) N pods are attached at the same
//! moment, one VF each, then detached at the same moment, by four series
//! interleaved round by round (order rotated every round) so machine noise
//! hits them alike:
//!
//! 1. the kernel floor: N threads each moving its VF into its pod with one
//!    `RTM_SETLINK(IFLA_NET_NS_FD)` and back (in-process, no plugin);
//! 2. the reference chain: Debian's `host-device` + `static` IPAM, exec'd
//!    as a runtime does;
//! 3. our `host-device` + `static` (IPAM in-process): like for like with 2;
//! 4. `plexus` → cluster `static` + the pod's NAD `host-device` + `static`,
//!    all in one process, the fake API answering at kube-apiserver v1.28
//!    latency (GET pod, GET NAD, PATCH status, events).
//!
//! Every pod has its own namespace and VF (a veth end in the "node"
//! namespace, peer up). Our plugins share one `dataDir` and one `cniDir`,
//! as on a node. Reported per N: throughput (pods / wall time of the whole
//! batch), per-pod ADD and DEL p50/p99, ours over the reference.
//!
//! Runs as root, in namespaces it creates.
// A benchmark's report is its output: printing to stdout is the point here.
#![allow(clippy::print_stdout)]
// Benchmark driver (not shipped): the report function is one table.
#![allow(clippy::too_many_lines)]

#[path = "../concurrency_report.rs"]
mod report;
#[path = "../stats.rs"]
#[allow(dead_code)]
mod stats;

use std::path::{Path, PathBuf};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Parser, ValueEnum};
use plexus_netlink::Handle;
use plexus_netns::NetNs;
use plexus_testkit::kube::{FakeApiServer, VerbLatency};
use plexus_testkit::net::{
    bin_dir, require_root, unique_name, CniCall, TestNs, Veth, VethEnd, REFERENCE_DIR,
};
use serde_json::{json, Value};

use report::{loadavg, ms, q, Cell};

const POD_NS: &str = "default";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
enum Kind {
    /// Bare netlink moves, in-process.
    Floor,
    /// Reference host-device + static, exec'd.
    Reference,
    /// Our host-device + static.
    HostDevice,
    /// plexus → static + host-device/static, fake API.
    Plexus,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::Floor => "kernel floor (bare moves, in-process)",
            Kind::Reference => "reference host-device + static",
            Kind::HostDevice => "ours: host-device + static",
            Kind::Plexus => "ours: plexus → static + host-device/static, fake API",
        }
    }
}

#[derive(Debug, Parser)]
#[command(name = "plexus-bench-concurrency", version = plexus_buildinfo::LONG,
    about = "N concurrent ADDs/DELs on one node, ours vs the reference (run as root)")]
struct Args {
    /// Measured rounds (each runs every level of every series once).
    #[arg(long, default_value_t = 20)]
    rounds: usize,
    /// Unmeasured rounds first.
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    /// Concurrency levels.
    #[arg(long, value_delimiter = ',', default_value = "1,4,8,16")]
    levels: Vec<usize>,
    /// Series to run (default: all).
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<Kind>,
    /// Our plugins (default: this binary's directory).
    #[arg(long)]
    ours: Option<PathBuf>,
    /// The reference plugins.
    #[arg(long, default_value = REFERENCE_DIR)]
    reference: PathBuf,
    /// GETLINK/SETLINK probes, idle and during moves (what takes RTNL).
    #[arg(long, default_value_t = 200)]
    probes: usize,
    /// The fake API's per-verb delay: `kube-1.28`, `off`, or per verb
    /// (see plexus-bench-meta).
    #[arg(long, default_value = "kube-1.28")]
    api_latency: String,
}

/// The node: N VFs and N pod namespaces, the fake API on the node's
/// loopback, one scratch directory. Field order is drop order.
struct Node {
    pod_fds: Vec<NetNs>,
    node_fd: NetNs,
    api: FakeApiServer,
    vfs: Vec<Veth>,
    pods: Vec<TestNs>,
    _node: TestNs,
    dir: tempfile::TempDir,
    ours: PathBuf,
    reference: PathBuf,
    uids: Vec<String>,
}

impl Node {
    fn new(pods: usize, ours: PathBuf, reference: PathBuf) -> Result<Self> {
        let node = TestNs::new("pxcn");
        let pod_ns: Vec<TestNs> = (0..pods).map(|_| TestNs::new("pxcp")).collect();
        let vfs: Vec<Veth> = pod_ns
            .iter()
            .enumerate()
            .map(|(i, pod)| {
                let mut v = Veth::create(
                    VethEnd::new(format!("pxcvf{i}"))
                        .in_ns(&node)
                        .mac(format!("02:00:17:00:cc:{i:02x}"))
                        .up(),
                    VethEnd::new(unique_name("pxcw")).in_ns(&node).up(),
                );
                v.may_visit(pod);
                v
            })
            .collect();
        let node_fd = NetNs::open(node.path()).context("open node netns")?;
        let pod_fds = pod_ns
            .iter()
            .map(|p| NetNs::open(p.path()).context("open pod netns"))
            .collect::<Result<Vec<_>>>()?;
        // HTTPS with ALPN h2, as kube-apiserver serves (each ADD pays its
        // handshake); the CA goes in the kubeconfig.
        let ca = plexus_testkit::tls::TestCa::new()?;
        let ca_pem = ca.cert_pem();
        let options = plexus_testkit::kube::Options {
            tls: Some(ca.loopback_cert()?),
            ..Default::default()
        };
        let api = plexus_netns::run_in(&node_fd, move || FakeApiServer::start_with(options))??;
        let dir = tempfile::Builder::new()
            .prefix("plexus-bench-conc.")
            .tempdir()
            .context("scratch dir")?;
        std::fs::write(dir.path().join("ca.crt"), ca_pem)?;
        let mut this = Self {
            pod_fds,
            node_fd,
            api,
            vfs,
            pods: pod_ns,
            _node: node,
            dir,
            ours,
            reference,
            uids: Vec::new(),
        };
        this.seed_api()?;
        Ok(this)
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    fn vf(&self, i: usize) -> &str {
        self.vfs[i].a()
    }

    /// kubeconfig, one NAD per VF, one pod per NAD.
    fn seed_api(&mut self) -> Result<()> {
        let kubeconfig = json!({"apiVersion": "v1", "kind": "Config",
            "clusters": [{"name": "fake", "cluster": {
                "server": self.api.url(),
                "certificate-authority": self.path("ca.crt"),
            }}],
            "users": [{"name": "plexus", "user": {}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "plexus"}}],
            "current-context": "fake"});
        std::fs::write(self.path("kubeconfig"), kubeconfig.to_string())?;
        for i in 0..self.vfs.len() {
            let nad = self.nad_config(i).to_string();
            self.api
                .put_nad(POD_NS, &format!("vf{i}"), &nad)
                .map_err(anyhow::Error::msg)?;
            let pod = self
                .api
                .put_pod(json!({"apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": format!("pod-{i}"), "namespace": POD_NS,
                        "annotations": {"k8s.v1.cni.cncf.io/networks": format!("vf{i}")}},
                    "spec": {"nodeName": "node-1"}}))
                .map_err(anyhow::Error::msg)?;
            let uid = pod["metadata"]["uid"]
                .as_str()
                .context("fake API gave the pod no uid")?;
            self.uids.push(uid.to_owned());
        }
        Ok(())
    }

    /// The tutorial's NAD shape for VF `i` (cniVersion 0.3.1, static IPAM);
    /// `dataDir` is shared by all pods, as `/var/lib/cni/host-device` is.
    fn nad_config(&self, i: usize) -> Value {
        json!({
            "cniVersion": "0.3.1",
            "name": format!("vf{i}"),
            "type": "host-device",
            "device": self.vf(i),
            "dataDir": self.path("host-device"),
            "ipam": {
                "type": "static",
                "addresses": [{"address": format!("198.51.100.{}/24", 10 + i), "gateway": "0.0.0.0"}],
                "routes": [{"dst": "198.51.100.0/24", "gw": "0.0.0.0"}]
            }
        })
    }

    /// plexus with a `static` cluster network (a result, no kernel change),
    /// as in plexus-bench-meta, and one shared cache dir.
    fn plexus_conf(&self) -> Value {
        json!({
            "cniVersion": "1.0.0",
            "name": "plexus-cni-network",
            "type": "plexus",
            "kubeconfig": self.path("kubeconfig"),
            "cniDir": self.path("cache"),
            "confDir": self.path("net.d"),
            "binDir": self.ours,
            "nadNodeKeys": ["dataDir"],
            "delegates": [{
                "cniVersion": "1.0.0", "name": "cluster", "type": "static",
                "ipam": {"type": "static",
                    "addresses": [{"address": "203.0.113.10/24", "gateway": "203.0.113.1"}]}
            }],
        })
    }

    /// The CNI call a runtime would make for pod `i` of series `kind`.
    fn call(&self, kind: Kind, i: usize, command: &str) -> CniCall {
        let container = format!("pxconc-{kind:?}-{i}").to_lowercase();
        let base = |dir: &Path, bin: &str, ifname: &str| {
            CniCall::new(dir.join(bin), command)
                .container_id(&container)
                .netns(self.pods[i].path())
                .ifname(ifname)
                .cni_path(dir)
        };
        match kind {
            Kind::Reference | Kind::Floor => {
                base(&self.reference, "host-device", "net1").stdin(self.nad_config(i).to_string())
            }
            Kind::HostDevice => {
                base(&self.ours, "host-device", "net1").stdin(self.nad_config(i).to_string())
            }
            Kind::Plexus => base(&self.ours, "plexus", "eth0")
                .args(format!(
                    "IgnoreUnknown=1;K8S_POD_NAMESPACE={POD_NS};K8S_POD_NAME=pod-{i};\
                     K8S_POD_INFRA_CONTAINER_ID={container};K8S_POD_UID={}",
                    self.uids[i]
                ))
                .stdin(self.plexus_conf().to_string()),
        }
    }

    /// Untimed: every VF in the node, up, no alias (the reference leaves
    /// it down with an alias).
    fn reset(&self, nl: &Handle) -> Result<()> {
        for v in &self.vfs {
            let link = nl
                .link_by_name(v.a())
                .with_context(|| format!("VF {} is not back on the node", v.a()))?;
            if link.alias.is_some() {
                nl.clear_alias(link.index)?;
            }
            if !link.up {
                nl.set_link_up(link.index, true)?;
            }
        }
        Ok(())
    }

    /// One phase: pods `0..n` all start `command` at the same moment.
    /// Returns each pod's latency and the wall time from the first start to
    /// the last end.
    fn phase(&self, kind: Kind, n: usize, command: &str) -> Result<(Vec<Duration>, Duration)> {
        let barrier = Barrier::new(n);
        let spans = std::thread::scope(|s| {
            let handles: Vec<_> = (0..n)
                .map(|i| {
                    let barrier = &barrier;
                    s.spawn(move || self.one(kind, i, command, barrier))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| match h.join() {
                    Ok(r) => r,
                    Err(_) => bail!("a worker thread panicked"),
                })
                .collect::<Result<Vec<(Instant, Instant)>>>()
        })?;
        let first = spans.iter().map(|s| s.0).min().context("no pods")?;
        let last = spans.iter().map(|s| s.1).max().context("no pods")?;
        Ok((spans.iter().map(|(a, b)| *b - *a).collect(), last - first))
    }

    /// Pod `i`'s call, from the node namespace, started when all are ready.
    fn one(
        &self,
        kind: Kind,
        i: usize,
        command: &str,
        barrier: &Barrier,
    ) -> Result<(Instant, Instant)> {
        if kind == Kind::Floor {
            let node = Handle::open_in(&self.node_fd)?;
            let pod = Handle::open_in(&self.pod_fds[i])?;
            let (from, to) = if command == "ADD" {
                (&node, &self.pod_fds[i])
            } else {
                (&pod, &self.node_fd)
            };
            let index = from.link_by_name(self.vf(i))?.index;
            barrier.wait();
            let start = Instant::now();
            from.move_to_netns(index, to, None)?;
            return Ok((start, Instant::now()));
        }
        let call = self.call(kind, i, command);
        plexus_netns::run_in(&self.node_fd, || {
            barrier.wait();
            let start = Instant::now();
            let out = call.run();
            let end = Instant::now();
            if !out.status.success() {
                bail!(
                    "{} {command} of pod {i} failed ({}): {} {}",
                    call.bin.display(),
                    out.status,
                    out.stdout.trim(),
                    out.stderr.trim()
                );
            }
            Ok((start, end))
        })?
    }
}

/// Which netlink requests queue behind a namespace move: a GETLINK and a
/// SETLINK (MTU of a wire end, put back after) timed from the node while
/// nothing else happens, then while another thread keeps moving VF 0 in
/// and out. Medians in ms: (GET idle, GET busy, SET idle, SET busy).
fn rtnl_probe(node: &Node, samples: usize) -> Result<(f64, f64, f64, f64)> {
    let nl = Handle::open_in(&node.node_fd)?;
    let wire = node.vfs.get(1).map_or_else(|| node.vfs[0].b(), Veth::b);
    let index = nl.link_by_name(wire)?.index;
    let mtu = nl.link_by_index(index)?.mtu;
    let probe = || -> Result<(f64, f64)> {
        // Two loops, not alternating requests: a request right after one
        // that waited for a move would land in the gap between moves.
        let (mut get, mut set) = (Vec::new(), Vec::new());
        for _ in 0..samples {
            let t = Instant::now();
            nl.link_by_name(wire)?;
            get.push(ms(t.elapsed()));
            // Spread the probes over the mover's cycle.
            std::thread::sleep(Duration::from_micros(2_500));
        }
        for i in 0..samples {
            let t = Instant::now();
            nl.set_mtu(index, if i % 2 == 0 { mtu - 1 } else { mtu })?;
            set.push(ms(t.elapsed()));
            std::thread::sleep(Duration::from_micros(2_500));
        }
        nl.set_mtu(index, mtu)?;
        Ok((q(&get, 0.5), q(&set, 0.5)))
    };
    let (get_idle, set_idle) = probe()?;
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (get_busy, set_busy) = std::thread::scope(|s| -> Result<(f64, f64)> {
        let mover = s.spawn(|| -> Result<()> {
            let barrier = Barrier::new(1);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                node.one(Kind::Floor, 0, "ADD", &barrier)?;
                node.one(Kind::Floor, 0, "DEL", &barrier)?;
            }
            Ok(())
        });
        std::thread::sleep(Duration::from_millis(100));
        let busy = probe();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        match mover.join() {
            Ok(r) => r?,
            Err(_) => bail!("the mover thread panicked"),
        }
        busy
    })?;
    Ok((get_idle, get_busy, set_idle, set_busy))
}

fn main() -> Result<()> {
    let args = Args::parse();
    require_root();
    let ours = args.ours.clone().unwrap_or_else(bin_dir);
    let kinds: Vec<Kind> = Kind::value_variants()
        .iter()
        .copied()
        .filter(|k| args.only.is_empty() || args.only.contains(k))
        .collect();
    for (dir, bins) in [
        (&ours, &["plexus", "host-device", "static"][..]),
        (&args.reference, &["host-device", "static"][..]),
    ] {
        if let Some(b) = bins.iter().map(|b| dir.join(b)).find(|p| !p.is_file()) {
            bail!(
                "{} missing: cargo build -p plexus -p plexus-host-device -p plexus-static \
                 (or apt-get install containernetworking-plugins)",
                b.display()
            );
        }
    }
    let levels = args.levels.clone();
    let max = levels.iter().copied().max().context("no levels")?;
    let load_before = loadavg();
    let started = Instant::now();
    let node = Node::new(max, ours.clone(), args.reference.clone())?;
    node.api
        .set_verb_latency(VerbLatency::parse(&args.api_latency).map_err(anyhow::Error::msg)?);
    let nl = Handle::open_in(&node.node_fd).context("netlink in node")?;
    let mut cells: Vec<Vec<Cell>> = kinds
        .iter()
        .map(|_| levels.iter().map(|_| Cell::default()).collect())
        .collect();
    for round in 0..args.warmup + args.rounds {
        for (li, &n) in levels.iter().enumerate() {
            for k in 0..kinds.len() {
                let ki = (round + k) % kinds.len();
                node.reset(&nl)?;
                let (add, add_wall) = node.phase(kinds[ki], n, "ADD")?;
                let (del, del_wall) = node.phase(kinds[ki], n, "DEL")?;
                if round >= args.warmup {
                    let c = &mut cells[ki][li];
                    c.add.extend(add.into_iter().map(ms));
                    c.del.extend(del.into_iter().map(ms));
                    c.add_wall.push(ms(add_wall));
                    c.del_wall.push(ms(del_wall));
                }
            }
        }
        eprintln!("round {}/{} done", round + 1, args.warmup + args.rounds);
    }
    node.reset(&nl)?;
    for (i, pod) in node.pods.iter().enumerate() {
        if pod.link("net1").is_some() {
            bail!("pod {i} still has net1 after the run");
        }
    }
    let (gi, gb, si, sb) = rtnl_probe(&node, args.probes)?;
    let load = format!("{load_before} → {}", loadavg());
    let labels: Vec<&str> = kinds.iter().map(|k| k.label()).collect();
    report::print(
        &report::Meta {
            rounds: args.rounds,
            warmup: args.warmup,
            ours: &ours,
            load: &load,
            took: started.elapsed(),
            api_latency: &args.api_latency,
        },
        &labels,
        kinds.iter().position(|k| *k == Kind::Reference),
        &levels,
        &cells,
    );
    println!(
        "What queues behind a move ({} probes each, medians): GETLINK {gi:.2} ms idle, \
         {gb:.2} ms while another thread moves a VF in and out; SETLINK (MTU) {si:.2} ms \
         idle, {sb:.2} ms during moves.\n",
        args.probes
    );
    Ok(())
}
