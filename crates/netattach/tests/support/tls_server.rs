//! A TLS API-server stand-in on loopback that speaks HTTP/2 (or only
//! HTTP/1.1, chosen in ALPN) and counts what a client does to it: TLS
//! handshakes, which protocol each chose, streams in flight at once, and
//! every request with its headers and body. Fixtures in `tests/fixtures/tls`.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns panic by design
#![allow(dead_code)] // each test file uses part of it

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/tls")
        .join(name)
}

pub fn pem(name: &str) -> Vec<u8> {
    std::fs::read(fixture(name)).unwrap()
}

/// How the server behaves.
#[derive(Debug, Clone, Copy)]
pub struct Behaviour {
    /// Offer `h2` in ALPN (else only `http/1.1`).
    pub h2: bool,
    /// Every answer waits this long (overlapping requests overlap).
    pub delay: Duration,
    /// Close the connection on the first request instead of answering.
    pub drop_first: bool,
    /// HTTP/2: send GOAWAY (graceful) after the first request on each
    /// connection, as kube-apiserver's `--goaway-chance` does.
    pub goaway: bool,
}

impl Default for Behaviour {
    fn default() -> Self {
        Self {
            h2: true,
            delay: Duration::ZERO,
            drop_first: false,
            goaway: false,
        }
    }
}

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub version: &'static str,
    pub method: String,
    pub path: String,
    pub headers: BTreeMap<String, String>,
    pub body: String,
}

/// What the server counted.
#[derive(Debug, Default)]
pub struct Counts {
    pub handshakes: AtomicUsize,
    pub h2_connections: AtomicUsize,
    pub client_certs: AtomicUsize,
    in_flight: AtomicUsize,
    pub max_in_flight: AtomicUsize,
    pub requests: Mutex<Vec<Seen>>,
    busy_answered: AtomicBool,
    dropped: AtomicBool,
}

impl Counts {
    pub fn handshakes(&self) -> usize {
        self.handshakes.load(Ordering::SeqCst)
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.requests.lock().unwrap().clone()
    }
}

/// Serves until dropped.
pub struct TlsServer {
    pub addr: SocketAddr,
    pub counts: Arc<Counts>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

/// The server side of the fixtures: `server.pem` for 127.0.0.1, client
/// certificates from `ca.pem` accepted but not required, ALPN `h2` (when
/// `h2`) and `http/1.1`.
pub fn server_config(h2: bool) -> Arc<rustls::ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut &pem("ca.pem")[..]) {
        roots.add(c.unwrap()).unwrap();
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .allow_unauthenticated()
    .build()
    .unwrap();
    let certs = rustls_pemfile::certs(&mut &pem("server.pem")[..])
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = rustls_pemfile::private_key(&mut &pem("server.key")[..])
        .unwrap()
        .unwrap();
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .unwrap();
    config.alpn_protocols = if h2 {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    Arc::new(config)
}

impl TlsServer {
    pub fn start(behaviour: Behaviour) -> Self {
        let acceptor = tokio_rustls::TlsAcceptor::from(server_config(behaviour.h2));
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        std_listener.set_nonblocking(true).unwrap();
        let addr = std_listener.local_addr().unwrap();
        let counts = Arc::new(Counts::default());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let c = counts.clone();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let thread = std::thread::spawn(move || {
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(std_listener).unwrap();
                let accept = async {
                    loop {
                        let Ok((tcp, _)) = listener.accept().await else {
                            continue;
                        };
                        let (acceptor, c) = (acceptor.clone(), c.clone());
                        tokio::spawn(async move {
                            let Ok(tls) = acceptor.accept(tcp).await else {
                                return;
                            };
                            connection(tls, c, behaviour).await;
                        });
                    }
                };
                tokio::select! {
                    () = accept => {}
                    _ = stopped => {}
                }
            });
        });
        Self {
            addr,
            counts,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.addr.port())
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn connection(tls: TlsStream<TcpStream>, counts: Arc<Counts>, b: Behaviour) {
    counts.handshakes.fetch_add(1, Ordering::SeqCst);
    let (_, session) = tls.get_ref();
    if session.peer_certificates().is_some() {
        counts.client_certs.fetch_add(1, Ordering::SeqCst);
    }
    if session.alpn_protocol() == Some(b"h2") {
        counts.h2_connections.fetch_add(1, Ordering::SeqCst);
        serve_h2(tls, counts, b).await;
    } else {
        serve_http1(tls, counts, b).await;
    }
}

async fn serve_h2(tls: TlsStream<TcpStream>, counts: Arc<Counts>, b: Behaviour) {
    let Ok(mut conn) = h2::server::handshake(tls).await else {
        return;
    };
    while let Some(Ok((req, mut respond))) = conn.accept().await {
        if b.drop_first && !counts.dropped.swap(true, Ordering::SeqCst) {
            return; // drops the TCP connection mid-request
        }
        if b.goaway {
            conn.graceful_shutdown();
        }
        let counts = counts.clone();
        tokio::spawn(async move {
            let (parts, mut recv) = req.into_parts();
            let mut body = Vec::new();
            while let Some(Ok(chunk)) = recv.data().await {
                let _ = recv.flow_control().release_capacity(chunk.len());
                body.extend_from_slice(&chunk);
            }
            let seen = Seen {
                version: "HTTP/2",
                method: parts.method.to_string(),
                path: parts.uri.path().to_owned(),
                headers: parts
                    .headers
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned()))
                    .collect(),
                body: String::from_utf8_lossy(&body).into_owned(),
            };
            let (status, retry_after, text) = answer(&counts, seen, b.delay).await;
            let mut resp = http::Response::builder()
                .status(status)
                .header("content-type", "application/json");
            if let Some(r) = retry_after {
                resp = resp.header("retry-after", r);
            }
            let Ok(mut send) = respond.send_response(resp.body(()).unwrap(), false) else {
                return;
            };
            let _ = send.send_data(Bytes::from(text), true);
        });
    }
}

