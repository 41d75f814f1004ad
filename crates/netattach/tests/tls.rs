//! HTTPS to an API server: the kubeconfig CA is trusted (and only it), a
//! client certificate is presented when configured, and
//! `insecure-skip-tls-verify` accepts an unknown CA. A small blocking rustls
//! server on loopback stands in for the API server (fixtures in
//! `tests/fixtures/tls`).

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns panic by design

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

#[path = "support/tls_server.rs"]
mod tls_server;
use tls_server::{fixture, pem};

use plexus_netattach::{ApiError, ClientConfig, HttpPodApi, PodApi, RetryPolicy};

/// Serves one canned pod over TLS until dropped; records whether each
/// connection presented a client certificate.
struct TlsServer {
    addr: std::net::SocketAddr,
    stop: Arc<AtomicBool>,
    client_certs: Arc<Mutex<Vec<bool>>>,
    thread: Option<JoinHandle<()>>,
}

impl TlsServer {
    fn start() -> Self {
        let config = tls_server::server_config(false);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let client_certs = Arc::new(Mutex::new(Vec::new()));
        let (stop2, seen) = (stop.clone(), client_certs.clone());
        let thread = std::thread::spawn(move || {
            for tcp in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(tcp) = tcp else { continue };
                let _ = serve_one(&config, tcp, &seen);
            }
        });
        Self {
            addr,
            stop,
            client_certs,
            thread: Some(thread),
        }
    }

    fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.addr.port())
    }
}

fn serve_one(
    config: &Arc<rustls::ServerConfig>,
    tcp: TcpStream,
    seen: &Mutex<Vec<bool>>,
) -> std::io::Result<()> {
    tcp.set_read_timeout(Some(Duration::from_secs(5)))?;
    let conn = rustls::ServerConnection::new(config.clone()).map_err(std::io::Error::other)?;
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let mut reader = BufReader::new(&mut tls);
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
    }
    drop(reader);
    seen.lock()
        .unwrap()
        .push(tls.conn.peer_certificates().is_some());
    let body = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","namespace":"default","uid":"u-tls"}}"#;
    write!(
        tls,
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    tls.conn.send_close_notify();
    tls.flush()
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn config(server: &TlsServer) -> ClientConfig {
    ClientConfig {
        server: server.url(),
        ca_pem: Some(pem("ca.pem")),
        insecure_skip_tls_verify: false,
        tls_server_name: None,
        token: None,
        identity: None,
        namespace: None,
    }
}

fn api(cfg: ClientConfig) -> HttpPodApi {
    HttpPodApi::new(cfg)
        .with_timeout(Duration::from_secs(5))
        .with_retry(RetryPolicy::none())
}

#[test]
fn kubeconfig_ca_is_trusted() {
    let server = TlsServer::start();
    let pod = api(config(&server)).get_pod("default", "p").unwrap();
    assert_eq!(pod.uid(), "u-tls");
    assert_eq!(*server.client_certs.lock().unwrap(), [false]);
}

#[test]
fn client_certificate_from_kubeconfig_files_is_presented() {
    let server = TlsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    let tls = fixture("");
    let yaml = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {}\n    certificate-authority: {}\nusers:\n- name: node\n  user:\n    client-certificate: {}\n    client-key: {}\ncontexts:\n- name: x\n  context: {{cluster: c, user: node}}\ncurrent-context: x\n",
        server.url(),
        tls.join("ca.pem").display(),
        tls.join("client.pem").display(),
        tls.join("client.key").display(),
    );
    std::fs::write(&kubeconfig, yaml).unwrap();
    let cfg = ClientConfig::from_kubeconfig_file(&kubeconfig).unwrap();
    api(cfg).get_pod("default", "p").unwrap();
    assert_eq!(*server.client_certs.lock().unwrap(), [true]);
}

#[test]
fn an_unrelated_ca_is_rejected_unless_insecure() {
    let server = TlsServer::start();
    let mut cfg = config(&server);
    cfg.ca_pem = Some(pem("other-ca.pem"));
    let err = api(cfg.clone()).get_pod("default", "p").unwrap_err();
    assert!(
        matches!(err, ApiError::Transport(ref m) if m.to_lowercase().contains("certificate")),
        "{err:?}"
    );

    cfg.ca_pem = None;
    cfg.insecure_skip_tls_verify = true;
    assert_eq!(api(cfg).get_pod("default", "p").unwrap().uid(), "u-tls");
}
