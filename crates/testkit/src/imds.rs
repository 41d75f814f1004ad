//! A fake OCI Instance Metadata Service (IMDS v2) for tests and the demo.
//!
//! Faithful where our client depends on it: v2 paths under `/opc/v2/`,
//! `401` for v2 calls without `Authorization: Bearer Oracle`, `403` for
//! requests carrying forwarding headers, `404` for v1 (legacy endpoints
//! disabled), trailing-slash-insensitive paths, and sub-key paths such as
//! `/opc/v2/instance/region`. Faults are scripted per request (throttling
//! with HTML bodies as seen in the wild, 5xx, 404 update windows, garbage
//! JSON, latency) and every request is logged with its auth header.
//!
//! Instance-principal material is served at `/opc/v2/identity/{cert,key,
//! intermediate}.pem` (checked-in test certificates whose subject names
//! [`IDENTITY_TENANCY`]; [`FakeImds::rotate_identity`] switches to a second
//! leaf, as OCI rotates them), and the VNIC list can follow a live source
//! such as [`crate::oci::FakeOci::imds_source`].
//!
//! The server runs on its own thread with a current-thread runtime, so
//! blocking tests (our IMDS client is blocking) can use it directly.

use std::collections::VecDeque;
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use axum::Router;

use crate::serve::ServerThread;
use serde_json::Value;

/// The HTML body OCI's front end sends with a 429 (observed in practice).
pub const THROTTLED_HTML: &str = "<html>\r\n<head><title>429 Too Many Requests</title></head>\r\n<body>\r\n<center><h1>429 Too Many Requests</h1></center>\r\n</body>\r\n</html>\r\n";

/// Tenancy named by the fake identity certificates' `opc-tenant:` subject.
pub const IDENTITY_TENANCY: &str = "ocid1.tenancy.oc1..faketenancy";

/// The two leaf certificates/keys (the second is the "rotated" one) and
/// their intermediate.
const IDENTITY: [(&str, &str); 2] = [
    (
        include_str!("../fixtures/identity/cert1.pem"),
        include_str!("../fixtures/identity/key1.pem"),
    ),
    (
        include_str!("../fixtures/identity/cert2.pem"),
        include_str!("../fixtures/identity/key2.pem"),
    ),
];
const INTERMEDIATE: &str = include_str!("../fixtures/identity/intermediate.pem");

/// A live `/opc/v2/vnics/` provider.
pub type VnicSource = Arc<dyn Fn() -> Value + Send + Sync>;

/// One scripted misbehaviour, consumed by the next authorised v2 request.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// Answer with this status and a short JSON error body.
    Status(u16),
    /// Answer with this status and an HTML page (like OCI's throttling page).
    HtmlStatus(u16),
    /// Answer 200 with a body that is not JSON.
    GarbageJson,
    /// Wait this long, then answer normally.
    Delay(Duration),
}

/// One request as the fake saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    /// HTTP method.
    pub method: String,
    /// Path without query.
    pub path: String,
    /// The `Authorization` header, if sent.
    pub authorization: Option<String>,
    /// Status the fake answered with.
    pub status: u16,
}

struct State {
    vnics: Value,
    vnic_source: Option<VnicSource>,
    identity: usize,
    instance: Value,
    faults: VecDeque<Fault>,
    latency: Duration,
    log: Vec<RequestRecord>,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("vnics", &self.vnics)
            .field("live_vnics", &self.vnic_source.is_some())
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

type Shared = Arc<Mutex<State>>;

fn lock(shared: &Shared) -> MutexGuard<'_, State> {
    // A panicking test thread must not wedge the fake for the others.
    shared.lock().unwrap_or_else(|p| p.into_inner())
}

/// A running fake IMDS; stops when dropped.
#[derive(Debug)]
pub struct FakeImds {
    addr: SocketAddr,
    shared: Shared,
    _server: ServerThread,
}

impl FakeImds {
    /// Serves `vnics` (the `/opc/v2/vnics/` array) on `127.0.0.1:<free port>`.
    pub fn start(vnics: Value) -> std::io::Result<Self> {
        Self::start_on("127.0.0.1:0".parse().map_err(std::io::Error::other)?, vnics)
    }

    /// Serves on `addr`, e.g. `169.254.169.254:80` inside a test namespace.
    pub fn start_on(addr: SocketAddr, vnics: Value) -> std::io::Result<Self> {
        Self::start_with_listener(TcpListener::bind(addr)?, vnics)
    }

