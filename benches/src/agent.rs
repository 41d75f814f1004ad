//! Memory of `plexus-agent run` at idle and through reconcile passes that
//! change something.
//!
//! The agent runs entirely inside a test namespace: the process is spawned
//! from a thread inside it and `--netns` names it too, so neither its
//! netlink work nor its sockets ever reach the host's namespace. Its
//! sources are fakes: IMDS on that namespace's loopback, the kubelet's
//! registration socket in a temporary dir, a generated sysfs root, veth ends
//! standing in for the VFs. `/proc/<pid>/status` is sampled throughout:
//! a steady phase (passes that find nothing to do), then a second VNIC is
//! attached (address, table, rules) and detached again (all removed), then
//! SIGTERM, which must end the agent cleanly.

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use plexus_netns::NetNs;
use plexus_sysfs::testing::{FakeSysfs, FunctionSpec};
use plexus_testkit::imds::FakeImds;
use plexus_testkit::net::{TestNs, Veth, VethEnd};
use plexus_testkit::podresources::FakeRegistration;
use serde_json::{json, Value};

/// Seconds between reconcile passes (the CLI's minimum).
pub const INTERVAL_S: u64 = 1;
const SAMPLE_EVERY: Duration = Duration::from_millis(100);
/// Passes that find nothing to change, sampled as "idle".
const STEADY: Duration = Duration::from_secs(4);
/// Sampling after each change took effect, so later passes are covered too.
const SETTLE: Duration = Duration::from_millis(2_500);
const DEADLINE: Duration = Duration::from_secs(15);

/// What one run of the agent measured (KiB, from `/proc/<pid>/status`).
#[derive(Debug, Clone, Default)]
pub struct AgentRss {
    /// Median `VmRSS` over the steady phase.
    pub idle_kib: u64,
    /// Largest `VmRSS` sampled while a VNIC was attached and detached.
    pub reconcile_kib: u64,
    /// `VmHWM` just before SIGTERM: the peak over the agent's whole life.
    pub hwm_kib: u64,
    /// `VmRSS` samples taken.
    pub samples: usize,
    /// Reconcile passes seen (IMDS VNIC list requests).
    pub passes: usize,
    /// From SIGTERM to exit.
    pub stop: Duration,
    /// Wall time from spawn to SIGTERM.
    pub ran: Duration,
    /// `plexus_reconcile_errors_total` at the end.
    pub reconcile_errors: u64,
}

fn vnic(id: &str, ip: &str, mac: &str, router: &str, subnet: &str) -> Value {
    json!({"vnicId": id, "privateIp": ip, "macAddr": mac, "virtualRouterIp": router,
           "subnetCidrBlock": subnet})
}

fn vnics(with_second: bool) -> Value {
    let mut v = vec![
        vnic(
            "ocid1.vnic.primary",
            "198.51.100.10",
            "02:00:17:DD:00:01",
            "198.51.100.1",
            "198.51.100.0/25",
        ),
        vnic(
            "ocid1.vnic.one",
            "203.0.113.93",
            "02:00:17:DD:00:02",
            "203.0.113.1",
            "203.0.113.0/24",
        ),
    ];
    if with_second {
        v.push(vnic(
            "ocid1.vnic.two",
            "198.51.100.200",
            "02:00:17:DD:00:03",
            "198.51.100.129",
            "198.51.100.128/25",
        ));
    }
    Value::Array(v)
}

/// `VmRSS`/`VmHWM`-style fields of `/proc/<pid>/status`, in KiB.
pub fn status_kib(status: &str, field: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}

/// The agent process; killed on drop unless it already exited.
struct Agent {
    child: Child,
    pid: u32,
}

