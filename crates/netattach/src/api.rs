//! The pod API seam: the four calls the meta plugin makes to Kubernetes, the
//! minimal typed views it needs, and errors typed by what a caller does next
//! (give up, retry, treat as gone).

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use plexus_cni::timefmt::{rfc3339, rfc3339_micro};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::nad::NetworkAttachmentDefinition;
use crate::{CONFIG_SOURCE_ANNOTATION, NETWORKS_ANNOTATION};

/// The subset of `metav1.ObjectMeta` Plexus reads.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectMeta {
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub uid: String,
    #[serde(
        rename = "resourceVersion",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub resource_version: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// A pod as far as networking cares: metadata typed, everything else kept raw
/// (`raw`) so callers can read fields this view does not model (e.g.
/// `status.resourceClaimStatuses`).
#[derive(Debug, Clone, PartialEq)]
pub struct Pod {
    pub metadata: ObjectMeta,
    pub raw: Value,
}

impl Pod {
    /// Parses a pod from API JSON.
    pub fn from_json(body: &[u8]) -> Result<Self, ApiError> {
        let raw: Value =
            serde_json::from_slice(body).map_err(|e| ApiError::Decode(format!("pod: {e}")))?;
        Self::from_value(raw)
    }

    /// Builds the typed view over an already parsed pod object.
    pub fn from_value(raw: Value) -> Result<Self, ApiError> {
        let metadata = match raw.get("metadata") {
            Some(m) => serde_json::from_value(m.clone())
                .map_err(|e| ApiError::Decode(format!("pod metadata: {e}")))?,
            None => return Err(ApiError::Decode("pod without metadata".into())),
        };
        Ok(Self { metadata, raw })
    }

    pub fn name(&self) -> &str {
        &self.metadata.name
    }

    pub fn namespace(&self) -> &str {
        &self.metadata.namespace
    }

    pub fn uid(&self) -> &str {
        &self.metadata.uid
    }

    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.metadata.annotations.get(key).map(String::as_str)
    }

    /// The raw `k8s.v1.cni.cncf.io/networks` annotation, if set and non-empty.
    pub fn networks_annotation(&self) -> Option<&str> {
        self.annotation(NETWORKS_ANNOTATION)
            .filter(|s| !s.is_empty())
    }

    /// Static (mirror) pods get a different UID from the kubelet than the API
    /// shows, so a UID mismatch must be tolerated for them (as Multus does).
    pub fn is_static(&self) -> bool {
        self.annotation(CONFIG_SOURCE_ANNOTATION)
            .is_some_and(|s| s != "api")
    }

    /// A reference to this pod for events.
    pub fn to_ref(&self) -> PodRef {
        PodRef {
            namespace: self.metadata.namespace.clone(),
            name: self.metadata.name.clone(),
            uid: self.metadata.uid.clone(),
        }
    }
}

/// Identifies the pod an event is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodRef {
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

/// `Normal` or `Warning`, the two core/v1 event types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Normal,
    Warning,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Normal => "Normal",
            Self::Warning => "Warning",
        }
    }
}

/// A pod event as `kubectl describe pod` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub type_: EventType,
    pub reason: String,
    pub message: String,
}

impl Event {
    /// Multus's `AddedInterface` event: `Add net1 [198.51.100.5/24] from default/sriov-net`.
    pub fn added_interface(ifname: &str, ips_with_prefix: &[String], network: &str) -> Self {
        Self {
            type_: EventType::Normal,
            reason: "AddedInterface".into(),
            message: format!(
                "Add {ifname} [{}] from {network}",
                ips_with_prefix.join(" ")
            ),
        }
    }

    /// Multus's `NoNetworkFound` warning for a missing NAD.
    pub fn no_network_found(message: impl Into<String>) -> Self {
        Self {
            type_: EventType::Warning,
            reason: "NoNetworkFound".into(),
            message: message.into(),
        }
    }

