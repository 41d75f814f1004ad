//! The Kubernetes calls the operator makes, behind the [`Kube`] seam, and
//! [`HttpKube`], a small blocking JSON client sharing the meta plugin's
//! kubeconfig loading, TLS setup and error mapping (`plexus-netattach`).
//!
//! Why not `kube` + `k8s-openapi`: the operator needs eleven plain calls and
//! no watch; the workspace already owns a tested client stack (ureq +
//! rustls), and the two crates would add minutes of build on our 2-core CI
//! for no behaviour we use. Lists are re-read each reconcile (level-driven).

use std::time::Duration;

use plexus_netattach::{ApiError, ClientConfig};
use serde_json::{json, Value};

use crate::crd::{PoolStatus, VnicPool, POOLS_PATH};

/// A node as the operator sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub name: String,
    pub labels: std::collections::BTreeMap<String, String>,
    pub annotations: std::collections::BTreeMap<String, String>,
    /// `spec.providerID` (`oci://ocid1.instance…` or a bare OCID).
    pub provider_id: String,
    pub unschedulable: bool,
    /// The `Ready` condition is `True`.
    pub ready: bool,
    /// `status.allocatable`, raw quantities.
    pub allocatable: std::collections::BTreeMap<String, String>,
}

impl Node {
    /// The instance OCID from `spec.providerID`.
    pub fn instance_id(&self) -> Option<&str> {
        let id = self
            .provider_id
            .strip_prefix("oci://")
            .unwrap_or(&self.provider_id);
        id.starts_with("ocid1.instance.").then_some(id)
    }

    /// `allocatable[resource]` as a count (extended resources are integers).
    pub fn allocatable_count(&self, resource: &str) -> u32 {
        self.allocatable
            .get(resource)
            .and_then(|q| q.parse().ok())
            .unwrap_or(0)
    }

    /// Reads the fields the operator needs from a Node object.
    pub fn from_json(v: &Value) -> Self {
        let map = |v: &Value| {
            v.as_object()
                .map(|o| {
                    o.iter()
                        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                        .collect()
                })
                .unwrap_or_default()
        };
        let ready = v["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Ready" && c["status"] == "True");
        Self {
            name: v["metadata"]["name"].as_str().unwrap_or("").to_owned(),
            labels: map(&v["metadata"]["labels"]),
            annotations: map(&v["metadata"]["annotations"]),
            provider_id: v["spec"]["providerID"].as_str().unwrap_or("").to_owned(),
            unschedulable: v["spec"]["unschedulable"].as_bool().unwrap_or(false),
            ready,
            allocatable: map(&v["status"]["allocatable"]),
        }
    }
}

/// A pod to evict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodRef {
    pub namespace: String,
    pub name: String,
}

/// An event about a pool (core/v1, namespace `default` for a
/// cluster-scoped object).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolEvent {
    pub warning: bool,
    pub reason: String,
    pub message: String,
}

/// The calls the operator makes.
pub trait Kube: Send + Sync {
    fn list_pools(&self) -> Result<Vec<VnicPool>, ApiError>;
    fn patch_pool_status(&self, name: &str, status: &PoolStatus) -> Result<(), ApiError>;
    fn list_nodes(&self) -> Result<Vec<Node>, ApiError>;
    /// Merge-patches `metadata.annotations` (null deletes) and, when set,
    /// `spec.unschedulable`.
    fn patch_node(
        &self,
        name: &str,
        annotations: &[(&str, Option<&str>)],
        unschedulable: Option<bool>,
    ) -> Result<(), ApiError>;
    /// Pods bound to `node` that a drain must evict (not DaemonSet or
    /// mirror pods).
    fn pods_to_evict(&self, node: &str) -> Result<Vec<PodRef>, ApiError>;
    fn evict(&self, pod: &PodRef) -> Result<(), ApiError>;
    fn pool_event(&self, pool: &VnicPool, event: &PoolEvent) -> Result<(), ApiError>;
    /// GET/POST/PUT of a Lease (for [`crate::leader`]).
    fn get_lease(&self, ns: &str, name: &str) -> Result<Option<Value>, ApiError>;
    fn write_lease(&self, ns: &str, lease: &Value, create: bool) -> Result<(), ApiError>;
}

/// [`Kube`] over HTTP(S).
pub struct HttpKube {
    config: ClientConfig,
    agent: ureq::Agent,
    component: String,
}

impl std::fmt::Debug for HttpKube {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpKube")
            .field("server", &self.config.server)
            .finish()
    }
}

impl HttpKube {
    pub fn new(config: ClientConfig, component: &str) -> Result<Self, ApiError> {
        let agent = plexus_netattach::http::agent_for(&config, Duration::from_secs(15))?;
        Ok(Self {
            config,
            agent,
            component: component.to_owned(),
        })
    }

    fn call(
        &self,
        method: &str,
        path: &str,
        ctype: &str,
        body: Option<&Value>,
    ) -> Result<Value, ApiError> {
        let url = format!("{}{path}", self.config.server);
        let mut req = self
            .agent
            .request(method, &url)
            .set("accept", "application/json")
            .set("user-agent", &self.component);
        if let Some(token) = self
            .config
            .bearer_token()
            .map_err(|e| ApiError::Config(e.to_string()))?
        {
            req = req.set("authorization", &format!("Bearer {token}"));
        }
        let res = match body {
            Some(b) => req.set("content-type", ctype).send_string(&b.to_string()),
            None => req.call(),
        };
        match res {
            Ok(resp) => {
                let text = resp
                    .into_string()
                    .map_err(|e| ApiError::Transport(e.to_string()))?;
                Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
            }
            Err(ureq::Error::Status(code, resp)) => {
                let retry = resp
                    .header("retry-after")
                    .and_then(|v| v.parse().ok())
                    .map(Duration::from_secs);
                let body = resp.into_string().unwrap_or_default();
                Err(ApiError::from_status(code, body.as_bytes(), retry))
            }
            Err(e) => Err(ApiError::Transport(e.to_string())),
        }
    }

