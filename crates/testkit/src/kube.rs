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

use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hasher};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::Response;
use axum::Router;

use crate::serve::ServerThread;
use crate::tls::{serve_router, ConnLog, Connection, ServingCert};
pub use latency::VerbLatency;

mod grace;
pub mod latency;
use plexus_cni::timefmt::rfc3339;
use serde_json::{json, Map, Value};

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

#[derive(Debug, Clone)]
struct Matcher {
    /// `None` matches every method.
    method: Option<String>,
    pattern: String,
}

impl Matcher {
    fn new(method: &str, pattern: &str) -> Self {
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
    fn matches(&self, method: &str, path: &str) -> bool {
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
struct Injection {
    matcher: Matcher,
    status: u16,
    remaining: usize,
}

#[derive(Debug)]
struct Latency {
    matcher: Matcher,
    delay: Duration,
    remaining: usize,
}

#[derive(Debug, Default)]
struct State {
    objects: BTreeMap<String, Value>,
    resource_version: u64,
    token: Option<String>,
    user: String,
    injections: Vec<Injection>,
    latencies: Vec<Latency>,
    verb_latency: Option<VerbLatency>,
    forbidden: Vec<Matcher>,
    requests: Vec<RecordedRequest>,
}

type Shared = Arc<Mutex<State>>;

fn lock(shared: &Shared) -> MutexGuard<'_, State> {
    // A panicking test thread must not wedge the fake for the others.
    shared.lock().unwrap_or_else(|p| p.into_inner())
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

/// A resource the fake serves.
#[derive(Debug)]
struct Resource {
    group: &'static str,
    version: &'static str,
    plural: &'static str,
    kind: &'static str,
    list_kind: &'static str,
    has_status: bool,
    /// Built-in types accept strategic merge patches; CRDs do not.
    builtin: bool,
    /// Pods and events may be updated without a resourceVersion; CRDs may not.
    unconditional_update: bool,
    /// Nodes and cluster-scoped CRDs live outside namespaces.
    namespaced: bool,
    /// `metadata.generation` is set on create and bumped on spec changes
    /// (CRDs with a status subresource; nodes and pods here do not need it).
    generation: bool,
}

const RESOURCES: [Resource; 8] = [
    Resource {
        group: "",
        version: "v1",
        plural: "pods",
        kind: "Pod",
        list_kind: "PodList",
        has_status: true,
        builtin: true,
        unconditional_update: true,
        namespaced: true,
        generation: false,
    },
    Resource {
        group: "",
        version: "v1",
        plural: "events",
        kind: "Event",
        list_kind: "EventList",
        has_status: false,
        builtin: true,
        unconditional_update: true,
        namespaced: true,
        generation: false,
    },
    Resource {
        group: "events.k8s.io",
        version: "v1",
        plural: "events",
        kind: "Event",
        list_kind: "EventList",
        has_status: false,
        builtin: true,
        unconditional_update: true,
        namespaced: true,
        generation: false,
    },
    Resource {
        group: "k8s.cni.cncf.io",
        version: "v1",
        plural: "network-attachment-definitions",
        kind: "NetworkAttachmentDefinition",
        list_kind: "NetworkAttachmentDefinitionList",
        has_status: false,
        builtin: false,
        unconditional_update: false,
        namespaced: true,
        generation: false,
    },
    Resource {
        group: "",
        version: "v1",
        plural: "nodes",
        kind: "Node",
        list_kind: "NodeList",
        has_status: true,
        builtin: true,
        unconditional_update: true,
        namespaced: false,
        generation: false,
    },
    Resource {
        group: "coordination.k8s.io",
        version: "v1",
        plural: "leases",
        kind: "Lease",
        list_kind: "LeaseList",
        has_status: false,
        builtin: true,
        unconditional_update: true,
        namespaced: true,
        generation: false,
    },
    Resource {
        group: "plexus.io",
        version: "v1alpha1",
        plural: "vnicpools",
        kind: "VnicPool",
        list_kind: "VnicPoolList",
        has_status: true,
        builtin: false,
        unconditional_update: false,
        namespaced: false,
        generation: true,
    },
    Resource {
        group: "apps",
        version: "v1",
        plural: "daemonsets",
        kind: "DaemonSet",
        list_kind: "DaemonSetList",
        has_status: true,
        builtin: true,
        unconditional_update: true,
        namespaced: true,
        generation: true,
    },
];

impl Resource {
    fn prefix(&self) -> String {
        if self.group.is_empty() {
            format!("/api/{}", self.version)
        } else {
            format!("/apis/{}/{}", self.group, self.version)
        }
    }

    fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_owned()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    fn item_path(&self, ns: &str, name: &str) -> String {
        if self.namespaced {
            format!("{}/namespaces/{ns}/{}/{name}", self.prefix(), self.plural)
        } else {
            format!("{}/{}/{name}", self.prefix(), self.plural)
        }
    }

    /// `pods` or `network-attachment-definitions.k8s.cni.cncf.io`, as in messages.
    fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_owned()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// Where etcd would keep it, as quoted in storage errors.
    fn storage_key(&self, ns: &str, name: &str) -> String {
        if self.group.is_empty() {
            format!("/registry/{}/{ns}/{name}", self.plural)
        } else {
            format!("/registry/{}/{}/{ns}/{name}", self.group, self.plural)
        }
    }

    fn details(&self, name: &str) -> Value {
        let mut d = Map::new();
        if !name.is_empty() {
            d.insert("name".into(), name.into());
        }
        if !self.group.is_empty() {
            d.insert("group".into(), self.group.into());
        }
        d.insert("kind".into(), self.plural.into());
        Value::Object(d)
    }

    fn accepted_patch_types(&self) -> &'static str {
        if self.builtin {
            "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json"
        } else {
            "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml"
        }
    }
}

/// What a resource path addresses.
#[derive(Debug)]
enum Target<'a> {
    Collection {
        res: &'a Resource,
        ns: Option<String>,
    },
    Item {
        res: &'a Resource,
        ns: String,
        name: String,
        status: bool,
    },
}

fn parse_target(path: &str) -> Option<Target<'static>> {
    for res in &RESOURCES {
        let prefix = res.prefix();
        let Some(rest) = path.strip_prefix(&prefix) else {
            continue;
        };
        let segs: Vec<&str> = rest.trim_start_matches('/').split('/').collect();
        if !res.namespaced {
            // Cluster scope: namespace "" stands for "none".
            let (ns, name) = (String::new(), segs.get(1).map(|n| (*n).to_owned()));
            let target = match (segs.as_slice(), name) {
                ([plural], _) if *plural == res.plural => Target::Collection { res, ns: Some(ns) },
                ([plural, _], Some(name)) if *plural == res.plural && !name.is_empty() => {
                    Target::Item {
                        res,
                        ns,
                        name,
                        status: false,
                    }
                }
                ([plural, _, "status"], Some(name)) if *plural == res.plural => Target::Item {
                    res,
                    ns,
                    name,
                    status: true,
                },
                _ => continue,
            };
            return Some(target);
        }
        let target = match segs.as_slice() {
            [plural] if *plural == res.plural => Target::Collection { res, ns: None },
            ["namespaces", ns, plural] if *plural == res.plural => Target::Collection {
                res,
                ns: Some((*ns).to_owned()),
            },
            ["namespaces", ns, plural, name] if *plural == res.plural && !name.is_empty() => {
                Target::Item {
                    res,
                    ns: (*ns).to_owned(),
                    name: (*name).to_owned(),
                    status: false,
                }
            }
            ["namespaces", ns, plural, name, "status"]
                if *plural == res.plural && res.has_status =>
            {
                Target::Item {
                    res,
                    ns: (*ns).to_owned(),
                    name: (*name).to_owned(),
                    status: true,
                }
            }
            _ => continue,
        };
        return Some(target);
    }
    None
}

