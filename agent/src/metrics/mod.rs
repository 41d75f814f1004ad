//! Prometheus metrics of the agent, kept in a `prometheus-client` registry
//! and exposed in the OpenMetrics text format by [`serve`] (hyper, see
//! [`http`]).
//!
//! The registry is also the IMDS client's [`RequestObserver`], so every
//! metadata attempt (retries included) is counted by status and timed.

mod family;
mod http;

use std::time::Duration;

use plexus_imds::{RequestObserver, RequestOutcome};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use family::SortedFamily as Family;
pub use http::{serve, MetricsServer, CONTENT_TYPE};

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

/// Labels of `plexus_agent_build_info`: what this binary is. The one place
/// to add build facts as further labels.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
pub struct BuildLabels {
    /// The workspace version (`plexus_buildinfo::VERSION`).
    pub version: String,
    /// The git commit the binary was built from (`plexus_buildinfo::COMMIT`).
    pub commit: String,
}

impl BuildLabels {
    /// This build.
    pub fn current() -> Self {
        Self {
            version: plexus_buildinfo::VERSION.to_string(),
            commit: plexus_buildinfo::COMMIT.to_string(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
struct StateLabel {
    state: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
struct CodeLabel {
    code: String,
}

/// The agent's metrics. Cheap to update from any thread.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    vfs: Family<StateLabel, Gauge>,
    reconcile_errors: Counter,
    imds_requests: Family<CodeLabel, Counter>,
    imds_latency: Histogram,
    state_writes: Counter,
    state_write_errors: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with every metric registered (and the build info set).
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let build = Family::<BuildLabels, Gauge>::default();
        build.with(&BuildLabels::current(), |g| g.set(1));
        registry.register(
            "plexus_agent_build_info",
            "Build of the running agent (always 1)",
            build,
        );
        let m = Self {
            vfs: Family::default(),
            reconcile_errors: Counter::default(),
            imds_requests: Family::default(),
            imds_latency: Histogram::new(LATENCY_BUCKETS),
            state_writes: Counter::default(),
            state_write_errors: Counter::default(),
            registry: Registry::default(),
        };
        for state in ["host", "pod", "userspace", "unknown"] {
            m.vfs.with(&StateLabel { state }, |g| g.set(0));
        }
        registry.register(
            "plexus_vfs",
            "VFs on this node by where they are now",
            m.vfs.clone(),
        );
        registry.register(
            "plexus_reconcile_errors",
            "Reconcile passes that failed",
            m.reconcile_errors.clone(),
        );
        registry.register(
            "plexus_imds_requests",
            "Instance metadata HTTP attempts by status code (transport = no answer)",
            m.imds_requests.clone(),
        );
        registry.register(
            "plexus_imds_request_duration_seconds",
            "Latency of instance metadata HTTP attempts",
            m.imds_latency.clone(),
        );
        registry.register(
            "plexus_state_file_writes",
            "Successful atomic writes of the node state file",
            m.state_writes.clone(),
        );
        registry.register(
            "plexus_state_file_write_errors",
            "Failed writes of the node state file",
            m.state_write_errors.clone(),
        );
        Self { registry, ..m }
    }

    /// Replaces the VF gauges with the latest inventory counts.
    pub fn set_vf_counts(&self, c: VfCounts) {
        let all = [
            ("host", c.host),
            ("pod", c.pod),
            ("userspace", c.userspace),
            ("unknown", c.unknown),
        ];
        for (state, n) in all {
            let n = i64::try_from(n).unwrap_or(i64::MAX);
            self.vfs.with(&StateLabel { state }, |g| g.set(n));
        }
    }

    /// Counts one failed reconcile pass.
    pub fn inc_reconcile_errors(&self) {
        self.reconcile_errors.inc();
    }

    /// Counts one state file write; `ok` false counts a failed one.
    pub fn record_state_write(&self, ok: bool) {
        let counter = if ok {
            &self.state_writes
        } else {
            &self.state_write_errors
        };
        counter.inc();
    }

    /// Counts one IMDS attempt. `code` is the HTTP status or `transport`.
    pub fn record_imds(&self, outcome: RequestOutcome, elapsed: Duration) {
        let code = match outcome {
            RequestOutcome::Status(s) => s.to_string(),
            RequestOutcome::Transport => "transport".to_string(),
        };
        self.imds_requests.with(&CodeLabel { code }, |c| c.inc());
        self.imds_latency.observe(elapsed.as_secs_f64());
    }

    /// The registry in the OpenMetrics text format ([`CONTENT_TYPE`]).
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

impl RequestObserver for Metrics {
    fn observe(&self, _path: &str, outcome: RequestOutcome, elapsed: Duration) {
        self.record_imds(outcome, elapsed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{SocketAddr, TcpStream};
    use std::sync::Arc;

    const GOLDEN: &str = include_str!("../../tests/fixtures/metrics.golden.txt");

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

    /// The render with this build's labels replaced by the golden's
    /// placeholders (they change with every version and commit).
    fn for_golden(text: &str) -> String {
        let b = BuildLabels::current();
        text.replace(
            &format!("version=\"{}\",commit=\"{}\"", b.version, b.commit),
            "version=\"VERSION\",commit=\"COMMIT\"",
        )
    }

    #[test]
    fn render_matches_golden() {
        assert_eq!(for_golden(&populated().render()), GOLDEN);
    }

    #[test]
    fn every_sample_has_help_and_type() {
        let text = populated().render();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let name = line.split(['{', ' ']).next().unwrap();
            // OpenMetrics names a family without its sample suffixes.
            let family = name
                .trim_end_matches("_total")
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
        assert!(resp.contains("application/openmetrics-text; version=1.0.0"));
        assert!(for_golden(&resp).ends_with(GOLDEN), "{resp}");
        metrics.inc_reconcile_errors();
        let resp = http_get(server.local_addr(), "/metrics");
        assert!(resp.contains("plexus_reconcile_errors_total 2\n"));
        assert!(http_get(server.local_addr(), "/nope").starts_with("HTTP/1.1 404"));
        assert!(http_get(server.local_addr(), "/healthz").ends_with("ok\n"));
        drop(server);
    }
}