    /// The core/v1 `Event` object to POST, shaped like client-go's recorder
    /// output (`<pod>.<hex nanos>` name, `count` 1, first = last timestamp).
    pub fn to_core_v1(&self, pod: &PodRef, component: &str, now: SystemTime) -> Value {
        let since = now.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
        let stamp = rfc3339(since.as_secs());
        json!({
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "name": format!("{}.{:x}", pod.name, since.as_nanos()),
                "namespace": pod.namespace,
            },
            "involvedObject": {
                "kind": "Pod",
                "namespace": pod.namespace,
                "name": pod.name,
                "uid": pod.uid,
                "apiVersion": "v1",
            },
            "reason": self.reason,
            "message": self.message,
            "source": { "component": component },
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "eventTime": Value::Null,
            "count": 1,
            "type": self.type_.as_str(),
            "reportingComponent": component,
            "reportingInstance": "",
        })
    }
}

/// Errors from the pod API, grouped by what the caller should do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// 404: the pod or NAD does not exist (a deleted pod on DEL is normal).
    #[error("not found: {message}")]
    NotFound { message: String },
    /// 401: missing, wrong or expired credentials.
    #[error("unauthorized: {message}")]
    Unauthorized { message: String },
    /// 403: RBAC denies the verb.
    #[error("forbidden: {message}")]
    Forbidden { message: String },
    /// 409: precondition (UID, resourceVersion) failed or object exists.
    #[error("conflict: {message}")]
    Conflict { message: String },
    /// 429 and 5xx: the server asks us to come back; retried within the budget.
    #[error("server busy ({code} {reason}): {message}")]
    Retryable {
        code: u16,
        reason: String,
        message: String,
        retry_after: Option<Duration>,
    },
    /// Any other HTTP error status.
    #[error("HTTP {code} {reason}: {message}")]
    Status {
        code: u16,
        reason: String,
        message: String,
    },
    /// Connection refused/reset, DNS, TLS handshake.
    #[error("transport error: {0}")]
    Transport(String),
    /// No response within the per-request timeout.
    #[error("request timed out: {0}")]
    Timeout(String),
    /// A 2xx body that is not what the API promises.
    #[error("cannot decode response: {0}")]
    Decode(String),
    /// Bad kubeconfig, unreadable token file or CA.
    #[error("client configuration: {0}")]
    Config(String),
}

impl ApiError {
    /// Maps an HTTP error status and its body (ideally a `metav1.Status`) to an
    /// error, carrying the Status `message` and `reason` when present.
    pub fn from_status(code: u16, body: &[u8], retry_after: Option<Duration>) -> Self {
        let status: Option<Value> = serde_json::from_slice(body).ok();
        let field = |k: &str| {
            status
                .as_ref()
                .and_then(|v| v.get(k))
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        let message = field("message").unwrap_or_else(|| {
            let text = String::from_utf8_lossy(body).trim().to_owned();
            if text.is_empty() {
                format!("HTTP status {code}")
            } else {
                text
            }
        });
        let reason = field("reason").unwrap_or_default();
        match code {
            401 => Self::Unauthorized { message },
            403 => Self::Forbidden { message },
            404 => Self::NotFound { message },
            409 => Self::Conflict { message },
            429 | 500..=599 => Self::Retryable {
                code,
                reason,
                message,
                retry_after,
            },
            _ => Self::Status {
                code,
                reason,
                message,
            },
        }
    }

    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::NotFound { .. })
    }

    /// Worth another attempt: server overload/5xx, transport hiccups, timeouts.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::Retryable { .. } | Self::Transport(_) | Self::Timeout(_)
        )
    }
}

/// The Kubernetes calls the meta plugin makes. Synchronous: a CNI call is one
/// short-lived process, and the only requests worth overlapping (the writes
/// at the end of ADD) overlap on plain threads, so implementations are
/// `Sync`.
pub trait PodApi: Sync {
    /// GET `/api/v1/namespaces/{ns}/pods/{name}`.
    fn get_pod(&self, namespace: &str, name: &str) -> Result<Pod, ApiError>;

    /// GET `/apis/k8s.cni.cncf.io/v1/namespaces/{ns}/network-attachment-definitions/{name}`.
    fn get_nad(&self, namespace: &str, name: &str)
        -> Result<NetworkAttachmentDefinition, ApiError>;

