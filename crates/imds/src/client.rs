//! Blocking OCI IMDS v2 client (ureq, no async runtime, so the `vnic` IPAM
//! binary can use it without starting tokio).
//!
//! Behaviour follows OCI's "Getting Instance Metadata" guidance: every v2
//! call carries `Authorization: Bearer Oracle`; 404 (IMDS briefly 404s while
//! it is updated), 429 (throttling) and 5xx are retried with exponential
//! backoff and jitter, as are transport errors; the whole call is bounded by
//! a time budget. Bodies are parsed only on 2xx, because throttling answers
//! come back as HTML.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use plexus_cni::retry::{retry, Limits, ThreadSleeper};
use serde::de::DeserializeOwned;

use crate::error::ImdsError;
use crate::node::NodeNic;
use crate::types::{Instance, Vnic};
use crate::MetadataSource;

/// Where OCI serves instance metadata.
pub const DEFAULT_BASE_URL: &str = "http://169.254.169.254";
/// The header value IMDS v2 requires.
pub const AUTH_HEADER_VALUE: &str = "Bearer Oracle";
/// Path of the VNIC list.
pub const VNICS_PATH: &str = "/opc/v2/vnics/";
/// Path of the instance document.
pub const INSTANCE_PATH: &str = "/opc/v2/instance/";

/// How hard to retry. OCI asks for up to three retries on 404/429/5xx.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Total attempts including the first one.
    pub max_attempts: u32,
    /// Delay before the first retry; doubles each time.
    pub initial_backoff: Duration,
    /// Upper bound of one delay.
    pub max_backoff: Duration,
    /// No retry is started once elapsed time plus the next delay exceeds this.
    pub budget: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 4,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
            budget: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// Delay before retry number `retry` (0 = first retry). "Equal jitter":
    /// half the exponential delay is fixed, the other half scaled by
    /// `jitter` in `[0, 1]`, so concurrent callers spread out but never
    /// retry immediately.
    pub fn backoff(&self, retry: u32, jitter: f64) -> Duration {
        let exp = self
            .initial_backoff
            .saturating_mul(1u32.checked_shl(retry).unwrap_or(u32::MAX));
        let capped = exp.min(self.max_backoff);
        let half = capped / 2;
        half + half.mul_f64(jitter.clamp(0.0, 1.0))
    }
}

/// Client settings.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientConfig {
    /// Scheme + host (+ port), no path; tests point this at a fake.
    pub base_url: String,
    /// TCP connect timeout of one attempt.
    pub connect_timeout: Duration,
    /// Timeout of one attempt after connecting (headers + body).
    pub read_timeout: Duration,
    /// Retry behaviour.
    pub retry: RetryPolicy,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            base_url: DEFAULT_BASE_URL.to_string(),
            connect_timeout: Duration::from_secs(2),
            read_timeout: Duration::from_secs(10),
            retry: RetryPolicy::default(),
        }
    }
}

/// What one HTTP attempt ended with, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestOutcome {
    /// An HTTP status was received.
    Status(u16),
    /// No HTTP answer (refused, timeout, reset).
    Transport,
}

/// Hook called after every attempt (not every call), so metrics see retries.
pub trait RequestObserver: Send + Sync {
    /// `path` is the IMDS path requested, `elapsed` the attempt's duration.
    fn observe(&self, path: &str, outcome: RequestOutcome, elapsed: Duration);
}

/// Observer that ignores everything.
#[derive(Debug, Default)]
pub struct NoopObserver;

impl RequestObserver for NoopObserver {
    fn observe(&self, _path: &str, _outcome: RequestOutcome, _elapsed: Duration) {}
}

/// OCI IMDS v2 over HTTP.
pub struct OciImds {
    config: ClientConfig,
    agent: ureq::Agent,
    observer: Arc<dyn RequestObserver>,
    attempts: AtomicU64,
}

impl std::fmt::Debug for OciImds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OciImds")
            .field("config", &self.config)
            .field("attempts", &self.attempts)
            .finish_non_exhaustive()
    }
}

impl OciImds {
    /// Client with the given settings and no observer.
    pub fn new(config: ClientConfig) -> Self {
        Self::with_observer(config, Arc::new(NoopObserver))
    }

    /// Client that reports every attempt to `observer`.
    pub fn with_observer(config: ClientConfig, observer: Arc<dyn RequestObserver>) -> Self {
        // IMDS is link-local: never send it through an HTTP proxy.
        let agent = ureq::AgentBuilder::new()
            .try_proxy_from_env(false)
            .timeout_connect(config.connect_timeout)
            .timeout_read(config.read_timeout)
            .redirects(0)
            .build();
        Self {
            config,
            agent,
            observer,
            attempts: AtomicU64::new(0),
        }
    }

    /// HTTP attempts made so far (retries included).
    pub fn request_count(&self) -> u64 {
        self.attempts.load(Ordering::Relaxed)
    }

    /// The settings in use.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// GETs `path` and parses the 2xx body as `T`, retrying per the policy.
    pub fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T, ImdsError> {
        let url = format!("{}{}", self.config.base_url.trim_end_matches('/'), path);
        let policy = &self.config.retry;
        let limits = Limits {
            max_attempts: policy.max_attempts,
            budget: policy.budget,
        };
        let wait = |failure: &Failure, n| {
            let delay = policy.backoff(n, jitter());
            failure.retryable().then(|| {
                tracing::debug!(%url, attempt = n + 1, delay_ms = delay.as_millis() as u64, "retrying metadata request");
                delay
            })
        };
        match retry(limits, &ThreadSleeper, |_| self.attempt(path, &url), wait) {
            Ok(body) => decode(&url, &body),
            Err(g) => Err(g.error.into_error(url, g.attempts)),
        }
    }