fn status_body(code: u16, reason: &str, message: &str, details: Option<Value>) -> Value {
    let mut s = Map::new();
    s.insert("kind".into(), "Status".into());
    s.insert("apiVersion".into(), "v1".into());
    s.insert("metadata".into(), json!({}));
    s.insert("status".into(), "Failure".into());
    if !message.is_empty() {
        s.insert("message".into(), message.into());
    }
    if !reason.is_empty() {
        s.insert("reason".into(), reason.into());
    }
    if let Some(d) = details {
        s.insert("details".into(), d);
    }
    s.insert("code".into(), code.into());
    Value::Object(s)
}

fn json_response(code: u16, body: &Value) -> Response {
    let mut resp = Response::new(Body::from(body.to_string()));
    *resp.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/json"));
    resp
}

fn failure(code: u16, reason: &str, message: &str, details: Option<Value>) -> Response {
    json_response(code, &status_body(code, reason, message, details))
}

fn text_response(body: &'static str) -> Response {
    let mut resp = Response::new(Body::from(body));
    resp.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

fn not_found_path() -> Response {
    failure(
        404,
        "NotFound",
        "the server could not find the requested resource",
        Some(json!({})),
    )
}

fn method_not_allowed() -> Response {
    failure(
        405,
        "MethodNotAllowed",
        "the server does not allow this method on the requested resource",
        Some(json!({})),
    )
}

fn not_found(res: &Resource, name: &str) -> Response {
    failure(
        404,
        "NotFound",
        &format!("{} \"{name}\" not found", res.qualified()),
        Some(res.details(name)),
    )
}

fn conflict(res: &Resource, name: &str, why: &str) -> Response {
    failure(
        409,
        "Conflict",
        &format!(
            "Operation cannot be fulfilled on {} \"{name}\": {why}",
            res.qualified()
        ),
        Some(res.details(name)),
    )
}

const OPTIMISTIC_LOCK: &str =
    "the object has been modified; please apply your changes to the latest version and try again";

fn uid_conflict(res: &Resource, ns: &str, name: &str, want: &str, have: &str) -> Response {
    conflict(
        res,
        name,
        &format!(
            "StorageError: invalid object, Code: 4, Key: {}, ResourceVersion: 0, AdditionalErrorMsg: Precondition failed: UID in precondition: {want}, UID in object meta: {have}",
            res.storage_key(ns, name)
        ),
    )
}

/// 422 Invalid for one field error `"<field>: <detail>"`, with the
/// `causes` entry the real server adds.
fn invalid(res: &Resource, name: &str, field_error: &str) -> Response {
    let (field, detail) = field_error.split_once(": ").unwrap_or(("", field_error));
    let cause_reason = if detail.starts_with("Required value") {
        "FieldValueRequired"
    } else if detail.contains("must be of type") {
        "FieldValueTypeInvalid"
    } else {
        "FieldValueInvalid"
    };
    let mut details = res.details(name);
    if let Some(d) = details.as_object_mut() {
        d.insert("kind".into(), res.kind.into());
        d.insert(
            "causes".into(),
            json!([{"reason": cause_reason, "message": detail, "field": field}]),
        );
    }
    let kind = if res.group.is_empty() {
        res.kind.to_owned()
    } else {
        format!("{}.{}", res.kind, res.group)
    };
    failure(
        422,
        "Invalid",
        &format!("{kind} \"{name}\" is invalid: {field_error}"),
        Some(details),
    )
}

/// What `NewGenericServerResponse(422, …)` produces for a patch that cannot
/// be applied (e.g. a failed JSON-patch `test`).
fn unprocessable(server_message: &str) -> Response {
    failure(
        422,
        "Invalid",
        "the server rejected our request due to an error in our request",
        Some(
            json!({"causes": [{"reason": "UnexpectedServerResponse", "message": server_message}]}),
        ),
    )
}

fn bad_request(message: &str) -> Response {
    failure(400, "BadRequest", message, None)
}

/// The Status the real server sends for an injected code.
fn injected(status: u16) -> Response {
    let (reason, message, details) = match status {
        409 => ("Conflict", "Operation cannot be fulfilled: the object has been modified; please apply your changes to the latest version and try again", None),
        429 => (
            "TooManyRequests",
            "Too many requests, please try again later.",
            Some(json!({"retryAfterSeconds": 1})),
        ),
        500 => (
            "InternalError",
            "Internal error occurred: injected fault",
            Some(json!({"causes": [{"message": "injected fault"}]})),
        ),
        503 => ("ServiceUnavailable", "the server is currently unable to handle the request", None),
        504 => (
            "Timeout",
            "Timeout: request did not complete within requested timeout - context deadline exceeded",
            Some(json!({})),
        ),
        401 => ("Unauthorized", "Unauthorized", None),
        403 => ("Forbidden", "forbidden: injected", None),
        404 => ("NotFound", "the server could not find the requested resource", None),
        _ => ("", "injected fault", None),
    };
    let mut resp = failure(status, reason, message, details);
    if status == 429 {
        resp.headers_mut()
            .insert("retry-after", HeaderValue::from_static("1"));
    }
    resp
}

fn verb(method: &Method, target: &Target<'_>) -> &'static str {
    match (method.as_str(), target) {
        ("GET", Target::Collection { .. }) => "list",
        ("GET", _) => "get",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", Target::Collection { .. }) => "deletecollection",
        ("DELETE", _) => "delete",
        _ => "unknown",
    }
}

fn forbidden(user: &str, method: &Method, target: &Target<'_>) -> Response {
    let verb = verb(method, target);
    let (res, ns, name, status) = match target {
        Target::Collection { res, ns } => (*res, ns.clone(), None, false),
        Target::Item {
            res,
            ns,
            name,
            status,
        } => (*res, Some(ns.clone()), Some(name.as_str()), *status),
    };
    let subject = match name {
        Some(n) => format!("{} \"{n}\"", res.qualified()),
        None => res.qualified(),
    };
    let resource = if status {
        format!("{}/status", res.plural)
    } else {
        res.plural.to_owned()
    };
    let scope = match &ns {
        Some(ns) if !ns.is_empty() => format!("in the namespace \"{ns}\""),
        _ => "at the cluster scope".to_owned(),
    };
    let message = format!(
        "{subject} is forbidden: User \"{user}\" cannot {verb} resource \"{resource}\" in API group \"{}\" {scope}",
        res.group
    );
    failure(
        403,
        "Forbidden",
        &message,
        Some(res.details(name.unwrap_or(""))),
    )
}

async fn handle(
    shared: Shared,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_owned();
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let authorization = header("authorization");
    let content_type = header("content-type");
    let delay = {
        let mut s = lock(&shared);
        s.requests.push(RecordedRequest {
            method: method.to_string(),
            path: path.clone(),
            query: uri.query().map(str::to_owned),
            content_type: content_type.clone(),
            body: String::from_utf8_lossy(&body).into_owned(),
            authorization: authorization.clone(),
        });
        let m = method.as_str();
        s.latencies
            .iter_mut()
            .find(|l| l.remaining > 0 && l.matcher.matches(m, &path))
            .map(|l| {
                l.remaining -= 1;
                l.delay
            })
            .or_else(|| s.verb_latency.map(|l| l.for_request(m, &path)))
            .filter(|d| !d.is_zero())
    };
    if let Some(delay) = delay {
        latency::precise_sleep(delay).await;
    }
    let mut s = lock(&shared);
    let public = matches!(
        path.as_str(),
        "/healthz" | "/readyz" | "/livez" | "/version"
    );
    let mut anonymous = false;
    if let Some(token) = &s.token {
        match authorization
            .as_deref()
            .and_then(|a| a.strip_prefix("Bearer "))
        {
            Some(got) if got == token => {}
            None if authorization.is_none() => anonymous = true,
            _ => return failure(401, "Unauthorized", "Unauthorized", None),
        }
    }
    let m = method.as_str();
    if let Some(inj) = s
        .injections
        .iter_mut()
        .find(|i| i.remaining > 0 && i.matcher.matches(m, &path))
    {
        inj.remaining -= 1;
        return injected(inj.status);
    }
    if public {
        return match (m, path.as_str()) {
            ("GET", "/version") => json_response(200, &version()),
            ("GET", _) => text_response("ok"),
            _ => method_not_allowed(),
        };
    }
    if let Some(resp) = discovery(&path) {
        if anonymous {
            return failure(
                403,
                "Forbidden",
                &format!("forbidden: User \"system:anonymous\" cannot get path \"{path}\""),
                Some(json!({})),
            );
        }
        return if m == "GET" {
            resp
        } else {
            method_not_allowed()
        };
    }
    if let Some((ns, name)) = parse_eviction(&path) {
        if anonymous || s.forbidden.iter().any(|f| f.matches(m, &path)) {
            let user = if anonymous {
                "system:anonymous".to_owned()
            } else {
                s.user.clone()
            };
            let msg = format!("pods \"{name}\" is forbidden: User \"{user}\" cannot create resource \"pods/eviction\" in API group \"\" in the namespace \"{ns}\"");
            return failure(
                403,
                "Forbidden",
                &msg,
                Some(json!({"name": name, "kind": "pods"})),
            );
        }
        return if method == Method::POST {
            evict(&mut s, ns, name, &body)
        } else {
            method_not_allowed()
        };
    }
    let Some(target) = parse_target(&path) else {
        return not_found_path();
    };
    if anonymous {
        return forbidden("system:anonymous", &method, &target);
    }
    if s.forbidden.iter().any(|f| f.matches(m, &path)) {
        let user = s.user.clone();
        return forbidden(&user, &method, &target);
    }
    let ctype = content_type.as_deref().unwrap_or("");
    let query = uri.query().unwrap_or("");
    let mut body = body;
    if matches!(method, Method::POST | Method::PUT) {
        if let Some(resp) = check_body_media_type(&target, ctype) {
            return resp;
        }
        if is_protobuf(ctype) {
            match protobuf_body_to_json(&s, &target, &body) {
                Ok(json) => body = Bytes::from(json.to_string()),
                Err(e) => return bad_request(&format!("unable to decode protobuf body: {e}")),
            }
        }
    }
    match (&method, target) {
        (&Method::GET, Target::Collection { res, ns }) => list(&s, res, ns.as_deref()),
        (&Method::POST, Target::Collection { res, ns: Some(ns) }) => {
            create(&mut s, res, &ns, &body)
        }
        (&Method::GET, Target::Item { res, ns, name, .. }) => {
            match s.objects.get(&res.item_path(&ns, &name)) {
                Some(obj) => json_response(200, obj),
                None => not_found(res, &name),
            }
        }
        (
            &Method::PUT | &Method::PATCH,
            Target::Item {
                res,
                ns,
                name,
                status,
            },
        ) => {
            let item = ItemRef {
                res,
                ns: &ns,
                name: &name,
                status,
            };
            if method == Method::PUT {
                update(&mut s, item, &body)
            } else {
                patch(&mut s, item, ctype, query, &body)
            }
        }
        (
            &Method::DELETE,
            Target::Item {
                res,
                ns,
                name,
                status: false,
            },
        ) => {
            if foreground(query, &body) && res.builtin {
                delete_foreground(&mut s, res, &ns, &name)
            } else if res.kind == "Pod" {
                delete_pod(&mut s, res, &ns, &name, query, &body)
            } else {
                delete(&mut s, res, &ns, &name)
            }
        }
        _ => method_not_allowed(),
    }
}

/// `/api/v1/namespaces/{ns}/pods/{name}/eviction` -> (ns, name).
fn parse_eviction(path: &str) -> Option<(&str, &str)> {
    let rest = path.strip_prefix("/api/v1/namespaces/")?;
    match rest.split('/').collect::<Vec<_>>().as_slice() {
        [ns, "pods", name, "eviction"] if !name.is_empty() => Some((ns, name)),
        _ => None,
    }
}

/// The eviction subresource (policy/v1 `Eviction`): deletes the pod and
/// answers 201 with a Success Status, as the real server does when no
/// disruption budget blocks it (a blocked eviction is a 429, injectable).
fn evict(s: &mut State, ns: &str, name: &str, body: &[u8]) -> Response {
    let pods = &RESOURCES[0];
    let eviction: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => return bad_request(&format!("error decoding Eviction: {e}")),
    };
    if eviction["kind"].as_str().is_some_and(|k| k != "Eviction") {
        return bad_request("the body is not an Eviction");
    }
    let body_name = eviction["metadata"]["name"].as_str().unwrap_or(name);
    if body_name != name {
        return bad_request(&format!(
            "name in URL does not match name in Eviction object: {name} != {body_name}"
        ));
    }
    if s.objects.remove(&pods.item_path(ns, name)).is_none() {
        return not_found(pods, name);
    }
    s.resource_version += 1;
    json_response(
        201,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
    )
}

/// Create/update bodies: JSON (or YAML, read here as JSON only); an empty
/// Content-Type defaults to JSON as on the real server.
fn check_body_media_type(target: &Target<'_>, content_type: &str) -> Option<Response> {
    let media = content_type.split(';').next().unwrap_or("").trim();
    let res = match target {
        Target::Collection { res, .. } | Target::Item { res, .. } => *res,
    };
    if matches!(media, "" | "application/json" | "application/yaml")
        || (res.builtin && media == PROTOBUF)
    {
        return None;
    }
    let accepted = if res.builtin {
        "application/json, application/yaml, application/vnd.kubernetes.protobuf"
    } else {
        "application/json, application/yaml"
    };
    Some(failure(
        415,
        "UnsupportedMediaType",
        &format!("the body of the request was in an unknown format - accepted media types include: {accepted}"),
        None,
    ))
}

const PROTOBUF: &str = "application/vnd.kubernetes.protobuf";

fn is_protobuf(content_type: &str) -> bool {
    content_type.split(';').next().unwrap_or("").trim() == PROTOBUF
}

/// Client-go clients configured for protobuf (Multus is) send pod status
/// updates and events in the Kubernetes protobuf envelope. Events are decoded
/// fully; for pods only `metadata` is, and `spec`/`status` are carried over
/// from the stored object (Multus only changes annotations).
fn protobuf_body_to_json(s: &State, target: &Target<'_>, body: &[u8]) -> Result<Value, String> {
    let (res, existing) = match target {
        Target::Collection { res, .. } => (*res, None),
        Target::Item { res, ns, name, .. } => (*res, s.objects.get(&res.item_path(ns, name))),
    };
    let (api_version, kind, raw) = pb::decode_unknown(body)?;
    if !kind.is_empty() && kind != res.kind {
        return Err(format!("kind {kind:?} does not match {}", res.kind));
    }
    let mut obj = match res.kind {
        "Pod" => pb::decode_pod(raw)?,
        "Event" if res.group.is_empty() => pb::decode_event(raw)?,
        _ => return Err(format!("protobuf is not supported for {}", res.qualified())),
    };
    obj.insert(
        "apiVersion".into(),
        if api_version.is_empty() {
            res.api_version()
        } else {
            api_version
        }
        .into(),
    );
    obj.insert("kind".into(), res.kind.into());
    if let Some(old) = existing {
        for key in ["spec", "status"] {
            if let Some(v) = old.get(key) {
                obj.insert(key.into(), v.clone());
            }
        }
    }
    Ok(Value::Object(obj))
}

/// Just enough of the protobuf wire format and the Kubernetes messages
/// (`runtime.Unknown`, `ObjectMeta`, `Pod.metadata`, core/v1 `Event`).
mod pb {
    use serde_json::{json, Map, Value};

    /// `k8s\0`, the prefix of every Kubernetes protobuf body.
    const MAGIC: &[u8] = b"k8s\0";

    enum Field<'a> {
        Varint(u64),
        Bytes(&'a [u8]),
        Fixed,
    }

    fn varint(buf: &mut &[u8]) -> Result<u64, String> {
        let mut out = 0u64;
        for shift in (0..64).step_by(7) {
            let (&b, rest) = buf.split_first().ok_or("truncated varint")?;
            *buf = rest;
            out |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(out);
            }
        }
        Err("varint too long".into())
    }

    /// Every (field number, value) of one message, in order.
    fn fields(mut buf: &[u8]) -> Result<Vec<(u64, Field<'_>)>, String> {
        let mut out = Vec::new();
        while !buf.is_empty() {
            let key = varint(&mut buf)?;
            let field = match key & 7 {
                0 => Field::Varint(varint(&mut buf)?),
                2 => {
                    let len = usize::try_from(varint(&mut buf)?).map_err(|e| e.to_string())?;
                    if len > buf.len() {
                        return Err("truncated length-delimited field".into());
                    }
                    let (bytes, rest) = buf.split_at(len);
                    buf = rest;
                    Field::Bytes(bytes)
                }
                1 | 5 => {
                    let n = if key & 7 == 1 { 8 } else { 4 };
                    if n > buf.len() {
                        return Err("truncated fixed field".into());
                    }
                    buf = &buf[n..];
                    Field::Fixed
                }
                w => return Err(format!("unsupported wire type {w}")),
            };
            out.push((key >> 3, field));
        }
        Ok(out)
    }

    fn text(b: &[u8]) -> Result<String, String> {
        String::from_utf8(b.to_vec()).map_err(|e| e.to_string())
    }

    /// `runtime.Unknown`: (apiVersion, kind, raw object bytes).
    pub(super) fn decode_unknown(body: &[u8]) -> Result<(String, String, &[u8]), String> {
        let inner = body
            .strip_prefix(MAGIC)
            .ok_or("missing k8s protobuf magic")?;
        let (mut api_version, mut kind, mut raw) = (String::new(), String::new(), &[][..]);
        for (no, f) in fields(inner)? {
            match (no, f) {
                (1, Field::Bytes(tm)) => {
                    for (no, f) in fields(tm)? {
                        match (no, f) {
                            (1, Field::Bytes(b)) => api_version = text(b)?,
                            (2, Field::Bytes(b)) => kind = text(b)?,
                            _ => {}
                        }
                    }
                }
                (2, Field::Bytes(b)) => raw = b,
                _ => {}
            }
        }
        Ok((api_version, kind, raw))
    }

    /// `metav1.Time`/`MicroTime` {seconds, nanos} as RFC 3339.
    fn time(b: &[u8], micro: bool) -> Result<Value, String> {
        let (mut secs, mut nanos) = (0u64, 0u64);
        for (no, f) in fields(b)? {
            match (no, f) {
                (1, Field::Varint(v)) => secs = v,
                (2, Field::Varint(v)) => nanos = v,
                _ => {}
            }
        }
        let base = super::rfc3339(secs);
        Ok(if micro {
            format!("{}.{:06}Z", base.trim_end_matches('Z'), nanos / 1000).into()
        } else {
            base.into()
        })
    }

    fn string_map(entries: &[&[u8]]) -> Result<Map<String, Value>, String> {
        let mut m = Map::new();
        for e in entries {
            let (mut k, mut v) = (String::new(), String::new());
            for (no, f) in fields(e)? {
                match (no, f) {
                    (1, Field::Bytes(b)) => k = text(b)?,
                    (2, Field::Bytes(b)) => v = text(b)?,
                    _ => {}
                }
            }
            m.insert(k, v.into());
        }
        Ok(m)
    }

    fn object_meta(b: &[u8]) -> Result<Value, String> {
        let mut m = Map::new();
        let (mut labels, mut annotations, mut finalizers) = (Vec::new(), Vec::new(), Vec::new());
        for (no, f) in fields(b)? {
            let key = match no {
                1 => "name",
                2 => "generateName",
                3 => "namespace",
                5 => "uid",
                6 => "resourceVersion",
                _ => "",
            };
            match (no, f) {
                (_, Field::Bytes(v)) if !key.is_empty() => {
                    m.insert(key.into(), text(v)?.into());
                }
                (7, Field::Varint(v)) => {
                    m.insert("generation".into(), v.into());
                }
                (8, Field::Bytes(v)) => {
                    m.insert("creationTimestamp".into(), time(v, false)?);
                }
                (11, Field::Bytes(v)) => labels.push(v),
                (12, Field::Bytes(v)) => annotations.push(v),
                (14, Field::Bytes(v)) => finalizers.push(Value::from(text(v)?)),
                _ => {}
            }
        }
        if !labels.is_empty() {
            m.insert("labels".into(), Value::Object(string_map(&labels)?));
        }
        if !annotations.is_empty() {
            m.insert(
                "annotations".into(),
                Value::Object(string_map(&annotations)?),
            );
        }
        if !finalizers.is_empty() {
            m.insert("finalizers".into(), Value::Array(finalizers));
        }
        Ok(Value::Object(m))
    }

    /// A Pod's `metadata` (spec and status are not decoded).
    pub(super) fn decode_pod(raw: &[u8]) -> Result<Map<String, Value>, String> {
        let mut obj = Map::new();
        for (no, f) in fields(raw)? {
            if let (1, Field::Bytes(b)) = (no, f) {
                obj.insert("metadata".into(), object_meta(b)?);
            }
        }
        Ok(obj)
    }

    fn strings(b: &[u8], names: &[(u64, &str)]) -> Result<Value, String> {
        let mut m = Map::new();
        for (no, f) in fields(b)? {
            if let (Some((_, name)), Field::Bytes(v)) = (names.iter().find(|(n, _)| *n == no), f) {
                m.insert((*name).into(), text(v)?.into());
            }
        }
        Ok(Value::Object(m))
    }

    const OBJECT_REFERENCE: &[(u64, &str)] = &[
        (1, "kind"),
        (2, "namespace"),
        (3, "name"),
        (4, "uid"),
        (5, "apiVersion"),
        (6, "resourceVersion"),
        (7, "fieldPath"),
    ];

    /// A core/v1 Event.
    pub(super) fn decode_event(raw: &[u8]) -> Result<Map<String, Value>, String> {
        let mut obj = Map::new();
        obj.insert("eventTime".into(), Value::Null);
        for (no, f) in fields(raw)? {
            match (no, f) {
                (1, Field::Bytes(b)) => {
                    obj.insert("metadata".into(), object_meta(b)?);
                }
                (2, Field::Bytes(b)) => {
                    obj.insert("involvedObject".into(), strings(b, OBJECT_REFERENCE)?);
                }
                (3, Field::Bytes(b)) => {
                    obj.insert("reason".into(), text(b)?.into());
                }
                (4, Field::Bytes(b)) => {
                    obj.insert("message".into(), text(b)?.into());
                }
                (5, Field::Bytes(b)) => {
                    obj.insert(
                        "source".into(),
                        strings(b, &[(1, "component"), (2, "host")])?,
                    );
                }
                (6, Field::Bytes(b)) => {
                    obj.insert("firstTimestamp".into(), time(b, false)?);
                }
                (7, Field::Bytes(b)) => {
                    obj.insert("lastTimestamp".into(), time(b, false)?);
                }
                (8, Field::Varint(v)) => {
                    obj.insert("count".into(), json!(v));
                }
                (9, Field::Bytes(b)) => {
                    obj.insert("type".into(), text(b)?.into());
                }
                (10, Field::Bytes(b)) if !b.is_empty() => {
                    obj.insert("eventTime".into(), time(b, true)?);
                }
                (12, Field::Bytes(b)) => {
                    obj.insert("action".into(), text(b)?.into());
                }
                (13, Field::Bytes(b)) => {
                    obj.insert("related".into(), strings(b, OBJECT_REFERENCE)?);
                }
                (14, Field::Bytes(b)) => {
                    obj.insert("reportingComponent".into(), text(b)?.into());
                }
                (15, Field::Bytes(b)) => {
                    obj.insert("reportingInstance".into(), text(b)?.into());
                }
                _ => {}
            }
        }
        Ok(obj)
    }
}

