//! Prometheus metrics of the agent: a registry of atomic counters/gauges, a
//! pure text-exposition renderer (format 0.0.4), and a tiny blocking
//! `/metrics` HTTP server on std sockets — the agent needs one endpoint, not
//! an HTTP framework.
//!
//! The registry is also the IMDS client's [`RequestObserver`], so every
//! metadata attempt (retries included) is counted by status and timed.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use plexus_imds::{RequestObserver, RequestOutcome};

/// Upper bounds (seconds) of the IMDS latency histogram buckets.
pub const LATENCY_BUCKETS: [f64; 10] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

/// How many VFs are where, as counted by the inventory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VfCounts {
    /// Kernel-bound with a netdev in the host namespace.
    pub host: u64,
    /// Held by a pod (per the CNI caches).
    pub pod: u64,
    /// Bound to a userspace driver (vfio-pci …).
    pub userspace: u64,
    /// Netdev not visible and no pod claims it.
    pub unknown: u64,
}

/// The agent's metrics. Cheap to update from any thread.
#[derive(Debug, Default)]
pub struct Metrics {
    vfs: [AtomicU64; 4],
    reconcile_errors: AtomicU64,
    state_writes: AtomicU64,
    state_write_errors: AtomicU64,
    imds_by_code: Mutex<BTreeMap<String, u64>>,
    imds_latency: Histogram,
}

#[derive(Debug, Default)]
struct Histogram {
    /// Non-cumulative counts; the last slot is `+Inf`.
    buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    sum_nanos: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let slot = LATENCY_BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.buckets[slot].fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }
}

impl Metrics {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Replaces the VF gauges with the latest inventory counts.
    pub fn set_vf_counts(&self, c: VfCounts) {
        for (slot, v) in self.vfs.iter().zip([c.host, c.pod, c.userspace, c.unknown]) {
            slot.store(v, Ordering::Relaxed);
        }
    }