    fn attempt(&self, path: &str, url: &str) -> Result<String, Failure> {
        self.attempts.fetch_add(1, Ordering::Relaxed);
        let t0 = Instant::now();
        let result = self
            .agent
            .get(url)
            .set("Authorization", AUTH_HEADER_VALUE)
            .call();
        match result {
            Ok(resp) => {
                let status = resp.status();
                let body = resp.into_string();
                self.observer
                    .observe(path, RequestOutcome::Status(status), t0.elapsed());
                body.map_err(Failure::Body)
            }
            Err(ureq::Error::Status(status, resp)) => {
                let body = resp.into_string().unwrap_or_default();
                self.observer
                    .observe(path, RequestOutcome::Status(status), t0.elapsed());
                Err(Failure::Status {
                    status,
                    excerpt: excerpt(&body),
                })
            }
            Err(ureq::Error::Transport(t)) => {
                self.observer
                    .observe(path, RequestOutcome::Transport, t0.elapsed());
                Err(Failure::Transport(t.to_string()))
            }
        }
    }
}

impl OciImds {
    /// `GET /opc/v2/vnics/`: the VNICs as IMDS lists them, primary first.
    pub fn vnics(&self) -> Result<Vec<Vnic>, ImdsError> {
        self.get_json(VNICS_PATH)
    }

    /// `GET /opc/v2/instance/`.
    pub fn instance(&self) -> Result<Instance, ImdsError> {
        self.get_json(INSTANCE_PATH)
    }
}

impl MetadataSource for OciImds {
    fn nics(&self) -> Result<Vec<NodeNic>, ImdsError> {
        Ok(self.vnics()?.iter().map(NodeNic::from).collect())
    }
}

enum Failure {
    Status { status: u16, excerpt: String },
    Transport(String),
    Body(std::io::Error),
}

impl Failure {
    fn retryable(&self) -> bool {
        match self {
            Failure::Status { status, .. } => is_retryable_status(*status),
            Failure::Transport(_) | Failure::Body(_) => true,
        }
    }

    fn into_error(self, url: String, attempts: u32) -> ImdsError {
        match self {
            Failure::Status { status, excerpt } => ImdsError::Status {
                url,
                status,
                excerpt,
                attempts,
            },
            Failure::Transport(reason) => ImdsError::Transport {
                url,
                reason,
                attempts,
            },
            Failure::Body(source) => ImdsError::Body { url, source },
        }
    }
}

/// Statuses OCI documents as transient: 404 (update window), 429, 5xx.
pub fn is_retryable_status(status: u16) -> bool {
    status == 404 || status == 429 || (500..600).contains(&status)
}

fn decode<T: DeserializeOwned>(url: &str, body: &str) -> Result<T, ImdsError> {
    serde_json::from_str(body).map_err(|source| ImdsError::Decode {
        url: url.to_string(),
        excerpt: excerpt(body),
        source,
    })
}

/// A short, single-line, tag-free excerpt of a response body, so an HTML
/// error page becomes e.g. `429 Too Many Requests` in a log line.
pub fn excerpt(body: &str) -> String {
    const MAX_CHARS: usize = 160;
    let mut text = String::with_capacity(body.len().min(MAX_CHARS * 2));
    let mut in_tag = false;
    for c in body.chars() {
        match c {
            '<' => {
                in_tag = true;
                text.push(' ');
            }
            '>' if in_tag => in_tag = false,
            _ if in_tag => {}
            c => text.push(c),
        }
    }
    let collapsed = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if collapsed.is_empty() {
        return "(empty body)".to_string();
    }
    match collapsed.char_indices().nth(MAX_CHARS) {
        Some((cut, _)) => format!("{}…", &collapsed[..cut]),
        None => collapsed,
    }
}

/// A value in `[0, 1)` from the std hasher's random keys: enough entropy to
/// de-synchronise retries without pulling in a random-number crate.
fn jitter() -> f64 {
    let mut h = RandomState::new().build_hasher();
    h.write_u64(0);
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_caps_and_jitters_within_half() {
        let p = RetryPolicy {
            max_attempts: 10,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(1000),
            budget: Duration::from_secs(60),
        };
        assert_eq!(p.backoff(0, 0.0), Duration::from_millis(50));
        assert_eq!(p.backoff(0, 1.0), Duration::from_millis(100));
        assert_eq!(p.backoff(2, 1.0), Duration::from_millis(400));
        assert_eq!(p.backoff(5, 1.0), Duration::from_millis(1000));
        assert_eq!(p.backoff(40, 0.5), Duration::from_millis(750));
    }

    #[test]
    fn retryable_statuses_follow_oci_guidance() {
        for s in [404, 429, 500, 502, 503, 599] {
            assert!(is_retryable_status(s), "{s}");
        }
        for s in [400, 401, 403, 200] {
            assert!(!is_retryable_status(s), "{s}");
        }
    }

    #[test]
    fn excerpt_strips_html_and_truncates() {
        let html = "<html><head><title>429 Too Many Requests</title></head>\n<body><h1>Too many</h1></body></html>";
        assert_eq!(excerpt(html), "429 Too Many Requests Too many");
        assert_eq!(excerpt("   "), "(empty body)");
        let long = "é".repeat(500);
        let e = excerpt(&long);
        assert_eq!(e.chars().count(), 161);
    }

    #[test]
    fn jitter_is_in_unit_interval() {
        for _ in 0..100 {
            let j = jitter();
            assert!((0.0..1.0).contains(&j));
        }
    }
}