    /// Serves on an already bound listener. A socket belongs to the network
    /// namespace it was created in, so a test can bind inside its namespace
    /// and hand the listener over.
    pub fn start_with_listener(listener: TcpListener, vnics: Value) -> std::io::Result<Self> {
        let addr = listener.local_addr()?;
        let shared: Shared = Arc::new(Mutex::new(State {
            vnics,
            vnic_source: None,
            identity: 0,
            instance: default_instance(),
            faults: VecDeque::new(),
            latency: Duration::ZERO,
            log: Vec::new(),
        }));
        let app_state = shared.clone();
        let server = ServerThread::spawn(format!("fake-imds-{addr}"), listener, move |l| {
            let app = Router::new().fallback(move |m, u, h| handle(app_state.clone(), m, u, h));
            axum::serve(l, app)
        })?;
        Ok(Self {
            addr,
            shared,
            _server: server,
        })
    }

    /// Bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Base URL for a client (`http://127.0.0.1:PORT`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Replaces the VNIC list.
    pub fn set_vnics(&self, vnics: Value) {
        lock(&self.shared).vnics = vnics;
    }

    /// Serves `/opc/v2/vnics/` from `source` on every request from now on
    /// (e.g. the VNICs a [`crate::oci::FakeOci`] attached to this instance).
    pub fn set_vnic_source(&self, source: impl Fn() -> Value + Send + Sync + 'static) {
        lock(&self.shared).vnic_source = Some(Arc::new(source));
    }

    /// Serves the second identity certificate and key from now on.
    pub fn rotate_identity(&self) {
        let mut s = lock(&self.shared);
        s.identity = (s.identity + 1) % IDENTITY.len();
    }

    /// Replaces the instance document.
    pub fn set_instance(&self, instance: Value) {
        lock(&self.shared).instance = instance;
    }

    /// Queues `count` copies of `fault` for the next authorised requests.
    pub fn push_faults(&self, count: usize, fault: Fault) {
        let mut s = lock(&self.shared);
        s.faults.extend(std::iter::repeat_n(fault, count));
    }

    /// Delays every answer by `latency`.
    pub fn set_latency(&self, latency: Duration) {
        lock(&self.shared).latency = latency;
    }

    /// Requests seen so far, oldest first.
    pub fn requests(&self) -> Vec<RequestRecord> {
        lock(&self.shared).log.clone()
    }

    /// Number of requests seen so far.
    pub fn request_count(&self) -> usize {
        lock(&self.shared).log.len()
    }
}

/// An instance document shaped like a real VM's `/opc/v2/instance/`.
pub fn default_instance() -> Value {
    serde_json::json!({
        "availabilityDomain": "Uocm:PHX-AD-1",
        "faultDomain": "FAULT-DOMAIN-2",
        "compartmentId": "ocid1.compartment.oc1..fakecompartment",
        "displayName": "plexus-node-1",
        "hostname": "plexus-node-1",
        "id": "ocid1.instance.oc1.phx.fakeinstance",
        "image": "ocid1.image.oc1.phx.fakeimage",
        "region": "phx",
        "canonicalRegionName": "us-phoenix-1",
        "ociAdName": "phx-ad-1",
        "regionInfo": {
            "realmKey": "oc1",
            "realmDomainComponent": "oraclecloud.com",
            "regionKey": "PHX",
            "regionIdentifier": "us-phoenix-1"
        },
        "shape": "VM.Standard.E4.Flex",
        "state": "Running",
        "timeCreated": 1_700_000_000_000u64,
        "shapeConfig": {
            "ocpus": 2.0,
            "memoryInGBs": 32.0,
            "networkingBandwidthInGbps": 2.0,
            "maxVnicAttachments": 2
        },
        "metadata": {}
    })
}

