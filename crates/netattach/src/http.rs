//! [`PodApi`] over HTTP(S) with `ureq` (blocking: a CNI call is one short
//! process). One agent per [`HttpPodApi`] so requests reuse a keep-alive
//! connection; the agent (and for `https` its rustls config) is built on the
//! first request, so a plugin that never needs the API pays nothing.
//!
//! Unlike Multus's fixed 250 ms per GET, the per-request timeout and the
//! retry budget are configurable, with exponential backoff and `Retry-After`
//! honoured for 429/5xx, transport errors and timeouts.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::DigitallySignedStruct;

use plexus_cni::retry::{exponential, retry, Limits, ThreadSleeper};

use crate::api::{network_status_patch, ApiError, Event, Pod, PodApi, PodRef};
use crate::kubeconfig::ClientConfig;
use crate::nad::NetworkAttachmentDefinition;

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
        let agent = self.agent()?;
        let url = format!("{}{path}", self.config.server);
        let mut req = agent
            .request(method, &url)
            .set("Accept", "application/json")
            .set("User-Agent", concat!("plexus/", env!("CARGO_PKG_VERSION")));
        // Read the token file now: a rotated token must be picked up.
        if let Some(token) = self
            .config
            .bearer_token()
            .map_err(|e| ApiError::Config(e.to_string()))?
        {
            req = req.set("Authorization", &format!("Bearer {token}"));
        }
        if let Some(ct) = content_type {
            req = req.set("Content-Type", ct);
        }
        let result = match body {
            Some(b) => req.send_string(b),
            None => req.call(),
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

fn build_agent(config: &ClientConfig, timeout: Duration) -> Result<ureq::Agent, ApiError> {
    let mut builder = ureq::AgentBuilder::new()
        .timeout(timeout)
        .no_delay(true)
        .redirects(0)
        .max_idle_connections_per_host(4);
    if config.is_https() {
        if config.tls_server_name.is_some() {
            tracing::warn!(
                "kubeconfig tls-server-name is not supported; verifying the server URL host"
            );
        }
        if let Some(tls) = tls_config(config)? {
            builder = builder.tls_config(tls);
        }
    }
    Ok(builder.build())
}

/// The rustls config for an `https` server, or `None` to use ureq's default
/// (web PKI roots, no client certificate).
fn tls_config(config: &ClientConfig) -> Result<Option<Arc<rustls::ClientConfig>>, ApiError> {
    let cfg_err = |what: &str, e: &dyn std::fmt::Display| ApiError::Config(format!("{what}: {e}"));
    if config.ca_pem.is_none() && config.identity.is_none() && !config.insecure_skip_tls_verify {
        return Ok(None);
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| cfg_err("TLS versions", &e))?;
    let builder = if config.insecure_skip_tls_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
    } else {
        let pem = config.ca_pem.as_deref().ok_or_else(|| {
            ApiError::Config("a client certificate needs certificate-authority(-data)".into())
        })?;
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_pemfile::certs(&mut &pem[..]) {
            let cert = cert.map_err(|e| cfg_err("certificate-authority", &e))?;
            roots
                .add(cert)
                .map_err(|e| cfg_err("certificate-authority", &e))?;
        }
        if roots.is_empty() {
            return Err(ApiError::Config(
                "certificate-authority holds no PEM certificate".into(),
            ));
        }
        builder.with_root_certificates(roots)
    };
    let tls = match &config.identity {
        Some(id) => {
            let certs = rustls_pemfile::certs(&mut &id.cert_pem[..])
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| cfg_err("client-certificate", &e))?;
            let key = rustls_pemfile::private_key(&mut &id.key_pem[..])
                .map_err(|e| cfg_err("client-key", &e))?
                .ok_or_else(|| ApiError::Config("client-key holds no PEM private key".into()))?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| cfg_err("client certificate", &e))?
        }
        None => builder.with_no_client_auth(),
    };
    Ok(Some(Arc::new(tls)))
}

/// `insecure-skip-tls-verify`: accept any server certificate but still check
/// handshake signatures (so the session keys are the server's).
#[derive(Debug)]
struct NoVerify(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Percent-encodes one path segment so a hostile pod name from `CNI_ARGS`
/// cannot change the request path.
fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
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
            nad_path("kube-system", "sriov"),
            "/apis/k8s.cni.cncf.io/v1/namespaces/kube-system/network-attachment-definitions/sriov"
        );
    }

    #[test]
    fn tls_config_only_when_needed() {
        let mut cfg = ClientConfig {
            server: "https://198.51.100.1:6443".into(),
            ca_pem: None,
            insecure_skip_tls_verify: false,
            tls_server_name: None,
            token: None,
            identity: None,
            namespace: None,
        };
        assert!(tls_config(&cfg).unwrap().is_none());
        cfg.insecure_skip_tls_verify = true;
        assert!(tls_config(&cfg).unwrap().is_some());
        cfg.insecure_skip_tls_verify = false;
        cfg.ca_pem = Some(b"not pem".to_vec());
        assert!(matches!(tls_config(&cfg), Err(ApiError::Config(m)) if m.contains("no PEM")));
    }
}