fn version() -> Value {
    json!({
        "major": "1",
        "minor": "31",
        "gitVersion": "v1.31.0-plexus-fake",
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": "go1.22.5",
        "compiler": "gc",
        "platform": "linux/amd64"
    })
}

fn discovery(path: &str) -> Option<Response> {
    let resource_list = |gv: &str| {
        let resources: Vec<Value> = RESOURCES
            .iter()
            .filter(|r| r.api_version() == gv)
            .flat_map(|r| {
                let mut out = vec![json!({
                    "name": r.plural,
                    "singularName": "",
                    "namespaced": r.namespaced,
                    "kind": r.kind,
                    "verbs": ["create", "delete", "get", "list", "patch", "update"],
                })];
                if r.has_status {
                    out.push(json!({
                        "name": format!("{}/status", r.plural),
                        "singularName": "",
                        "namespaced": r.namespaced,
                        "kind": r.kind,
                        "verbs": ["get", "patch", "update"],
                    }));
                }
                out
            })
            .collect();
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources})
    };
    let body = match path.trim_end_matches('/') {
        "/api" => json!({
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1:6443"}],
        }),
        "/apis" => {
            let groups: Vec<Value> = [
                ("apps", "v1"),
                ("events.k8s.io", "v1"),
                ("k8s.cni.cncf.io", "v1"),
                ("coordination.k8s.io", "v1"),
                ("plexus.io", "v1alpha1"),
            ]
            .iter()
            .map(|(g, v)| {
                let gv = json!({"groupVersion": format!("{g}/{v}"), "version": v});
                json!({"name": g, "versions": [gv.clone()], "preferredVersion": gv})
            })
            .collect();
            json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
        }
        "/api/v1" => resource_list("v1"),
        "/apis/apps/v1" => resource_list("apps/v1"),
        "/apis/events.k8s.io/v1" => resource_list("events.k8s.io/v1"),
        "/apis/k8s.cni.cncf.io/v1" => resource_list("k8s.cni.cncf.io/v1"),
        "/apis/coordination.k8s.io/v1" => resource_list("coordination.k8s.io/v1"),
        "/apis/plexus.io/v1alpha1" => resource_list("plexus.io/v1alpha1"),
        _ => return None,
    };
    Some(json_response(200, &body))
}

