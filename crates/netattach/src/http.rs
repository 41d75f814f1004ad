//! [`PodApi`] over HTTP(S), blocking (a CNI call is one short process). For
//! `https` the first request opens one TLS connection offering `h2` (see
//! [`crate::h2conn`]): with HTTP/2 every request of the process, from any
//! thread, is a stream on it. A server that picks HTTP/1.1, and plain
//! `http`, go through one `ureq` agent whose keep-alive pool is reused.
//! Nothing is built before the first request, so a plugin that never needs
//! the API pays nothing.
//!
//! Unlike Multus's fixed 250 ms per GET, the per-request timeout and the
//! retry budget are configurable, with exponential backoff and `Retry-After`
//! honoured for 429/5xx, transport errors and timeouts.

use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use plexus_cni::retry::{exponential, retry, Limits, ThreadSleeper};

use crate::api::{network_status_patch, ApiError, Event, Pod, PodApi, PodRef};
use crate::h2conn::{H2Client, Reply, Request};
use crate::kubeconfig::ClientConfig;
use crate::nad::NetworkAttachmentDefinition;
use crate::tlsconf::{h2_tls_config, tls_config};

/// How hard to try before giving up on a retryable error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Total attempts, including the first.
    pub max_attempts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// No new attempt starts after this much time since the first.
    pub budget: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
            budget: Duration::from_secs(20),
        }
    }
}

impl RetryPolicy {
    /// One attempt, no retries.
    pub fn none() -> Self {
        Self {
            max_attempts: 1,
            ..Self::default()
        }
    }
}

/// Default per-request timeout: generous for slow API servers (multus #1461)
/// yet well inside the runtime's CNI ADD timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// The Kubernetes API client used by the meta plugin.
pub struct HttpPodApi {
    config: ClientConfig,
    timeout: Duration,
    retry: RetryPolicy,
    component: String,
    agent: OnceLock<Result<ureq::Agent, ApiError>>,
    /// `None` for plain `http`.
    h2: OnceLock<Result<Option<H2Client>, ApiError>>,
}

impl std::fmt::Debug for HttpPodApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpPodApi")
            .field("server", &self.config.server)
            .field("timeout", &self.timeout)
            .field("retry", &self.retry)
            .finish()
    }
}

impl HttpPodApi {
    pub fn new(config: ClientConfig) -> Self {
        Self {
            config,
            timeout: DEFAULT_TIMEOUT,
            retry: RetryPolicy::default(),
            component: "plexus".into(),
            agent: OnceLock::new(),
            h2: OnceLock::new(),
        }
    }

    /// Per-request timeout (connect + send + receive).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// `source.component` / `reportingComponent` of created events.
    pub fn with_event_component(mut self, component: &str) -> Self {
        self.component = component.to_owned();
        self
    }

    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// GET of any API path, decoded as JSON, with the same errors and retries
    /// as the pod calls (the agent asks for its own DaemonSet).
    pub fn get_json(&self, path: &str) -> Result<serde_json::Value, ApiError> {
        let body = self.request("GET", path, None, None)?;
        serde_json::from_slice(&body).map_err(|e| ApiError::Decode(e.to_string()))
    }

    fn agent(&self) -> Result<&ureq::Agent, ApiError> {
        self.agent
            .get_or_init(|| build_agent(&self.config, self.timeout))
            .as_ref()
            .map_err(Clone::clone)
    }

    fn h2(&self) -> Result<Option<&H2Client>, ApiError> {
        let built = self.h2.get_or_init(|| {
            if !self.config.is_https() {
                return Ok(None);
            }
            let tls = h2_tls_config(&self.config)?;
            let name = self.config.tls_server_name.as_deref();
            H2Client::new(&self.config.server, name, tls).map(Some)
        });
        built.as_ref().map(Option::as_ref).map_err(Clone::clone)
    }

    /// One request with retries; returns the 2xx body.
    fn request(
        &self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: Option<&str>,
    ) -> Result<Vec<u8>, ApiError> {
        let policy = self.retry;
        let limits = Limits {
            max_attempts: policy.max_attempts,
            budget: policy.budget,
        };
        let call = |_| self.once(method, path, content_type, body);
        let wait = |err: &ApiError, n| {
            if !err.is_retryable() {
                return None;
            }
            let retry_after = match err {
                ApiError::Retryable { retry_after, .. } => *retry_after,
                _ => None,
            };
            let backoff = exponential(policy.initial_backoff, policy.max_backoff, n);
            let wait = retry_after.unwrap_or(backoff).min(policy.max_backoff);
            tracing::debug!(%method, %path, retry = n + 1, error = %err, ?wait, "retrying Kubernetes API request");
            Some(wait)
        };
        retry(limits, &ThreadSleeper, call, wait).map_err(|g| g.error)
    }