async fn serve_http1(tls: TlsStream<TcpStream>, counts: Arc<Counts>, b: Behaviour) {
    let mut io = BufReader::new(tls);
    loop {
        let mut line = String::new();
        if io.read_line(&mut line).await.unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let (method, path) = (
            parts.next().unwrap_or("").to_owned(),
            parts.next().unwrap_or("").to_owned(),
        );
        let mut headers = BTreeMap::new();
        loop {
            let mut h = String::new();
            if io.read_line(&mut h).await.unwrap_or(0) == 0 {
                return;
            }
            let Some((k, v)) = h.trim_end().split_once(':') else {
                break;
            };
            headers.insert(k.to_ascii_lowercase(), v.trim().to_owned());
        }
        let len = headers
            .get("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; len];
        if io.read_exact(&mut body).await.is_err() {
            return;
        }
        if b.drop_first && !counts.dropped.swap(true, Ordering::SeqCst) {
            return;
        }
        let seen = Seen {
            version: "HTTP/1.1",
            method,
            path,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        };
        let (status, retry_after, text) = answer(&counts, seen, b.delay).await;
        let extra = retry_after
            .map(|r| format!("Retry-After: {r}\r\n"))
            .unwrap_or_default();
        let head = format!(
            "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{extra}\r\n",
            text.len()
        );
        let out = io.get_mut();
        if out.write_all(head.as_bytes()).await.is_err()
            || out.write_all(text.as_bytes()).await.is_err()
        {
            return;
        }
        let _ = out.flush().await;
    }
}

/// Records `seen` and answers after `delay`: a canned pod, a `Status` 404
/// for names ending in `missing`, and one 429 for names ending in `busy`.
async fn answer(
    counts: &Counts,
    seen: Seen,
    delay: Duration,
) -> (u16, Option<&'static str>, String) {
    let path = seen.path.clone();
    counts.requests.lock().unwrap().push(seen);
    let now = counts.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    counts.max_in_flight.fetch_max(now, Ordering::SeqCst);
    tokio::time::sleep(delay).await;
    counts.in_flight.fetch_sub(1, Ordering::SeqCst);
    if path.ends_with("missing") {
        let status = r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"pods \"missing\" not found","reason":"NotFound","details":{"name":"missing","kind":"pods"},"code":404}"#;
        return (404, None, status.to_owned());
    }
    if path.ends_with("busy") && !counts.busy_answered.swap(true, Ordering::SeqCst) {
        let status = r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"too many requests","reason":"TooManyRequests","code":429}"#;
        return (429, Some("0"), status.to_owned());
    }
    if path.contains("/network-attachment-definitions/") {
        let nad = r#"{"apiVersion":"k8s.cni.cncf.io/v1","kind":"NetworkAttachmentDefinition","metadata":{"name":"n","namespace":"default"},"spec":{"config":"{\"cniVersion\":\"0.3.1\",\"type\":\"host-device\",\"device\":\"ens5\"}"}}"#;
        return (200, None, nad.to_owned());
    }
    let pod = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","namespace":"default","uid":"u-h2"}}"#;
    (200, None, pod.to_owned())
}