fn list(s: &State, res: &Resource, ns: Option<&str>) -> Response {
    let prefix = match ns {
        _ if !res.namespaced => format!("{}/{}/", res.prefix(), res.plural),
        Some(ns) => format!("{}/namespaces/{ns}/{}/", res.prefix(), res.plural),
        None => format!("{}/namespaces/", res.prefix()),
    };
    let items: Vec<Value> = s
        .objects
        .range(prefix.clone()..)
        .take_while(|(k, _)| k.starts_with(&prefix))
        .filter(|(k, _)| {
            // Cluster-wide: keep only this resource's items.
            k.split('/').rev().nth(1) == Some(res.plural)
        })
        .map(|(_, v)| {
            let mut item = v.clone();
            // Built-in lists omit each item's kind/apiVersion; CR lists keep them.
            if res.builtin {
                if let Some(o) = item.as_object_mut() {
                    o.remove("kind");
                    o.remove("apiVersion");
                }
            }
            item
        })
        .collect();
    json_response(
        200,
        &json!({
            "kind": res.list_kind,
            "apiVersion": res.api_version(),
            "metadata": {"resourceVersion": s.resource_version.to_string()},
            "items": items,
        }),
    )
}

fn decode_body(res: &Resource, body: &[u8]) -> Result<Map<String, Value>, Box<Response>> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(o)) => Ok(o),
        Ok(_) => Err(Box::new(bad_request(&format!(
            "{} in version \"{}\" cannot be handled as a {}: body is not a JSON object",
            res.kind, res.version, res.kind
        )))),
        Err(e) => Err(Box::new(bad_request(&format!(
            "{} in version \"{}\" cannot be handled as a {}: {e}",
            res.kind, res.version, res.kind
        )))),
    }
}