impl Agent {
    fn status(&self) -> Result<(u64, u64)> {
        let s = fs::read_to_string(format!("/proc/{}/status", self.pid))
            .context("the agent exited early (its stderr is shown above)")?;
        match (status_kib(&s, "VmRSS:"), status_kib(&s, "VmHWM:")) {
            (Some(rss), Some(hwm)) => Ok((rss, hwm)),
            _ => bail!("no VmRSS/VmHWM in /proc/{}/status", self.pid),
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn addresses(ns: &TestNs, dev: &str) -> usize {
    ns.addrs(dev)
        .as_array()
        .map_or(0, |a| a.iter().filter(|a| a["family"] == "inet").count())
}

/// A policy rule `from <ip>` exists (ours: pref 1000).
fn has_rule_from(ns: &TestNs, ip: &str) -> bool {
    let out = ns.ip(&["-j", "rule", "show"]);
    let rules: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    rules
        .as_array()
        .is_some_and(|a| a.iter().any(|r| r["src"] == ip))
}

fn metrics_get(ns_fd: &NetNs, addr: &str) -> Result<String> {
    use std::io::{Read, Write};
    plexus_netns::run_in(ns_fd, || -> Result<String> {
        let mut s = std::net::TcpStream::connect(addr)?;
        s.write_all(b"GET /metrics HTTP/1.0\r\nHost: agent\r\n\r\n")?;
        let mut body = String::new();
        s.read_to_string(&mut body)?;
        Ok(body)
    })?
}

/// Runs the agent as described in the module docs and samples its memory.
pub fn measure(agent_bin: &Path) -> Result<AgentRss> {
    let ns = TestNs::new("pxba");
    let ns_fd = NetNs::open(ns.path()).context("open the agent's netns")?;
    let _vf1 = Veth::create(
        VethEnd::new("vf1").in_ns(&ns).mac("02:00:17:dd:00:02"),
        VethEnd::new("vf1p").in_ns(&ns).up(),
    );
    let tmp = tempfile::Builder::new()
        .prefix("plexus-bench-agent.")
        .tempdir()
        .context("create a temporary dir")?;
    let dir = |s: &str| -> PathBuf { tmp.path().join(s) };
    let sys = FakeSysfs::new(&dir("sys")).context("generate sysfs")?;
    let vf = |pci: &str, name: &str, mac: &str| {
        FunctionSpec::new(pci, 0x15b3, 0x101e)
            .driver("mlx5_core")
            .netdev(name, Some(mac))
    };
    sys.add_function(&vf("0000:00:05.0", "vf1", "02:00:17:dd:00:02"))?;
    // IMDS and /metrics on the namespace's own loopback.
    let (listener, metrics) = plexus_netns::run_in(&ns_fd, || -> Result<_> {
        let imds = TcpListener::bind("127.0.0.1:0")?;
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        Ok((imds, format!("127.0.0.1:{port}")))
    })??;
    let imds = FakeImds::start_with_listener(listener, vnics(false))?;
    let kubelet = FakeRegistration::start()?;
    let state = dir("state.json");
    let stderr = fs::File::create(dir("agent.log"))?;
    let path = |p: &Path| p.to_string_lossy().into_owned();
    let mut cmd = Command::new(agent_bin);
    cmd.args(["--imds-url", &imds.url(), "--netns", ns.name()])
        .args(["--host-root", &path(sys.root())])
        .args(["--state-file", &path(&state)])
        .args(["--host-device-dir", &path(&dir("hd"))])
        .args(["--meta-cache-dir", &path(&dir("meta"))])
        .args(["run", "--no-install", "--interval", &INTERVAL_S.to_string()])
        .args(["--device-plugin-dir", &path(kubelet.dir())])
        .args(["--metrics-addr", &metrics])
        .args(["--device-info-dir", &path(&dir("devinfo"))])
        .env_clear()
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr);
    let started = Instant::now();
    // Spawned from inside the namespace: the whole process lives there.
    let child = plexus_netns::run_in(&ns_fd, || cmd.spawn())?
        .with_context(|| format!("start {}", agent_bin.display()))?;
    let mut agent = Agent {
        pid: child.id(),
        child,
    };
    let result = sample(&agent, &ns, &imds, &sys, &state, &vf, started).and_then(|mut r| {
        let body = metrics_get(&ns_fd, &metrics).context("GET /metrics")?;
        r.reconcile_errors = body
            .lines()
            .find_map(|l| l.strip_prefix("plexus_reconcile_errors_total "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .map_or(0, |v| v as u64);
        r.passes = imds
            .requests()
            .iter()
            .filter(|q| q.path.trim_end_matches('/') == "/opc/v2/vnics")
            .count();
        r.ran = started.elapsed();
        let pid = Pid::from_raw(i32::try_from(agent.pid)?);
        let term = Instant::now();
        kill(pid, Signal::SIGTERM).context("SIGTERM the agent")?;
        let status = loop {
            if let Some(s) = agent.child.try_wait()? {
                break s;
            }
            if term.elapsed() > Duration::from_secs(10) {
                bail!("the agent did not stop within 10 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        r.stop = term.elapsed();
        if !status.success() {
            bail!("the agent exited with {status} after SIGTERM");
        }
        Ok(r)
    });
    if result.is_err() {
        let log = fs::read_to_string(dir("agent.log")).unwrap_or_default();
        eprintln!("plexus-agent stderr:\n{}", log.trim_end());
    }
    result
}

/// The three phases, sampling `/proc/<pid>/status` every 100 ms.
fn sample(
    agent: &Agent,
    ns: &TestNs,
    imds: &FakeImds,
    sys: &FakeSysfs,
    state: &Path,
    vf: &dyn Fn(&str, &str, &str) -> FunctionSpec,
    started: Instant,
) -> Result<AgentRss> {
    let mut r = AgentRss::default();
    // Until the first pass configured vf1 and wrote the state file.
    wait_until(agent, &mut r, started, "vf1 configured", || {
        state.exists() && addresses(ns, "vf1") > 0
    })?;
    let mut idle = Vec::new();
    let steady = Instant::now();
    while steady.elapsed() < STEADY {
        let (rss, _) = agent.status()?;
        idle.push(rss);
        r.samples += 1;
        std::thread::sleep(SAMPLE_EVERY);
    }
    idle.sort_unstable();
    r.idle_kib = idle.get(idle.len() / 2).copied().unwrap_or(0);

    // A second VNIC attached: a new VF (netdev and sysfs) and IMDS lists it.
    let vf2 = Veth::create(
        VethEnd::new("vf2").in_ns(ns).mac("02:00:17:dd:00:03"),
        VethEnd::new("vf2p").in_ns(ns).up(),
    );
    sys.add_function(&vf("0000:00:06.0", "vf2", "02:00:17:dd:00:03"))?;
    imds.set_vnics(vnics(true));
    wait_until(agent, &mut r, started, "vf2 configured", || {
        addresses(ns, "vf2") > 0
    })?;
    settle(agent, &mut r)?;
    // Detached: the VF and the VNIC go; the agent removes its stale rule.
    drop(vf2);
    sys.hide_netdev("vf2")?;
    imds.set_vnics(vnics(false));
    wait_until(agent, &mut r, started, "stale rule of vf2 removed", || {
        !has_rule_from(ns, "198.51.100.200")
    })?;
    settle(agent, &mut r)?;
    r.hwm_kib = agent.status()?.1;
    Ok(r)
}

fn record(agent: &Agent, r: &mut AgentRss) -> Result<()> {
    let (rss, _) = agent.status()?;
    r.reconcile_kib = r.reconcile_kib.max(rss);
    r.samples += 1;
    Ok(())
}

fn settle(agent: &Agent, r: &mut AgentRss) -> Result<()> {
    let start = Instant::now();
    while start.elapsed() < SETTLE {
        record(agent, r)?;
        std::thread::sleep(SAMPLE_EVERY);
    }
    Ok(())
}

fn wait_until(
    agent: &Agent,
    r: &mut AgentRss,
    started: Instant,
    what: &str,
    mut done: impl FnMut() -> bool,
) -> Result<()> {
    let start = Instant::now();
    while !done() {
        record(agent, r)?;
        if start.elapsed() > DEADLINE {
            bail!(
                "plexus-agent: no {what} after {:.0} s ({:.0} s since start)",
                DEADLINE.as_secs_f64(),
                started.elapsed().as_secs_f64()
            );
        }
        std::thread::sleep(SAMPLE_EVERY);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_fields_parse() {
        let s = "Name:\tplexus-agent\nVmHWM:\t    8012 kB\nVmRSS:\t    7890 kB\n";
        assert_eq!(status_kib(s, "VmRSS:"), Some(7890));
        assert_eq!(status_kib(s, "VmHWM:"), Some(8012));
        assert_eq!(status_kib(s, "VmSwap:"), None);
    }
}