    fn items(&self, path: &str) -> Result<Vec<Value>, ApiError> {
        let list = self.call("GET", path, "", None)?;
        Ok(list["items"].as_array().cloned().unwrap_or_default())
    }
}

const JSON: &str = "application/json";
const MERGE: &str = "application/merge-patch+json";

impl Kube for HttpKube {
    fn list_pools(&self) -> Result<Vec<VnicPool>, ApiError> {
        let mut out = Vec::new();
        for item in self.items(POOLS_PATH)? {
            match serde_json::from_value::<VnicPool>(item.clone()) {
                Ok(p) => out.push(p),
                Err(e) => {
                    tracing::warn!(name = %item["metadata"]["name"], error = %e, "skipping malformed VnicPool")
                }
            }
        }
        Ok(out)
    }

    fn patch_pool_status(&self, name: &str, status: &PoolStatus) -> Result<(), ApiError> {
        let body = json!({ "status": status });
        self.call(
            "PATCH",
            &format!("{POOLS_PATH}/{name}/status"),
            MERGE,
            Some(&body),
        )
        .map(|_| ())
    }

    fn list_nodes(&self) -> Result<Vec<Node>, ApiError> {
        Ok(self
            .items("/api/v1/nodes")?
            .iter()
            .map(Node::from_json)
            .collect())
    }

    fn patch_node(
        &self,
        name: &str,
        annotations: &[(&str, Option<&str>)],
        unschedulable: Option<bool>,
    ) -> Result<(), ApiError> {
        let ann: serde_json::Map<String, Value> = annotations
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.map_or(Value::Null, Value::from)))
            .collect();
        let mut body = json!({"metadata": {"annotations": ann}});
        if let Some(u) = unschedulable {
            body["spec"] = json!({ "unschedulable": u });
        }
        self.call(
            "PATCH",
            &format!("/api/v1/nodes/{name}"),
            MERGE,
            Some(&body),
        )
        .map(|_| ())
    }

    fn pods_to_evict(&self, node: &str) -> Result<Vec<PodRef>, ApiError> {
        let path = format!("/api/v1/pods?fieldSelector=spec.nodeName%3D{node}");
        let pods = self.items(&path)?;
        Ok(pods
            .iter()
            // The selector is applied again here: it is cheap and keeps the
            // drain correct against a server that ignores it.
            .filter(|p| p["spec"]["nodeName"] == node)
            .filter(|p| {
                let daemon = p["metadata"]["ownerReferences"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|o| o["kind"] == "DaemonSet");
                let mirror =
                    p["metadata"]["annotations"]["kubernetes.io/config.mirror"].is_string();
                !daemon && !mirror
            })
            .map(|p| PodRef {
                namespace: p["metadata"]["namespace"]
                    .as_str()
                    .unwrap_or("default")
                    .to_owned(),
                name: p["metadata"]["name"].as_str().unwrap_or("").to_owned(),
            })
            .collect())
    }

    fn evict(&self, pod: &PodRef) -> Result<(), ApiError> {
        let body = json!({
            "apiVersion": "policy/v1", "kind": "Eviction",
            "metadata": {"name": pod.name, "namespace": pod.namespace},
        });
        let path = format!(
            "/api/v1/namespaces/{}/pods/{}/eviction",
            pod.namespace, pod.name
        );
        self.call("POST", &path, JSON, Some(&body)).map(|_| ())
    }

    fn pool_event(&self, pool: &VnicPool, event: &PoolEvent) -> Result<(), ApiError> {
        let now = plexus_cni::timefmt::rfc3339(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs(),
        );
        let body = json!({
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"generateName": format!("{}.", pool.metadata.name), "namespace": "default"},
            "involvedObject": {"apiVersion": crate::crd::API_VERSION, "kind": "VnicPool",
                "name": pool.metadata.name, "uid": pool.metadata.uid},
            "reason": event.reason, "message": event.message,
            "type": if event.warning { "Warning" } else { "Normal" },
            "source": {"component": self.component},
            "reportingComponent": self.component,
            "firstTimestamp": now, "lastTimestamp": now, "count": 1,
        });
        self.call(
            "POST",
            "/api/v1/namespaces/default/events",
            JSON,
            Some(&body),
        )
        .map(|_| ())
    }

    fn get_lease(&self, ns: &str, name: &str) -> Result<Option<Value>, ApiError> {
        let path = format!("/apis/coordination.k8s.io/v1/namespaces/{ns}/leases/{name}");
        match self.call("GET", &path, "", None) {
            Ok(v) => Ok(Some(v)),
            Err(ApiError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn write_lease(&self, ns: &str, lease: &Value, create: bool) -> Result<(), ApiError> {
        let base = format!("/apis/coordination.k8s.io/v1/namespaces/{ns}/leases");
        if create {
            self.call("POST", &base, JSON, Some(lease)).map(|_| ())
        } else {
            let name = lease["metadata"]["name"].as_str().unwrap_or("");
            self.call("PUT", &format!("{base}/{name}"), JSON, Some(lease))
                .map(|_| ())
        }
    }
}