/// Schema checks the real server applies that our tests can trip.
fn validate(
    res: &Resource,
    ns: &str,
    name: &str,
    obj: &Map<String, Value>,
) -> Result<(), Box<Response>> {
    if let Some(kind) = obj.get("kind").and_then(Value::as_str) {
        if kind != res.kind {
            return Err(Box::new(bad_request(&format!(
                "{} in version \"{}\" cannot be handled as a {}: kind {kind:?} does not match",
                res.kind, res.version, res.kind
            ))));
        }
    }
    if res.plural == "network-attachment-definitions" {
        if let Some(config) = obj.get("spec").and_then(|s| s.get("config")) {
            if !config.is_string() {
                let ty = json_type(config);
                return Err(Box::new(invalid(
                    res,
                    name,
                    &format!("spec.config: Invalid value: \"{ty}\": spec.config in body must be of type string: \"{ty}\""),
                )));
            }
        }
    }
    if res.plural == "events" && res.group.is_empty() {
        let involved_ns = obj
            .get("involvedObject")
            .and_then(|i| i.get("namespace"))
            .and_then(Value::as_str)
            .unwrap_or("");
        // Events about cluster-scoped objects (nodes, VnicPools) live in
        // "default", as the real validation allows.
        let cluster_scoped_ok = involved_ns.is_empty() && ns == "default";
        if involved_ns != ns && !cluster_scoped_ok {
            return Err(Box::new(invalid(
                res,
                name,
                &format!("involvedObject.namespace: Invalid value: \"{involved_ns}\": does not match event.namespace"),
            )));
        }
    }
    Ok(())
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn meta_str<'a>(obj: &'a Map<String, Value>, key: &str) -> &'a str {
    obj.get("metadata")
        .and_then(|m| m.get(key))
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn create(s: &mut State, res: &Resource, ns: &str, body: &[u8]) -> Response {
    let mut obj = match decode_body(res, body) {
        Ok(o) => o,
        Err(r) => return *r,
    };
    let body_ns = meta_str(&obj, "namespace");
    if res.namespaced && !body_ns.is_empty() && body_ns != ns {
        return bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        );
    }
    let mut name = meta_str(&obj, "name").to_owned();
    if name.is_empty() {
        let generate = meta_str(&obj, "generateName");
        if generate.is_empty() {
            return invalid(
                res,
                "",
                "metadata.name: Required value: name or generateName is required",
            );
        }
        name = format!("{generate}{}", &new_uid()[..5]);
    }
    if let Err(r) = validate(res, ns, &name, &obj) {
        return *r;
    }
    let path = res.item_path(ns, &name);
    if s.objects.contains_key(&path) {
        return failure(
            409,
            "AlreadyExists",
            &format!("{} \"{name}\" already exists", res.qualified()),
            Some(res.details(&name)),
        );
    }
    s.resource_version += 1;
    obj.insert("apiVersion".into(), res.api_version().into());
    obj.insert("kind".into(), res.kind.into());
    let meta = obj.entry("metadata").or_insert_with(|| json!({}));
    if let Some(meta) = meta.as_object_mut() {
        meta.insert("name".into(), name.into());
        if res.namespaced {
            meta.insert("namespace".into(), ns.into());
        } else {
            meta.remove("namespace");
        }
        if res.generation {
            meta.insert("generation".into(), 1.into());
        }
        meta.insert("uid".into(), new_uid().into());
        meta.insert(
            "resourceVersion".into(),
            s.resource_version.to_string().into(),
        );
        meta.insert("creationTimestamp".into(), now_rfc3339().into());
    }
    let obj = Value::Object(obj);
    s.objects.insert(path, obj.clone());
    json_response(201, &obj)
}