    /// Counts one failed reconcile pass.
    pub fn inc_reconcile_errors(&self) {
        self.reconcile_errors.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one state file write; `ok` false counts a failed one.
    pub fn record_state_write(&self, ok: bool) {
        let counter = if ok {
            &self.state_writes
        } else {
            &self.state_write_errors
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one IMDS attempt. `code` is the HTTP status or `transport`.
    pub fn record_imds(&self, outcome: RequestOutcome, elapsed: Duration) {
        let code = match outcome {
            RequestOutcome::Status(s) => s.to_string(),
            RequestOutcome::Transport => "transport".to_string(),
        };
        if let Ok(mut map) = self.imds_by_code.lock() {
            *map.entry(code).or_default() += 1;
        }
        self.imds_latency.observe(elapsed);
    }

    /// The registry in Prometheus text exposition format 0.0.4.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        header(
            &mut out,
            "plexus_vfs",
            "gauge",
            "VFs on this node by where they are now.",
        );
        for (state, slot) in ["host", "pod", "userspace", "unknown"]
            .iter()
            .zip(&self.vfs)
        {
            let _ = writeln!(out, "plexus_vfs{{state=\"{state}\"}} {}", load(slot));
        }
        counter(
            &mut out,
            "plexus_reconcile_errors_total",
            "Reconcile passes that failed.",
            load(&self.reconcile_errors),
        );
        header(
            &mut out,
            "plexus_imds_requests_total",
            "counter",
            "Instance metadata HTTP attempts by status code (transport = no answer).",
        );
        if let Ok(map) = self.imds_by_code.lock() {
            for (code, n) in map.iter() {
                let _ = writeln!(out, "plexus_imds_requests_total{{code=\"{code}\"}} {n}");
            }
        }
        let h = &self.imds_latency;
        header(
            &mut out,
            "plexus_imds_request_duration_seconds",
            "histogram",
            "Latency of instance metadata HTTP attempts.",
        );
        let mut cumulative = 0;
        for (i, bound) in LATENCY_BUCKETS.iter().enumerate() {
            cumulative += load(&h.buckets[i]);
            let _ = writeln!(
                out,
                "plexus_imds_request_duration_seconds_bucket{{le=\"{bound}\"}} {cumulative}"
            );
        }
        cumulative += load(&h.buckets[LATENCY_BUCKETS.len()]);
        let _ = writeln!(
            out,
            "plexus_imds_request_duration_seconds_bucket{{le=\"+Inf\"}} {cumulative}"
        );
        let sum = load(&h.sum_nanos) as f64 / 1e9;
        let _ = writeln!(out, "plexus_imds_request_duration_seconds_sum {sum}");
        let _ = writeln!(
            out,
            "plexus_imds_request_duration_seconds_count {}",
            load(&h.count)
        );
        counter(
            &mut out,
            "plexus_state_file_writes_total",
            "Successful atomic writes of the node state file.",
            load(&self.state_writes),
        );
        counter(
            &mut out,
            "plexus_state_file_write_errors_total",
            "Failed writes of the node state file.",
            load(&self.state_write_errors),
        );
        out
    }
}

impl RequestObserver for Metrics {
    fn observe(&self, _path: &str, outcome: RequestOutcome, elapsed: Duration) {
        self.record_imds(outcome, elapsed);
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn counter(out: &mut String, name: &str, help: &str, value: u64) {
    header(out, name, "counter", help);
    let _ = writeln!(out, "{name} {value}");
}

/// A running `/metrics` endpoint; stops when dropped.
#[derive(Debug)]
pub struct MetricsServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl MetricsServer {
    /// Address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept() so the thread sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Binds `addr` and serves `GET /metrics` (and `/healthz`) on a thread, one
/// connection at a time: scrapes are rare and the render is microseconds.
pub fn serve(addr: SocketAddr, metrics: Arc<Metrics>) -> std::io::Result<MetricsServer> {
    let listener = TcpListener::bind(addr)?;
    let addr = listener.local_addr()?;
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let thread = std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || {
            for conn in listener.incoming() {
                if flag.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(stream) = conn {
                    if let Err(e) = answer(stream, &metrics) {
                        tracing::debug!(error = %e, "metrics scrape failed");
                    }
                }
            }
        })?;
    Ok(MetricsServer {
        addr,
        stop,
        thread: Some(thread),
    })
}

fn answer(stream: TcpStream, metrics: &Metrics) -> std::io::Result<()> {
    // A stalled client must not wedge the only serving thread.
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.set_write_timeout(Some(Duration::from_secs(2)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    // Drain headers up to the blank line.
    let mut line = String::new();
    while reader.read_line(&mut line)? > 0 && line != "\r\n" && line != "\n" {
        line.clear();
    }
    let mut parts = request_line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = path.split('?').next().unwrap_or("");
    let (status, ctype, body) = match (method, path) {
        ("GET", "/metrics") => (
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            metrics.render(),
        ),
        ("GET", "/healthz") => ("200 OK", "text/plain", "ok\n".to_string()),
        ("GET", _) => ("404 Not Found", "text/plain", "not found\n".to_string()),
        _ => (
            "405 Method Not Allowed",
            "text/plain",
            "method not allowed\n".to_string(),
        ),
    };
    let mut stream = stream;
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    const GOLDEN: &str = include_str!("../tests/fixtures/metrics.golden.txt");

    fn populated() -> Metrics {
        let m = Metrics::new();
        m.set_vf_counts(VfCounts {
            host: 2,
            pod: 3,
            userspace: 1,
            unknown: 0,
        });
        m.inc_reconcile_errors();
        m.record_state_write(true);
        m.record_state_write(true);
        m.record_state_write(false);
        m.record_imds(RequestOutcome::Status(200), Duration::from_millis(3));
        m.record_imds(RequestOutcome::Status(429), Duration::from_millis(40));
        m.record_imds(RequestOutcome::Status(200), Duration::from_millis(700));
        m.observe(
            "/opc/v2/vnics/",
            RequestOutcome::Transport,
            Duration::from_secs(20),
        );
        m
    }

    #[test]
    fn render_matches_golden() {
        assert_eq!(populated().render(), GOLDEN);
    }

    #[test]
    fn every_sample_has_help_and_type() {
        let text = populated().render();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let name = line.split(['{', ' ']).next().unwrap();
            let family = name
                .trim_end_matches("_bucket")
                .trim_end_matches("_sum")
                .trim_end_matches("_count");
            assert!(text.contains(&format!("# TYPE {family} ")), "{line}");
            assert!(text.contains(&format!("# HELP {family} ")), "{line}");
        }
    }

    fn http_get(addr: SocketAddr, path: &str) -> String {
        let mut s = TcpStream::connect(addr).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    #[test]
    fn scrape_over_loopback() {
        let metrics = Arc::new(populated());
        let server = serve("127.0.0.1:0".parse().unwrap(), metrics.clone()).unwrap();
        let resp = http_get(server.local_addr(), "/metrics");
        assert!(resp.starts_with("HTTP/1.1 200 OK\r\n"), "{resp}");
        assert!(resp.contains("text/plain; version=0.0.4"));
        assert!(resp.ends_with(GOLDEN), "{resp}");
        metrics.inc_reconcile_errors();
        let resp = http_get(server.local_addr(), "/metrics");
        assert!(resp.contains("plexus_reconcile_errors_total 2\n"));
        assert!(http_get(server.local_addr(), "/nope").starts_with("HTTP/1.1 404"));
        assert!(http_get(server.local_addr(), "/healthz").ends_with("ok\n"));
        drop(server);
    }
}