async fn handle(shared: Shared, method: Method, uri: Uri, headers: HeaderMap) -> Response {
    let path = uri.path().to_string();
    let authorization = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let live = lock(&shared).vnic_source.clone();
    if let Some(source) = live {
        // Called outside the lock: a source may block (an HTTP poll).
        let vnics = tokio::task::spawn_blocking(move || source())
            .await
            .unwrap_or(Value::Null);
        lock(&shared).vnics = vnics;
    }
    let (latency, fault, plan) = {
        let mut s = lock(&shared);
        let plan = plan(&s, &method, &path, authorization.as_deref(), &headers);
        let fault = if plan.0 == StatusCode::OK {
            s.faults.pop_front()
        } else {
            None
        };
        (s.latency, fault, plan)
    };
    let (status, content_type, body) = match fault {
        Some(Fault::Status(code)) => (
            code,
            "application/json",
            format!(r#"{{"code":"Fault","message":"scripted status {code}"}}"#),
        ),
        Some(Fault::HtmlStatus(code)) => (code, "text/html", html_page(code)),
        Some(Fault::GarbageJson) => (200, "application/json", "{\"vnicId\": [oops".to_string()),
        Some(Fault::Delay(d)) => {
            tokio::time::sleep(d).await;
            (plan.0.as_u16(), plan.1, plan.2)
        }
        None => (plan.0.as_u16(), plan.1, plan.2),
    };
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    lock(&shared).log.push(RequestRecord {
        method: method.to_string(),
        path,
        authorization,
        status,
    });
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(Body::from(body))
        .unwrap_or_else(|_| Response::new(Body::empty()))
}

/// The answer without faults: routing and auth like OCI.
fn plan(
    s: &State,
    method: &Method,
    path: &str,
    auth: Option<&str>,
    headers: &HeaderMap,
) -> (StatusCode, &'static str, String) {
    let forwarded = ["forwarded", "x-forwarded-for", "x-forwarded-host"]
        .iter()
        .any(|h| headers.contains_key(*h));
    if forwarded {
        return (StatusCode::FORBIDDEN, "text/html", html_page(403));
    }
    let Some(rest) = path.strip_prefix("/opc/v2/") else {
        // Legacy v1 endpoints disabled, as on hardened instances.
        return (StatusCode::NOT_FOUND, "text/html", html_page(404));
    };
    if auth != Some("Bearer Oracle") {
        return (StatusCode::UNAUTHORIZED, "text/html", html_page(401));
    }
    if method != Method::GET {
        return (StatusCode::METHOD_NOT_ALLOWED, "text/html", html_page(405));
    }
    let mut parts = rest.split('/').filter(|p| !p.is_empty());
    let root = match parts.next() {
        Some("identity") => {
            let (cert, key) = IDENTITY[s.identity];
            let pem = match parts.next() {
                Some("cert.pem") => cert,
                Some("key.pem") => key,
                Some("intermediate.pem") => INTERMEDIATE,
                _ => return (StatusCode::NOT_FOUND, "text/html", html_page(404)),
            };
            return (StatusCode::OK, "text/plain", pem.to_owned());
        }
        Some("vnics") => &s.vnics,
        Some("instance") => &s.instance,
        _ => return (StatusCode::NOT_FOUND, "text/html", html_page(404)),
    };
    let mut node = root;
    for key in parts {
        let next = match node {
            Value::Object(map) => map.get(key),
            Value::Array(items) => key.parse::<usize>().ok().and_then(|i| items.get(i)),
            _ => None,
        };
        match next {
            Some(n) => node = n,
            None => return (StatusCode::NOT_FOUND, "text/html", html_page(404)),
        }
    }
    match node {
        // Scalar string keys come back as plain text, like OCI.
        Value::String(text) => (StatusCode::OK, "text/plain", text.clone()),
        other => (
            StatusCode::OK,
            "application/json",
            serde_json::to_string_pretty(other).unwrap_or_default(),
        ),
    }
}

fn html_page(code: u16) -> String {
    let reason = StatusCode::from_u16(code)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Error");
    if code == 429 {
        return THROTTLED_HTML.to_string();
    }
    format!(
        "<html>\r\n<head><title>{code} {reason}</title></head>\r\n<body>\r\n<center><h1>{code} {reason}</h1></center>\r\n</body>\r\n</html>\r\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    fn get(addr: SocketAddr, path: &str, auth: bool) -> (u16, String) {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        let auth = if auth {
            "Authorization: Bearer Oracle\r\n"
        } else {
            ""
        };
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n"
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        let status = out[9..12].parse().unwrap();
        let body = out
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap();
        (status, body)
    }

    #[test]
    fn routes_auth_subkeys_and_faults() {
        let fake = FakeImds::start(serde_json::json!([{"vnicId": "a"}])).unwrap();
        assert_eq!(get(fake.addr(), "/opc/v2/vnics/", false).0, 401);
        assert_eq!(get(fake.addr(), "/opc/v1/vnics/", true).0, 404);
        let (status, body) = get(fake.addr(), "/opc/v2/vnics", true);
        assert_eq!(status, 200);
        assert!(body.contains("\"vnicId\""), "{body}");
        assert_eq!(
            get(fake.addr(), "/opc/v2/instance/region", true),
            (200, "phx".into())
        );
        assert_eq!(get(fake.addr(), "/opc/v2/instance/nope", true).0, 404);
        fake.push_faults(1, Fault::HtmlStatus(429));
        let (status, body) = get(fake.addr(), "/opc/v2/vnics/", true);
        assert_eq!((status, body.as_str()), (429, THROTTLED_HTML));
        assert_eq!(get(fake.addr(), "/opc/v2/vnics/", true).0, 200);
        let log = fake.requests();
        assert_eq!(log.len(), 7);
        assert_eq!(log[0].authorization, None);
        assert_eq!(log[2].authorization.as_deref(), Some("Bearer Oracle"));
        assert_eq!(log[5].status, 429);
    }
}
