//! The Core Services calls the operator makes, behind the [`Compute`] seam,
//! and [`OciClient`], their signed HTTP implementation.
//!
//! Every call goes through one client-side rate limiter (as the OCI cloud
//! controller manager gates its calls), retries 429, 5xx and transport
//! errors with exponential backoff (honouring `Retry-After`), renews
//! credentials once on 401, and follows `opc-next-page`. Mutating calls carry
//! the caller's `opc-retry-token`, so a retry after a lost response (or
//! after an operator restart) cannot create a second VNIC. A local clock
//! more than 4 minutes off the server's `Date` fails fast with
//! [`OciError::ClockSkew`] instead of the service's opaque 401 at 5 minutes.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde::de::DeserializeOwned;

use crate::auth::{AuthError, CredentialSource};
use crate::http::{self, signed_call, HttpResponse};
use crate::model::{
    AttachVnicDetails, ErrorBody, Instance, NetworkType, UpdateInstanceDetails,
    UpdateLaunchOptions, Vnic, VnicAttachment, API_PREFIX,
};
use crate::sign::{clock_skew, Scope};

/// Skew at which the client refuses to send (the service's limit is 5 min).
pub const SKEW_LIMIT: Duration = Duration::from_secs(240);

/// Why an OCI call failed.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum OciError {
    /// The service answered with an error body.
    #[error("{code} (HTTP {status}, opc-request-id {request_id}): {message}")]
    Service {
        status: u16,
        code: String,
        message: String,
        request_id: String,
    },
    #[error("transport: {0}")]
    Transport(String),
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error("local clock is {skew_secs} s off the OCI server clock; fix time sync (OCI rejects more than 300 s)")]
    ClockSkew { skew_secs: u64 },
    #[error("unexpected response body: {0}")]
    Decode(String),
}

impl OciError {
    /// The OCI error code (`NotAuthorizedOrNotFound`, `TooManyRequests`, …)
    /// or a Plexus code for local failures, for status and events.
    pub fn code(&self) -> &str {
        match self {
            Self::Service { code, .. } => code,
            Self::Transport(_) => "Transport",
            Self::Auth(_) => "Credentials",
            Self::ClockSkew { .. } => "ClockSkew",
            Self::Decode(_) => "Decode",
        }
    }

    /// HTTP status, when the service answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Service { status, .. } => Some(*status),
            _ => None,
        }
    }

    fn retryable(&self) -> bool {
        match self {
            Self::Service { status, .. } => *status == 429 || *status >= 500,
            Self::Transport(_) => true,
            _ => false,
        }
    }
}

/// The Core Services operations the operator needs.
pub trait Compute: Send + Sync {
    fn get_instance(&self, instance_id: &str) -> Result<Instance, OciError>;
    fn list_vnic_attachments(
        &self,
        compartment_id: &str,
        instance_id: &str,
    ) -> Result<Vec<VnicAttachment>, OciError>;
    fn attach_vnic(
        &self,
        details: &AttachVnicDetails,
        retry_token: &str,
    ) -> Result<VnicAttachment, OciError>;
    fn get_vnic_attachment(&self, id: &str) -> Result<VnicAttachment, OciError>;
    fn detach_vnic(&self, attachment_id: &str) -> Result<(), OciError>;
    fn get_vnic(&self, vnic_id: &str) -> Result<Vnic, OciError>;
    fn set_network_type(
        &self,
        instance_id: &str,
        network_type: NetworkType,
        retry_token: &str,
    ) -> Result<Instance, OciError>;
}

/// Retry and rate-limit settings.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// Attempts per call, including the first.
    pub max_attempts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// Minimum spacing between requests (client-side rate limit).
    pub min_interval: Duration,
    /// Page size for list calls.
    pub page_limit: u32,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            max_attempts: 6,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            min_interval: Duration::from_millis(100),
            page_limit: 50,
        }
    }
}

/// Signed HTTP implementation of [`Compute`].
#[derive(Debug)]
pub struct OciClient {
    base: String,
    credentials: Arc<dyn CredentialSource>,
    agent: ureq::Agent,
    policy: Policy,
    next_slot: Mutex<Instant>,
    skew: Mutex<Duration>,
}

impl OciClient {
    /// `base` is the Core Services endpoint, e.g.
    /// `https://iaas.us-phoenix-1.oraclecloud.com` (no path).
    pub fn new(base: &str, credentials: Arc<dyn CredentialSource>, policy: Policy) -> Self {
        Self {
            base: base.trim_end_matches('/').to_owned(),
            credentials,
            agent: http::agent(Duration::from_secs(30)),
            policy,
            next_slot: Mutex::new(Instant::now()),
            skew: Mutex::new(Duration::ZERO),
        }
    }

    /// The standard endpoint for `region` in the commercial realm.
    pub fn endpoint_for(region: &str) -> String {
        format!("https://iaas.{region}.oraclecloud.com")
    }

    fn pace(&self) {
        let wait = {
            let mut next = self.next_slot.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            let start = (*next).max(now);
            *next = start + self.policy.min_interval;
            start - now
        };
        if !wait.is_zero() {
            std::thread::sleep(wait);
        }
    }