    /// Sets the network-status annotation with a merge patch on `pods/status`,
    /// with `metadata.uid` as a precondition so a recreated pod of the same
    /// name is never annotated with a stale status (the real server answers
    /// 422 Invalid, `metadata.uid: … field is immutable`, an
    /// [`ApiError::Status`]).
    fn patch_network_status(
        &self,
        namespace: &str,
        name: &str,
        uid: &str,
        status_json: &str,
    ) -> Result<(), ApiError>;

    /// POSTs a core/v1 event about the pod.
    fn create_event(&self, pod: &PodRef, event: &Event) -> Result<(), ApiError>;

    /// POSTs several events, one result each in order. One after another
    /// here; the HTTP client sends them concurrently.
    fn create_events(&self, pod: &PodRef, events: &[Event]) -> Vec<Result<(), ApiError>> {
        events.iter().map(|e| self.create_event(pod, e)).collect()
    }
}

/// The merge-patch body [`PodApi::patch_network_status`] sends.
pub fn network_status_patch(uid: &str, status_json: &str) -> Value {
    json!({
        "metadata": {
            "uid": uid,
            "annotations": { crate::NETWORK_STATUS_ANNOTATION: status_json },
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_body_becomes_typed_error_with_message() {
        let body = br#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"pods \"x\" not found","reason":"NotFound","details":{"name":"x","kind":"pods"},"code":404}"#;
        let err = ApiError::from_status(404, body, None);
        assert_eq!(
            err,
            ApiError::NotFound {
                message: "pods \"x\" not found".into()
            }
        );
        assert!(err.is_not_found() && !err.is_retryable());
        let err = ApiError::from_status(
            429,
            b"{\"message\":\"slow down\",\"reason\":\"TooManyRequests\"}",
            Some(Duration::from_secs(1)),
        );
        assert!(err.is_retryable());
        assert!(err.to_string().contains("slow down"), "{err}");
        assert!(matches!(
            ApiError::from_status(503, b"", None),
            ApiError::Retryable { code: 503, .. }
        ));
        assert!(
            matches!(ApiError::from_status(401, b"Unauthorized", None), ApiError::Unauthorized { message } if message == "Unauthorized")
        );
        assert!(matches!(
            ApiError::from_status(403, b"{}", None),
            ApiError::Forbidden { .. }
        ));
        assert!(matches!(
            ApiError::from_status(409, b"{}", None),
            ApiError::Conflict { .. }
        ));
        assert!(matches!(
            ApiError::from_status(422, b"{}", None),
            ApiError::Status { code: 422, .. }
        ));
    }

    #[test]
    fn pod_view_keeps_raw_and_detects_static_pods() {
        let pod = Pod::from_json(br#"{"metadata":{"name":"p","namespace":"default","uid":"u1","annotations":{"kubernetes.io/config.source":"file","k8s.v1.cni.cncf.io/networks":"a"}},"spec":{"nodeName":"n1"}}"#).unwrap();
        assert_eq!(pod.uid(), "u1");
        assert!(pod.is_static());
        assert_eq!(pod.networks_annotation(), Some("a"));
        assert_eq!(pod.raw["spec"]["nodeName"], "n1");
        assert!(Pod::from_json(b"{}").is_err());
    }

    #[test]
    fn added_interface_event_matches_multus_wording() {
        let ev = Event::added_interface("net1", &["198.51.100.5/24".into()], "default/sriov-net");
        assert_eq!(
            ev.message,
            "Add net1 [198.51.100.5/24] from default/sriov-net"
        );
        let pod = PodRef {
            namespace: "default".into(),
            name: "p".into(),
            uid: "u1".into(),
        };
        let body = ev.to_core_v1(
            &pod,
            "plexus",
            UNIX_EPOCH + Duration::from_secs(1_764_153_600),
        );
        assert_eq!(body["involvedObject"]["uid"], "u1");
        assert_eq!(body["type"], "Normal");
        assert_eq!(body["reason"], "AddedInterface");
        assert_eq!(body["firstTimestamp"], "2025-11-26T10:40:00Z");
        assert!(body["metadata"]["name"].as_str().unwrap().starts_with("p."));
    }

    #[test]
    fn civil_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(
            rfc3339_micro(Duration::new(1, 5_000)),
            "1970-01-01T00:00:01.000005Z"
        );
    }
}
