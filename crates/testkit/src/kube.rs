//! A fake Kubernetes API server for the few resources Plexus touches: pods
//! (and `pods/status`, `pods/eviction`), core and `events.k8s.io` events,
//! `NetworkAttachmentDefinition`s, `apps/v1` DaemonSets (the agent asks for
//! its own on SIGTERM), nodes (and `nodes/status`), `coordination.k8s.io`
//! leases, and the operator's cluster-scoped `plexus.io/v1alpha1` `VnicPool`
//! CRD with its status subresource and `metadata.generation`, plus minimal
//! discovery and health paths.
//!
//! Fidelity first: real paths, verbs and Status bodies (`NotFound`,
//! `AlreadyExists`, `Conflict` with the optimistic-lock and UID-precondition
//! messages, `MethodNotAllowed`, `UnsupportedMediaType`, `Unauthorized`,
//! `Forbidden`, `Invalid`), resourceVersion bumped on every write, uid and
//! creationTimestamp set on create, the four PATCH content types. What is
//! simplified is listed in `docs/kubernetes-api.md` (strategic merge = JSON
//! merge for maps, apply = merge, no watch, no field selectors, one shared
//! resourceVersion counter as etcd has).
//!
//! Runs on its own thread with a current-thread runtime so blocking clients
//! can call it; stops on drop. Accepted sockets get `TCP_NODELAY` (without
//! it every small request stalls ~40 ms on delayed ACKs).

use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, Uri};
use axum::Router;
use serde_json::{json, Value};

use crate::serve::ServerThread;
use crate::tls::{serve_router, ConnLog, Connection, ServingCert};

use handle::handle;
pub use jsonpatch::{json_patch, merge_patch};
pub use latency::VerbLatency;
use resource::RESOURCES;
use state::{lock, new_uid, now_rfc3339, Injection, Latency, Matcher, Shared, State};

mod delete;
mod grace;
mod handle;
mod jsonpatch;
pub mod latency;
mod pb;
mod resource;
mod state;
mod status;
mod verbs;

/// The service-account user requests are attributed to in 403 messages.
pub const DEFAULT_USER: &str = "system:serviceaccount:kube-system:plexus";

/// One request as the fake saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    pub method: String,
    /// Path without the query string.
    pub path: String,
    pub query: Option<String>,
    pub content_type: Option<String>,
    pub body: String,
    pub authorization: Option<String>,
}

/// Options for [`FakeApiServer::start_with`].
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// When set, requests must carry `Authorization: Bearer <token>`.
    pub token: Option<String>,
    /// Objects to load before serving (pods, NADs, events; any API JSON).
    pub seed: Vec<Value>,
    /// Serve HTTPS with this certificate (ALPN `h2`, `http/1.1`), as
    /// kube-apiserver does; plain HTTP when `None`.
    pub tls: Option<ServingCert>,
}

/// A running fake API server; stops when dropped.
#[derive(Debug)]
pub struct FakeApiServer {
    addr: SocketAddr,
    https: bool,
    shared: Shared,
    connections: ConnLog,
    _server: ServerThread,
}

impl FakeApiServer {
    /// Serves on `127.0.0.1:<free port>` without authentication.
    pub fn start() -> std::io::Result<Self> {
        Self::start_with(Options::default())
    }

    /// Serves on `127.0.0.1:<free port>` with `options`.
    pub fn start_with(options: Options) -> std::io::Result<Self> {
        Self::start_on(TcpListener::bind("127.0.0.1:0")?, options)
    }