/// Checks preconditions carried in the new object, stamps server-owned
/// fields, stores it and answers 200.
fn commit(
    s: &mut State,
    item: ItemRef<'_>,
    old: &Value,
    mut new: Map<String, Value>,
    require_rv: bool,
) -> Response {
    let ItemRef {
        res,
        ns,
        name,
        status: status_only,
    } = item;
    let old_uid = old["metadata"]["uid"].as_str().unwrap_or("");
    let old_rv = old["metadata"]["resourceVersion"].as_str().unwrap_or("");
    let new_uid = meta_str(&new, "uid").to_owned();
    if !new_uid.is_empty() && new_uid != old_uid {
        return uid_conflict(res, ns, name, &new_uid, old_uid);
    }
    let new_name = meta_str(&new, "name");
    if !new_name.is_empty() && new_name != name {
        return bad_request(&format!(
            "the name of the object ({new_name}) does not match the name on the URL ({name})"
        ));
    }
    let new_rv = meta_str(&new, "resourceVersion").to_owned();
    if new_rv.is_empty() && require_rv && !res.unconditional_update {
        return invalid(
            res,
            name,
            "metadata.resourceVersion: Invalid value: 0x0: must be specified for an update",
        );
    }
    if !new_rv.is_empty() && new_rv != old_rv {
        return conflict(res, name, OPTIMISTIC_LOCK);
    }
    if let Err(r) = validate(res, ns, name, &new) {
        return *r;
    }
    if status_only {
        // pods/status ignores spec changes (metadata and status go through).
        match old.get("spec") {
            Some(spec) => new.insert("spec".into(), spec.clone()),
            None => new.remove("spec"),
        };
    } else if res.has_status {
        // The main resource ignores status changes.
        match old.get("status") {
            Some(st) => new.insert("status".into(), st.clone()),
            None => new.remove("status"),
        };
    }
    s.resource_version += 1;
    let new_spec = new.get("spec").cloned();
    new.insert("apiVersion".into(), res.api_version().into());
    new.insert("kind".into(), res.kind.into());
    let meta = new.entry("metadata").or_insert_with(|| json!({}));
    if !meta.is_object() {
        *meta = json!({});
    }
    if let Some(meta) = meta.as_object_mut() {
        meta.insert("name".into(), name.into());
        if res.namespaced {
            meta.insert("namespace".into(), ns.into());
        }
        if res.generation {
            let old_gen = old["metadata"]["generation"].as_u64().unwrap_or(1);
            let bumped = !status_only && new_spec != old.get("spec").cloned();
            meta.insert("generation".into(), (old_gen + u64::from(bumped)).into());
        }
        meta.insert("uid".into(), old_uid.into());
        meta.insert(
            "resourceVersion".into(),
            s.resource_version.to_string().into(),
        );
        if let Some(ts) = old["metadata"].get("creationTimestamp") {
            meta.insert("creationTimestamp".into(), ts.clone());
        }
    }
    let new = Value::Object(new);
    s.objects.insert(res.item_path(ns, name), new.clone());
    json_response(200, &new)
}