    fn once(
        &self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: Option<&str>,
    ) -> Result<Vec<u8>, ApiError> {
        let url = format!("{}{path}", self.config.server);
        let mut headers = vec![
            ("accept", "application/json".to_owned()),
            (
                "user-agent",
                concat!("plexus/", env!("CARGO_PKG_VERSION")).to_owned(),
            ),
        ];
        // Read the token file now: a rotated token must be picked up.
        if let Some(token) = self
            .config
            .bearer_token()
            .map_err(|e| ApiError::Config(e.to_string()))?
        {
            headers.push(("authorization", format!("Bearer {token}")));
        }
        if let Some(ct) = content_type {
            headers.push(("content-type", ct.to_owned()));
        }
        let req = Request {
            method,
            url: &url,
            headers: &headers,
            body,
        };
        // `None`: the server chose HTTP/1.1, or this thread is inside an
        // async runtime (HTTP/2 would have to block it): ureq then.
        if let Some(h2) = self.h2()? {
            if let Some(reply) = h2.send(&req, self.timeout) {
                return reply.and_then(into_body);
            }
        }
        self.once_http1(&req)
    }

    fn once_http1(&self, req: &Request<'_>) -> Result<Vec<u8>, ApiError> {
        let mut call = self.agent()?.request(req.method, req.url);
        for (name, value) in req.headers {
            call = call.set(name, value);
        }
        let result = match req.body {
            Some(b) => call.send_string(b),
            None => call.call(),
        };
        match result {
            Ok(resp) => read_body(resp),
            Err(ureq::Error::Status(code, resp)) => {
                let retry_after = resp
                    .header("Retry-After")
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs);
                let body = read_body(resp).unwrap_or_default();
                Err(ApiError::from_status(code, &body, retry_after))
            }
            Err(ureq::Error::Transport(t)) => Err(transport_error(&t)),
        }
    }
}

/// The body of a success, else the typed error (ureq's rule: 4xx and 5xx
/// are errors; redirects are not followed).
fn into_body(reply: Reply) -> Result<Vec<u8>, ApiError> {
    if reply.status >= 400 {
        return Err(ApiError::from_status(
            reply.status,
            &reply.body,
            reply.retry_after,
        ));
    }
    Ok(reply.body)
}

fn read_body(resp: ureq::Response) -> Result<Vec<u8>, ApiError> {
    let mut buf = Vec::new();
    std::io::Read::read_to_end(&mut resp.into_reader(), &mut buf).map_err(|e| io_error(&e))?;
    Ok(buf)
}

fn io_error(e: &std::io::Error) -> ApiError {
    match e.kind() {
        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => {
            ApiError::Timeout(e.to_string())
        }
        _ => ApiError::Transport(e.to_string()),
    }
}

fn transport_error(t: &ureq::Transport) -> ApiError {
    let mut source = std::error::Error::source(t);
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if matches!(
                io.kind(),
                std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
            ) {
                return ApiError::Timeout(t.to_string());
            }
        }
        source = err.source();
    }
    match t.kind() {
        ureq::ErrorKind::InvalidUrl | ureq::ErrorKind::UnknownScheme => {
            ApiError::Config(t.to_string())
        }
        _ => ApiError::Transport(t.to_string()),
    }
}

/// The agent this crate builds for `config` (TLS roots, client certificate,
/// timeouts), for other long-running clients of the same API server (the
/// operator), so TLS setup has one owner.
pub fn agent_for(config: &ClientConfig, timeout: Duration) -> Result<ureq::Agent, ApiError> {
    build_agent(config, timeout)
}

fn build_agent(config: &ClientConfig, timeout: Duration) -> Result<ureq::Agent, ApiError> {
    let mut builder = ureq::AgentBuilder::new()
        .timeout(timeout)
        .no_delay(true)
        .redirects(0)
        .max_idle_connections_per_host(4);
    if config.is_https() {
        if config.tls_server_name.is_some() {
            tracing::warn!(
                "kubeconfig tls-server-name is not supported over HTTP/1.1; verifying the server URL host"
            );
        }
        if let Some(tls) = tls_config(config)? {
            builder = builder.tls_config(tls);
        }
    }
    Ok(builder.build())
}

