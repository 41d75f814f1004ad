//! How long the real API server takes to answer, per verb, so benchmarks on
//! the fake see the proportions of a real cluster. The defaults are single
//! requests timed on kube-apiserver v1.28 (+ etcd, loopback, a 2-core VM)
//! over a kept-alive HTTP/1.1 connection. Off unless asked for: unit tests
//! want answers at once.

use std::time::Duration;

/// Answer delay per kind of request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerbLatency {
    /// GET of one pod.
    pub get_pod: Duration,
    /// GET of any other object (a NAD, a DaemonSet) or list.
    pub get_other: Duration,
    /// PATCH (any subresource; `pods/status` is the one measured).
    pub patch: Duration,
    /// POST (create; an event is the one measured).
    pub create: Duration,
    /// PUT and DELETE (not measured; a write like PATCH).
    pub other_write: Duration,
    /// Added before each TLS handshake (the server's side of a new
    /// connection); the handshake's own crypto comes on top.
    pub tls_handshake: Duration,
}

impl VerbLatency {
    /// Medians measured on kube-apiserver v1.28: GET pod 1.2 ms, GET NAD
    /// 1.4 ms, PATCH pods/status 2.9 ms (p90 6.5), POST event 1.8 ms, a
    /// new TLS connection 1.9 ms.
    pub const KUBE_1_28: Self = Self {
        get_pod: Duration::from_micros(1200),
        get_other: Duration::from_micros(1400),
        patch: Duration::from_micros(2900),
        create: Duration::from_micros(1800),
        other_write: Duration::from_micros(2900),
        tls_handshake: Duration::from_micros(1900),
    };

    /// The delay for one request; health, version and discovery answer at once.
    pub fn for_request(&self, method: &str, path: &str) -> Duration {
        let api = path.starts_with("/api/") || path.starts_with("/apis/");
        // Discovery (`/api/v1`, `/apis/{group}/v1`) has no resource segment.
        let resource = path.trim_matches('/').split('/').count() > 3;
        if !(api && resource) {
            return Duration::ZERO;
        }
        match method {
            "GET" if is_pod(path) => self.get_pod,
            "GET" => self.get_other,
            "PATCH" => self.patch,
            "POST" => self.create,
            _ => self.other_write,
        }
    }

    /// Parses `off`, `kube-1.28`, or `get-pod=MS,get=MS,patch=MS,post=MS,write=MS,tls=MS`
    /// (milliseconds, missing keys from `kube-1.28`); `None` means off.
    pub fn parse(text: &str) -> Result<Option<Self>, String> {
        match text {
            "off" | "" => return Ok(None),
            "kube-1.28" => return Ok(Some(Self::KUBE_1_28)),
            _ => {}
        }
        let mut l = Self::KUBE_1_28;
        for kv in text.split(',') {
            let (k, v) = kv
                .split_once('=')
                .ok_or_else(|| format!("latency {kv:?}: want key=milliseconds"))?;
            let ms: f64 = v.parse().map_err(|e| format!("latency {kv:?}: {e}"))?;
            if !(0.0..=60_000.0).contains(&ms) {
                return Err(format!("latency {kv:?}: out of range"));
            }
            let d = Duration::from_secs_f64(ms / 1000.0);
            match k {
                "get-pod" => l.get_pod = d,
                "get" => l.get_other = d,
                "patch" => l.patch = d,
                "post" => l.create = d,
                "write" => l.other_write = d,
                "tls" => l.tls_handshake = d,
                _ => {
                    return Err(format!(
                        "latency key {k:?}: one of get-pod, get, patch, post, write, tls"
                    ))
                }
            }
        }
        Ok(Some(l))
    }
}

/// Waits `d` with the kernel's timer precision. tokio's timer wheel rounds
/// every sleep up to its next 1 ms tick, which would turn the 1.2 ms of a
/// GET pod into 2 ms; a blocking-pool thread sleeps to within tens of
/// microseconds, and concurrent waits still overlap (one thread each).
pub(crate) async fn precise_sleep(d: Duration) {
    if d.is_zero() {
        return;
    }
    if tokio::task::spawn_blocking(move || std::thread::sleep(d))
        .await
        .is_err()
    {
        // The runtime is shutting down: the answer no longer matters.
        tokio::time::sleep(d).await;
    }
}

/// `/api/v1/namespaces/{ns}/pods/{name}` (not its subresources, not lists).
fn is_pod(path: &str) -> bool {
    let seg: Vec<&str> = path.trim_matches('/').split('/').collect();
    matches!(seg.as_slice(), ["api", "v1", "namespaces", _, "pods", _])
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn verbs_and_paths() {
        let l = VerbLatency::KUBE_1_28;
        let ms = |m, p| l.for_request(m, p).as_micros();
        assert_eq!(ms("GET", "/api/v1/namespaces/default/pods/p"), 1200);
        assert_eq!(
            ms(
                "GET",
                "/apis/k8s.cni.cncf.io/v1/namespaces/default/network-attachment-definitions/n"
            ),
            1400
        );
        assert_eq!(
            ms("PATCH", "/api/v1/namespaces/default/pods/p/status"),
            2900
        );
        assert_eq!(ms("POST", "/api/v1/namespaces/default/events"), 1800);
        assert_eq!(ms("GET", "/healthz"), 0);
        assert_eq!(ms("GET", "/apis/k8s.cni.cncf.io/v1"), 0);
    }

    #[test]
    fn precise_sleeps_wait_their_time_and_overlap() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let d = Duration::from_millis(20);
        let t = std::time::Instant::now();
        rt.block_on(async {
            let waits: Vec<_> = (0..20).map(|_| tokio::spawn(precise_sleep(d))).collect();
            for w in waits {
                w.await.unwrap();
            }
        });
        let took = t.elapsed();
        // Twenty at once, not one after another (400 ms), with slack for a
        // loaded machine.
        assert!(took >= d && took < Duration::from_millis(200), "{took:?}");
    }

    #[test]
    fn parse_forms() {
        assert_eq!(VerbLatency::parse("off").unwrap(), None);
        assert_eq!(
            VerbLatency::parse("kube-1.28").unwrap(),
            Some(VerbLatency::KUBE_1_28)
        );
        let l = VerbLatency::parse("patch=5,post=0.5,tls=0")
            .unwrap()
            .unwrap();
        assert_eq!(l.tls_handshake, Duration::ZERO);
        assert_eq!(l.patch, Duration::from_millis(5));
        assert_eq!(l.create, Duration::from_micros(500));
        assert_eq!(l.get_pod, VerbLatency::KUBE_1_28.get_pod);
        assert!(VerbLatency::parse("nope=1").is_err());
        assert!(VerbLatency::parse("patch").is_err());
        assert!(VerbLatency::parse("patch=-1").is_err());
    }
}