    /// One attempt; an error comes with the server's `Retry-After`, if any.
    fn once(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
        extra: &[(&str, &str)],
    ) -> Result<HttpResponse, (OciError, Option<Duration>)> {
        let skew = *self.skew.lock().unwrap_or_else(|p| p.into_inner());
        if skew > SKEW_LIMIT {
            let err = OciError::ClockSkew {
                skew_secs: skew.as_secs(),
            };
            return Err((err, None));
        }
        self.pace();
        let creds = self
            .credentials
            .credentials()
            .map_err(|e| (OciError::Auth(e), None))?;
        let url = format!("{}{API_PREFIX}{path}", self.base);
        let resp = signed_call(&self.agent, method, &url, body, extra, &creds, Scope::Api)
            .map_err(|e| (OciError::Transport(e.to_string()), None))?;
        if let Some(date) = &resp.date {
            if let Ok(s) = clock_skew(SystemTime::now(), date) {
                *self.skew.lock().unwrap_or_else(|p| p.into_inner()) = s;
                if s > SKEW_LIMIT && (resp.status == 401 || resp.status >= 300) {
                    let err = OciError::ClockSkew {
                        skew_secs: s.as_secs(),
                    };
                    return Err((err, None));
                }
            }
        }
        if (200..300).contains(&resp.status) {
            return Ok(resp);
        }
        let err: ErrorBody = serde_json::from_slice(&resp.body).unwrap_or(ErrorBody {
            code: status_code_name(resp.status).into(),
            message: String::from_utf8_lossy(&resp.body)
                .chars()
                .take(200)
                .collect(),
        });
        let service = OciError::Service {
            status: resp.status,
            code: err.code,
            message: err.message,
            request_id: resp.request_id.unwrap_or_default(),
        };
        Err((service, resp.retry_after))
    }

    /// One logical call with retries.
    fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
        extra: &[(&str, &str)],
    ) -> Result<HttpResponse, OciError> {
        let mut backoff = self.policy.initial_backoff;
        let mut renewed = false;
        let mut attempt = 1;
        loop {
            let (err, retry_after) = match self.once(method, path, body, extra) {
                Ok(r) => return Ok(r),
                Err(e) => e,
            };
            if err.status() == Some(401) && !renewed {
                // An expired or rotated session: renew once.
                self.credentials.invalidate();
                renewed = true;
                continue;
            }
            if !err.retryable() || attempt >= self.policy.max_attempts {
                return Err(err);
            }
            let wait = retry_after
                .unwrap_or(backoff)
                .max(backoff)
                .min(self.policy.max_backoff);
            tracing::debug!(%method, %path, attempt, code = err.code(), ?wait, "retrying OCI call");
            std::thread::sleep(wait);
            backoff = (backoff * 2).min(self.policy.max_backoff);
            attempt += 1;
        }
    }

    fn json<T: DeserializeOwned>(resp: &HttpResponse) -> Result<T, OciError> {
        serde_json::from_slice(&resp.body).map_err(|e| OciError::Decode(e.to_string()))
    }
}

/// The code OCI uses for a status when the body is not JSON.
fn status_code_name(status: u16) -> &'static str {
    match status {
        400 => "InvalidParameter",
        401 => "NotAuthenticated",
        404 => "NotAuthorizedOrNotFound",
        409 => "Conflict",
        429 => "TooManyRequests",
        503 => "ServiceUnavailable",
        s if s >= 500 => "InternalServerError",
        _ => "Unknown",
    }
}

/// Percent-encodes a query value (OCIDs are safe, page tokens may not be).
fn query_value(v: &str) -> String {
    v.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

impl Compute for OciClient {
    fn get_instance(&self, instance_id: &str) -> Result<Instance, OciError> {
        Self::json(&self.call("GET", &format!("/instances/{instance_id}"), None, &[])?)
    }

    fn list_vnic_attachments(
        &self,
        compartment_id: &str,
        instance_id: &str,
    ) -> Result<Vec<VnicAttachment>, OciError> {
        let mut out = Vec::new();
        let mut page: Option<String> = None;
        loop {
            let mut path = format!(
                "/vnicAttachments?compartmentId={}&instanceId={}&limit={}",
                query_value(compartment_id),
                query_value(instance_id),
                self.policy.page_limit
            );
            if let Some(p) = &page {
                path.push_str(&format!("&page={}", query_value(p)));
            }
            let resp = self.call("GET", &path, None, &[])?;
            out.extend(Self::json::<Vec<VnicAttachment>>(&resp)?);
            match resp.next_page {
                Some(next) if !next.is_empty() => page = Some(next),
                _ => return Ok(out),
            }
        }
    }

    fn attach_vnic(
        &self,
        details: &AttachVnicDetails,
        retry_token: &str,
    ) -> Result<VnicAttachment, OciError> {
        let body = serde_json::to_vec(details).map_err(|e| OciError::Decode(e.to_string()))?;
        let extra = [("opc-retry-token", retry_token)];
        Self::json(&self.call("POST", "/vnicAttachments", Some(&body), &extra)?)
    }

    fn get_vnic_attachment(&self, id: &str) -> Result<VnicAttachment, OciError> {
        Self::json(&self.call("GET", &format!("/vnicAttachments/{id}"), None, &[])?)
    }

    fn detach_vnic(&self, attachment_id: &str) -> Result<(), OciError> {
        let path = format!("/vnicAttachments/{attachment_id}");
        self.call("DELETE", &path, None, &[]).map(|_| ())
    }

    fn get_vnic(&self, vnic_id: &str) -> Result<Vnic, OciError> {
        Self::json(&self.call("GET", &format!("/vnics/{vnic_id}"), None, &[])?)
    }

    fn set_network_type(
        &self,
        instance_id: &str,
        network_type: NetworkType,
        retry_token: &str,
    ) -> Result<Instance, OciError> {
        let details = UpdateInstanceDetails {
            launch_options: UpdateLaunchOptions { network_type },
        };
        let body = serde_json::to_vec(&details).map_err(|e| OciError::Decode(e.to_string()))?;
        let extra = [("opc-retry-token", retry_token)];
        let path = format!("/instances/{instance_id}");
        Self::json(&self.call("PUT", &path, Some(&body), &extra)?)
    }
}