    /// Serves on an already bound `listener` (e.g. one bound inside a test
    /// node's network namespace) with `options`.
    pub fn start_on(listener: TcpListener, options: Options) -> std::io::Result<Self> {
        let addr = listener.local_addr()?;
        let tls = server_tls(&options)?;
        let https = tls.is_some();
        let shared = new_state(options).map_err(std::io::Error::other)?;
        let connections = ConnLog::default();
        let (app_state, log) = (shared.clone(), connections.clone());
        let server = ServerThread::spawn(format!("fake-kube-{addr}"), listener, move |l| {
            serve_shared(l, app_state, tls, log)
        })?;
        Ok(Self {
            addr,
            https,
            shared,
            connections,
            _server: server,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Base URL for a client (`http://127.0.0.1:PORT`, or `https://` when
    /// serving TLS).
    pub fn url(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// The connections accepted so far (TLS or not, the ALPN protocol):
    /// one per TLS handshake.
    pub fn connections(&self) -> Vec<Connection> {
        self.connections
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Requires (`Some`) or stops requiring (`None`) a bearer token.
    pub fn set_token(&self, token: Option<&str>) {
        lock(&self.shared).token = token.map(str::to_owned);
    }

    /// Answers the next `count` requests matching `method` (`*` = any) and
    /// `path_prefix` (segment prefix, `*` = any one segment) with `status`
    /// and the Status body the real server sends for it (429 carries
    /// `Retry-After: 1`). Checked after authentication, before routing.
    pub fn inject(&self, method: &str, path_prefix: &str, status: u16, count: usize) {
        lock(&self.shared).injections.push(Injection {
            matcher: Matcher::new(method, path_prefix),
            status,
            remaining: count,
        });
    }

    /// Delays the next `count` matching requests by `delay` before answering.
    pub fn inject_latency(&self, method: &str, path_prefix: &str, delay: Duration, count: usize) {
        lock(&self.shared).latencies.push(Latency {
            matcher: Matcher::new(method, path_prefix),
            delay,
            remaining: count,
        });
    }

    /// Answers every later request after its verb's delay (`None`: at once);
    /// injected latencies win for the requests they match.
    pub fn set_verb_latency(&self, latency: Option<VerbLatency>) {
        lock(&self.shared).verb_latency = latency;
    }

    /// Denies matching requests with 403 as RBAC would (until [`Self::clear_faults`]).
    pub fn forbid(&self, method: &str, path_prefix: &str) {
        lock(&self.shared)
            .forbidden
            .push(Matcher::new(method, path_prefix));
    }

    /// The user named in 403 messages (default [`DEFAULT_USER`]).
    pub fn set_user(&self, user: &str) {
        lock(&self.shared).user = user.to_owned();
    }

    /// Drops pending injections, latencies and forbid rules.
    pub fn clear_faults(&self) {
        let mut s = lock(&self.shared);
        s.injections.clear();
        s.latencies.clear();
        s.forbidden.clear();
    }

    /// Requests seen so far, oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.shared).requests.clone()
    }

    pub fn clear_requests(&self) {
        lock(&self.shared).requests.clear();
    }

    /// Stores a pod as if created through the API (uid, creationTimestamp and
    /// resourceVersion filled when missing) and returns it.
    pub fn put_pod(&self, pod: Value) -> Result<Value, String> {
        self.put_object(pod)
    }

    /// Stores a NAD with `spec.config` = `config`.
    pub fn put_nad(&self, namespace: &str, name: &str, config: &str) -> Result<Value, String> {
        self.put_object(json!({
            "apiVersion": "k8s.cni.cncf.io/v1",
            "kind": "NetworkAttachmentDefinition",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"config": config},
        }))
    }

    /// Stores any supported object (chosen by `apiVersion`/`kind`), replacing
    /// an existing one of the same name.
    pub fn put_object(&self, object: Value) -> Result<Value, String> {
        put_seed(&mut lock(&self.shared), object)
    }

    /// The stored object at an API path such as
    /// `/api/v1/namespaces/default/pods/p` (a `/status` suffix is ignored).
    pub fn get_object(&self, path: &str) -> Option<Value> {
        let key = path.trim_end_matches('/').trim_end_matches("/status");
        lock(&self.shared).objects.get(key).cloned()
    }

    /// The parsed `k8s.v1.cni.cncf.io/network-status` annotation of pod
    /// `namespace/name`, if the pod exists and carries one.
    pub fn network_status(&self, namespace: &str, name: &str) -> Option<Value> {
        let pod = self.get_object(&format!("/api/v1/namespaces/{namespace}/pods/{name}"))?;
        let text = pod["metadata"]["annotations"]["k8s.v1.cni.cncf.io/network-status"].as_str()?;
        serde_json::from_str(text).ok()
    }

    /// Removes the object at an API path; returns it if it existed.
    pub fn delete_object(&self, path: &str) -> Option<Value> {
        lock(&self.shared)
            .objects
            .remove(path.trim_end_matches('/'))
    }

    /// Stored objects under a path prefix (e.g. all events of a namespace).
    pub fn objects_under(&self, prefix: &str) -> Vec<Value> {
        lock(&self.shared)
            .objects
            .range(prefix.to_owned()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(_, v)| v.clone())
            .collect()
    }
}

/// Serves the fake on an already bound listener until the future is dropped
/// (used by the `fake-kube-apiserver` binary).
pub async fn serve(listener: tokio::net::TcpListener, options: Options) -> std::io::Result<()> {
    serve_with_latency(listener, options, None).await
}

/// [`serve`] with every answer delayed by its verb's `latency`.
pub async fn serve_with_latency(
    listener: tokio::net::TcpListener,
    options: Options,
    latency: Option<VerbLatency>,
) -> std::io::Result<()> {
    let tls = server_tls(&options)?;
    let shared = new_state(options).map_err(std::io::Error::other)?;
    lock(&shared).verb_latency = latency;
    serve_shared(listener, shared, tls, ConnLog::default()).await
}

fn server_tls(options: &Options) -> std::io::Result<Option<Arc<rustls::ServerConfig>>> {
    options
        .tls
        .as_ref()
        .map(ServingCert::server_config)
        .transpose()
        .map_err(std::io::Error::other)
}

async fn serve_shared(
    listener: tokio::net::TcpListener,
    shared: Shared,
    tls: Option<Arc<rustls::ServerConfig>>,
    log: ConnLog,
) -> std::io::Result<()> {
    let state = shared.clone();
    let handshake = move || {
        lock(&state)
            .verb_latency
            .map_or(Duration::ZERO, |l| l.tls_handshake)
    };
    let app = Router::new().fallback(move |m: Method, u: Uri, h: HeaderMap, b: Bytes| {
        handle(shared.clone(), m, u, h, b)
    });
    serve_router(listener, app, tls, log, handshake).await
}

fn new_state(options: Options) -> Result<Shared, String> {
    let mut state = State {
        token: options.token,
        user: DEFAULT_USER.to_owned(),
        ..State::default()
    };
    for object in options.seed {
        put_seed(&mut state, object)?;
    }
    Ok(Arc::new(Mutex::new(state)))
}

fn put_seed(state: &mut State, mut object: Value) -> Result<Value, String> {
    let api_version = object["apiVersion"].as_str().unwrap_or("v1").to_owned();
    let kind = object["kind"].as_str().unwrap_or("Pod").to_owned();
    let res = RESOURCES
        .iter()
        .find(|r| r.api_version() == api_version && r.kind == kind)
        .ok_or_else(|| format!("unsupported object {api_version} {kind}"))?;
    let name = object["metadata"]["name"]
        .as_str()
        .filter(|n| !n.is_empty())
        .ok_or("object without metadata.name")?
        .to_owned();
    let ns = if res.namespaced {
        object["metadata"]["namespace"]
            .as_str()
            .filter(|n| !n.is_empty())
            .unwrap_or("default")
            .to_owned()
    } else {
        String::new()
    };
    let obj = object
        .as_object_mut()
        .ok_or("object is not a JSON object")?;
    obj.insert("apiVersion".into(), api_version.into());
    obj.insert("kind".into(), kind.into());
    let meta = obj
        .entry("metadata")
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .ok_or("metadata is not an object")?;
    if res.namespaced {
        meta.insert("namespace".into(), ns.clone().into());
    }
    if res.generation {
        meta.entry("generation").or_insert_with(|| 1.into());
    }
    meta.entry("uid").or_insert_with(|| new_uid().into());
    meta.entry("creationTimestamp")
        .or_insert_with(|| now_rfc3339().into());
    state.resource_version += 1;
    meta.insert(
        "resourceVersion".into(),
        state.resource_version.to_string().into(),
    );
    state
        .objects
        .insert(res.item_path(&ns, &name), object.clone());
    Ok(object)
}

/// Reads a seed file: a JSON array of objects, or a `{"items": [...]}` list.
pub fn load_seed(text: &str) -> Result<Vec<Value>, String> {
    match serde_json::from_str::<Value>(text).map_err(|e| e.to_string())? {
        Value::Array(items) => Ok(items),
        Value::Object(mut o) => match o.remove("items") {
            Some(Value::Array(items)) => Ok(items),
            _ => Ok(vec![Value::Object(o)]),
        },
        _ => Err("seed must be a JSON array or list object".into()),
    }
}

#[cfg(test)]
mod tests;