/// One addressed object (optionally its status subresource).
#[derive(Clone, Copy)]
struct ItemRef<'a> {
    res: &'a Resource,
    ns: &'a str,
    name: &'a str,
    status: bool,
}

fn update(s: &mut State, item: ItemRef<'_>, body: &[u8]) -> Response {
    let ItemRef { res, ns, name, .. } = item;
    let new = match decode_body(res, body) {
        Ok(o) => o,
        Err(r) => return *r,
    };
    let Some(old) = s.objects.get(&res.item_path(ns, name)).cloned() else {
        return not_found(res, name);
    };
    commit(s, item, &old, new, true)
}

fn patch(
    s: &mut State,
    item: ItemRef<'_>,
    content_type: &str,
    query: &str,
    body: &[u8],
) -> Response {
    let ItemRef { res, ns, name, .. } = item;
    let media = content_type.split(';').next().unwrap_or("").trim();
    let kind = match media {
        "application/merge-patch+json" => PatchKind::Merge,
        "application/strategic-merge-patch+json" if res.builtin => PatchKind::Merge,
        "application/json-patch+json" => PatchKind::Json,
        "application/apply-patch+yaml" => {
            let has_manager = query
                .split('&')
                .any(|kv| kv.strip_prefix("fieldManager=").is_some_and(|v| !v.is_empty()));
            if !has_manager {
                return bad_request("PATCH /apply requests require a fieldManager query parameter: fieldManager is required for apply requests");
            }
            PatchKind::Merge
        }
        _ => {
            return failure(
                415,
                "UnsupportedMediaType",
                &format!(
                    "the body of the request was in an unknown format - accepted media types include: {}",
                    res.accepted_patch_types()
                ),
                None,
            )
        }
    };
    let Some(old) = s.objects.get(&res.item_path(ns, name)).cloned() else {
        return not_found(res, name);
    };
    let patch: Value = match serde_json::from_slice(body) {
        Ok(p) => p,
        Err(e) => return bad_request(&format!("error decoding patch: {e}")),
    };
    let patched = match kind {
        PatchKind::Merge => {
            if !patch.is_object() {
                return bad_request("error decoding patch: patch is not a JSON object");
            }
            let mut target = old.clone();
            merge_patch(&mut target, &patch);
            target
        }
        PatchKind::Json => match json_patch(&old, &patch) {
            Ok(v) => v,
            Err(e) => return unprocessable(&e),
        },
    };
    let Value::Object(new) = patched else {
        return unprocessable("patched object is not a JSON object");
    };
    // A patch cannot change the uid: the server validates the patched
    // object (422 Invalid); only a PUT treats `metadata.uid` as a storage
    // precondition (409, in `commit`). Measured on kube-apiserver v1.28.
    let (old_uid, new_uid) = (
        old["metadata"]["uid"].as_str().unwrap_or(""),
        meta_str(&new, "uid"),
    );
    if !new_uid.is_empty() && new_uid != old_uid {
        return invalid(
            res,
            name,
            &format!("metadata.uid: Invalid value: \"{new_uid}\": field is immutable"),
        );
    }
    commit(s, item, &old, new, false)
}

fn delete(s: &mut State, res: &Resource, ns: &str, name: &str) -> Response {
    let Some(old) = s.objects.remove(&res.item_path(ns, name)) else {
        return not_found(res, name);
    };
    s.resource_version += 1;
    // Core built-ins answer with the deleted object (pods bound to a node
    // first get a deletionTimestamp, `delete_pod`); apps/v1 and CRDs
    // with a Success Status.
    if res.builtin && res.group != "apps" {
        json_response(200, &old)
    } else {
        let mut details = res.details(name);
        if let Some(d) = details.as_object_mut() {
            d.insert("uid".into(), old["metadata"]["uid"].clone());
        }
        json_response(
            200,
            &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details}),
        )
    }
}

/// DELETE of a pod: graceful ([`grace`]) unless its grace period is 0.
fn delete_pod(
    s: &mut State,
    res: &Resource,
    ns: &str,
    name: &str,
    query: &str,
    body: &[u8],
) -> Response {
    let path = res.item_path(ns, name);
    let Some(pod) = s.objects.get(&path) else {
        return not_found(res, name);
    };
    let grace = grace::grace_seconds(pod, query, body);
    if grace == 0 {
        return delete(s, res, ns, name);
    }
    let mut pod = pod.clone();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs();
    if grace::mark_terminating(&mut pod, grace, now) {
        s.resource_version += 1;
        pod["metadata"]["resourceVersion"] = json!(s.resource_version.to_string());
        s.objects.insert(path, pod.clone());
    }
    json_response(200, &pod)
}

/// `propagationPolicy=Foreground`, as a query parameter or in the
/// `DeleteOptions` body (kubectl sends the body).
fn foreground(query: &str, body: &[u8]) -> bool {
    query
        .split('&')
        .any(|kv| kv == "propagationPolicy=Foreground")
        || serde_json::from_slice::<Value>(body)
            .is_ok_and(|o| o["propagationPolicy"] == "Foreground")
}

/// Foreground deletion of an owner: the object stays, with a
/// `deletionTimestamp` and the `foregroundDeletion` finalizer, until the
/// garbage collector has removed its dependents (the fake never finishes
/// that; tests delete it again without the policy). 200 with the object.
fn delete_foreground(s: &mut State, res: &Resource, ns: &str, name: &str) -> Response {
    s.resource_version += 1;
    let rv = s.resource_version.to_string();
    let Some(obj) = s.objects.get_mut(&res.item_path(ns, name)) else {
        return not_found(res, name);
    };
    let meta = &mut obj["metadata"];
    if meta.get("deletionTimestamp").is_none() {
        meta["deletionTimestamp"] = now_rfc3339().into();
        meta["deletionGracePeriodSeconds"] = 0.into();
        meta["finalizers"] = json!(["foregroundDeletion"]);
        meta["resourceVersion"] = rv.into();
    }
    json_response(200, obj)
}

enum PatchKind {
    Merge,
    Json,
}