/// Percent-encodes one path segment so a hostile pod name from `CNI_ARGS`
/// cannot change the request path.
fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    // `.` and `..` are dot-segments that URL normalisation removes, so a pod
    // named `..` would address its namespace instead: encode them too.
    let dots_only = s.bytes().all(|b| b == b'.');
    for b in s.bytes() {
        if (b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
            && !(dots_only && b == b'.')
        {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `/api/v1/namespaces/{ns}/pods/{name}`.
pub fn pod_path(namespace: &str, name: &str) -> String {
    format!(
        "/api/v1/namespaces/{}/pods/{}",
        segment(namespace),
        segment(name)
    )
}

/// `/apis/k8s.cni.cncf.io/v1/namespaces/{ns}/network-attachment-definitions/{name}`.
pub fn nad_path(namespace: &str, name: &str) -> String {
    format!(
        "/apis/k8s.cni.cncf.io/v1/namespaces/{}/network-attachment-definitions/{}",
        segment(namespace),
        segment(name)
    )
}

/// `/apis/apps/v1/namespaces/{ns}/daemonsets/{name}`.
pub fn daemonset_path(namespace: &str, name: &str) -> String {
    format!(
        "/apis/apps/v1/namespaces/{}/daemonsets/{}",
        segment(namespace),
        segment(name)
    )
}

impl PodApi for HttpPodApi {
    fn get_pod(&self, namespace: &str, name: &str) -> Result<Pod, ApiError> {
        let body = self.request("GET", &pod_path(namespace, name), None, None)?;
        Pod::from_json(&body)
    }

    fn get_nad(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<NetworkAttachmentDefinition, ApiError> {
        let body = self.request("GET", &nad_path(namespace, name), None, None)?;
        NetworkAttachmentDefinition::from_json(&body).map_err(|e| ApiError::Decode(e.to_string()))
    }

    fn patch_network_status(
        &self,
        namespace: &str,
        name: &str,
        uid: &str,
        status_json: &str,
    ) -> Result<(), ApiError> {
        let body = network_status_patch(uid, status_json).to_string();
        let path = format!("{}/status", pod_path(namespace, name));
        self.request(
            "PATCH",
            &path,
            Some("application/merge-patch+json"),
            Some(&body),
        )?;
        Ok(())
    }

    fn create_event(&self, pod: &PodRef, event: &Event) -> Result<(), ApiError> {
        let body = event
            .to_core_v1(pod, &self.component, SystemTime::now())
            .to_string();
        let path = format!("/api/v1/namespaces/{}/events", segment(&pod.namespace));
        self.request("POST", &path, Some("application/json"), Some(&body))?;
        Ok(())
    }

    /// The events side by side ([`side_by_side`]): an ADD's events cost one
    /// round trip, not one per network.
    fn create_events(&self, pod: &PodRef, events: &[Event]) -> Vec<Result<(), ApiError>> {
        side_by_side(events, |e| self.create_event(pod, e))
    }
}

/// Runs `call` on every item at once, the first on this thread and one
/// scoped thread for each other (over HTTP/2 each request is a stream on
/// the one connection, over HTTP/1.1 each takes a pooled connection), so
/// N requests cost one round trip. Results in the items' order.
pub fn side_by_side<T: Sync, R: Send>(
    items: &[T],
    call: impl Fn(&T) -> Result<R, ApiError> + Sync,
) -> Vec<Result<R, ApiError>> {
    let Some((first, rest)) = items.split_first() else {
        return Vec::new();
    };
    let call = &call;
    std::thread::scope(|s| {
        let others: Vec<_> = rest.iter().map(|i| s.spawn(move || call(i))).collect();
        let mut out = vec![call(first)];
        out.extend(others.into_iter().map(|h| {
            h.join()
                .unwrap_or_else(|_| Err(ApiError::Transport("request thread panicked".into())))
        }));
        out
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_escape_hostile_segments() {
        assert_eq!(
            pod_path("default", "p-1.x"),
            "/api/v1/namespaces/default/pods/p-1.x"
        );
        assert_eq!(
            pod_path("default", "../x?y"),
            "/api/v1/namespaces/default/pods/..%2Fx%3Fy"
        );
        assert_eq!(
            pod_path("..", ".."),
            "/api/v1/namespaces/%2E%2E/pods/%2E%2E"
        );
        assert_eq!(
            pod_path("default", "."),
            "/api/v1/namespaces/default/pods/%2E"
        );
        assert_eq!(
            nad_path("kube-system", "sriov"),
            "/apis/k8s.cni.cncf.io/v1/namespaces/kube-system/network-attachment-definitions/sriov"
        );
    }
}
