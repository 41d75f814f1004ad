//! The fake's mutable state, shared by the request handler and the
//! test-facing [`super::FakeApiServer`] API: stored objects, the one
//! resourceVersion counter, fault and latency injections, the request log;
//! plus the uid and timestamp sources for server-set metadata.

use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use plexus_cni::timefmt::rfc3339;
use serde_json::Value;

use super::{RecordedRequest, VerbLatency};
#[derive(Debug, Clone)]
pub(super) struct Matcher {
    /// `None` matches every method.
    method: Option<String>,
    pattern: String,
}

impl Matcher {
    pub(super) fn new(method: &str, pattern: &str) -> Self {
        let method = match method {
            "" | "*" => None,
            m => Some(m.to_ascii_uppercase()),
        };
        Self {
            method,
            pattern: pattern.to_owned(),
        }
    }

    /// Path-segment prefix match where a `*` segment matches any one segment.
    pub(super) fn matches(&self, method: &str, path: &str) -> bool {
        if self.method.as_deref().is_some_and(|m| m != method) {
            return false;
        }
        let mut have = path.trim_matches('/').split('/');
        let want = self.pattern.trim_matches('/');
        if want.is_empty() {
            return true;
        }
        want.split('/')
            .all(|w| have.next().is_some_and(|h| w == "*" || w == h))
    }
}

#[derive(Debug)]
pub(super) struct Injection {
    pub(super) matcher: Matcher,
    pub(super) status: u16,
    pub(super) remaining: usize,
}

#[derive(Debug)]
pub(super) struct Latency {
    pub(super) matcher: Matcher,
    pub(super) delay: Duration,
    pub(super) remaining: usize,
}

#[derive(Debug, Default)]
pub(super) struct State {
    pub(super) objects: BTreeMap<String, Value>,
    pub(super) resource_version: u64,
    pub(super) token: Option<String>,
    pub(super) user: String,
    pub(super) injections: Vec<Injection>,
    pub(super) latencies: Vec<Latency>,
    pub(super) verb_latency: Option<VerbLatency>,
    pub(super) forbidden: Vec<Matcher>,
    pub(super) requests: Vec<RecordedRequest>,
}

pub(super) type Shared = Arc<Mutex<State>>;

pub(super) fn lock(shared: &Shared) -> MutexGuard<'_, State> {
    // A panicking test thread must not wedge the fake for the others.
    shared.lock().unwrap_or_else(|p| p.into_inner())
}

static UID_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A random v4-format UUID (std's per-process random hasher keys + a counter).
pub(super) fn new_uid() -> String {
    let rand = |salt: u64| {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(salt);
        h.write_u64(UID_COUNTER.fetch_add(1, Ordering::Relaxed));
        h.finish()
    };
    let (a, b) = (rand(1), rand(2));
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0x0fff,
        0x8000 | (b >> 48) & 0x3fff,
        b & 0xffff_ffff_ffff
    )
}

pub(super) fn now_rfc3339() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs();
    rfc3339(secs)
}