/// RFC 7386 JSON merge patch.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = json!({});
    }
    if let Value::Object(t) = target {
        for (k, v) in patch {
            if v.is_null() {
                t.remove(k);
            } else {
                merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
    }
}

fn pointer_tokens(path: &str) -> Result<Vec<String>, String> {
    if path.is_empty() {
        return Ok(Vec::new());
    }
    let rest = path
        .strip_prefix('/')
        .ok_or_else(|| format!("invalid JSON pointer {path:?}"))?;
    Ok(rest
        .split('/')
        .map(|t| t.replace("~1", "/").replace("~0", "~"))
        .collect())
}

fn parent_and_key<'a>(doc: &'a mut Value, path: &str) -> Result<(&'a mut Value, String), String> {
    let mut tokens = pointer_tokens(path)?;
    let last = tokens
        .pop()
        .ok_or_else(|| "cannot address the document root here".to_owned())?;
    let mut cur = doc;
    for t in tokens {
        cur = match cur {
            Value::Object(o) => o.get_mut(&t),
            Value::Array(a) => t.parse::<usize>().ok().and_then(|i| a.get_mut(i)),
            _ => None,
        }
        .ok_or_else(|| format!("missing path {path:?}"))?;
    }
    Ok((cur, last))
}

fn pointer_get(doc: &Value, path: &str) -> Result<Value, String> {
    let p = if path.is_empty() { "" } else { path };
    doc.pointer(p)
        .cloned()
        .ok_or_else(|| format!("missing path {path:?}"))
}

fn pointer_add(doc: &mut Value, path: &str, value: Value) -> Result<(), String> {
    if path.is_empty() {
        *doc = value;
        return Ok(());
    }
    let (parent, key) = parent_and_key(doc, path)?;
    match parent {
        Value::Object(o) => {
            o.insert(key, value);
            Ok(())
        }
        Value::Array(a) => {
            let idx = if key == "-" {
                a.len()
            } else {
                key.parse::<usize>()
                    .map_err(|_| format!("invalid array index {key:?}"))?
            };
            if idx > a.len() {
                return Err(format!("array index {idx} out of bounds"));
            }
            a.insert(idx, value);
            Ok(())
        }
        _ => Err(format!("cannot add at {path:?}")),
    }
}

fn pointer_remove(doc: &mut Value, path: &str) -> Result<Value, String> {
    let (parent, key) = parent_and_key(doc, path)?;
    match parent {
        Value::Object(o) => o
            .shift_remove(&key)
            .ok_or_else(|| format!("missing path {path:?}")),
        Value::Array(a) => {
            let idx = key
                .parse::<usize>()
                .map_err(|_| format!("invalid array index {key:?}"))?;
            if idx >= a.len() {
                return Err(format!("array index {idx} out of bounds"));
            }
            Ok(a.remove(idx))
        }
        _ => Err(format!("missing path {path:?}")),
    }
}

/// RFC 6902 JSON patch: add, remove, replace, move, copy, test.
pub fn json_patch(doc: &Value, patch: &Value) -> Result<Value, String> {
    let ops = patch
        .as_array()
        .ok_or("json: cannot unmarshal object into Go value of type jsonpatch.Patch")?;
    let mut doc = doc.clone();
    for op in ops {
        let name = op["op"].as_str().ok_or("operation without \"op\"")?;
        let path = op["path"].as_str().ok_or("operation without \"path\"")?;
        let value = || {
            op.get("value")
                .cloned()
                .ok_or_else(|| format!("{name} operation without \"value\""))
        };
        let from = || {
            op["from"]
                .as_str()
                .ok_or_else(|| format!("{name} operation without \"from\""))
        };
        match name {
            "add" => pointer_add(&mut doc, path, value()?)?,
            "remove" => {
                pointer_remove(&mut doc, path)?;
            }
            "replace" => {
                pointer_remove(&mut doc, path)?;
                pointer_add(&mut doc, path, value()?)?;
            }
            "move" => {
                let v = pointer_remove(&mut doc, from()?)?;
                pointer_add(&mut doc, path, v)?;
            }
            "copy" => {
                let v = pointer_get(&doc, from()?)?;
                pointer_add(&mut doc, path, v)?;
            }
            "test" => {
                if pointer_get(&doc, path)? != value()? {
                    return Err(format!("testing value {path} failed: test failed"));
                }
            }
            other => return Err(format!("Unexpected kind: {other}")),
        }
    }
    Ok(doc)
}

static UID_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A random v4-format UUID (std's per-process random hasher keys + a counter).
fn new_uid() -> String {
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

fn now_rfc3339() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs();
    rfc3339(secs)
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
mod tests {
    use super::*;

    #[test]
    fn matcher_segments() {
        let m = Matcher::new("PATCH", "/api/v1/namespaces/*/pods");
        assert!(m.matches("PATCH", "/api/v1/namespaces/default/pods/p/status"));
        assert!(!m.matches("GET", "/api/v1/namespaces/default/pods/p"));
        assert!(!m.matches("PATCH", "/api/v1/namespaces/default/events"));
        assert!(Matcher::new("*", "/").matches("GET", "/anything"));
    }

    #[test]
    fn merge_patch_rfc7386_examples() {
        let mut doc = json!({"a": "b", "c": {"d": "e", "f": "g"}});
        merge_patch(&mut doc, &json!({"a": "z", "c": {"f": null}}));
        assert_eq!(doc, json!({"a": "z", "c": {"d": "e"}}));
        let mut doc = json!({"a": [1]});
        merge_patch(&mut doc, &json!({"a": {"b": "c"}}));
        assert_eq!(doc, json!({"a": {"b": "c"}}));
    }

    #[test]
    fn json_patch_rfc6902_ops() {
        let doc = json!({"foo": ["bar", "baz"], "m": {"a/b": 1}});
        let out = json_patch(
            &doc,
            &json!([
                {"op": "add", "path": "/foo/1", "value": "qux"},
                {"op": "remove", "path": "/foo/0"},
                {"op": "replace", "path": "/m/a~1b", "value": 2},
                {"op": "copy", "from": "/m", "path": "/n"},
                {"op": "move", "from": "/n", "path": "/o"},
                {"op": "add", "path": "/foo/-", "value": "end"},
                {"op": "test", "path": "/o/a~1b", "value": 2}
            ]),
        )
        .unwrap();
        assert_eq!(
            out,
            json!({"foo": ["qux", "baz", "end"], "m": {"a/b": 2}, "o": {"a/b": 2}})
        );
        assert!(json_patch(
            &doc,
            &json!([{"op": "test", "path": "/foo/0", "value": "x"}])
        )
        .is_err());
        assert!(json_patch(&doc, &json!([{"op": "remove", "path": "/nope"}])).is_err());
    }

    #[test]
    fn uids_look_like_v4_uuids() {
        let a = new_uid();
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "4");
        assert_ne!(a, new_uid());
        assert_eq!(now_rfc3339().len(), 20);
    }
}
