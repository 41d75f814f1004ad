//! The fake API server over TLS, as kube-apiserver serves: a certificate
//! from the test CA, ALPN `h2` and `http/1.1`, every handshake logged. An
//! h2 client multiplexes concurrent requests on one connection; a client
//! that trusts another CA gets no answer.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns panic by design

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use plexus_testkit::kube::{FakeApiServer, Options};
use plexus_testkit::tls::{Connection, TestCa};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{json, Value};

fn pod(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": name, "namespace": "default"}, "spec": {}})
}

fn start(ca: &TestCa) -> FakeApiServer {
    FakeApiServer::start_with(Options {
        token: Some("t0k".into()),
        seed: vec![pod("a"), pod("b"), pod("c")],
        tls: Some(ca.loopback_cert().unwrap()),
    })
    .unwrap()
}

fn client_config(ca_pem: &str, alpn: &[&str]) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    Arc::new(config)
}

/// One HTTP/1.1 GET over a blocking rustls stream; the raw answer.
fn get_http1(
    addr: impl std::net::ToSocketAddrs,
    config: Arc<rustls::ClientConfig>,
    path: &str,
) -> std::io::Result<String> {
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let conn = rustls::ClientConnection::new(config, name).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, TcpStream::connect(addr)?);
    let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nAuthorization: Bearer t0k\r\n\r\n");
    tls.write_all(req.as_bytes())?;
    let mut out = String::new();
    tls.read_to_string(&mut out)?;
    Ok(out)
}

#[test]
fn https_http1_with_the_test_ca() {
    let ca = TestCa::new().unwrap();
    let srv = start(&ca);
    assert!(srv.url().starts_with("https://127.0.0.1:"), "{}", srv.url());
    let out = get_http1(
        srv.addr(),
        client_config(&ca.cert_pem(), &["http/1.1"]),
        "/api/v1/namespaces/default/pods/a",
    )
    .unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(out.contains("\"name\":\"a\""), "{out}");
    assert_eq!(
        srv.connections(),
        vec![Connection {
            tls: true,
            alpn: Some("http/1.1".into())
        }]
    );
}

#[test]
fn the_binary_serves_https_with_kube_apiservers_flags() {
    let ca = TestCa::new().unwrap();
    let cert = ca.loopback_cert().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (crt, key, port_file) = (
        dir.path().join("tls.crt"),
        dir.path().join("tls.key"),
        dir.path().join("port"),
    );
    std::fs::write(&crt, &cert.cert_pem).unwrap();
    std::fs::write(&key, &cert.key_pem).unwrap();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_fake-kube-apiserver"))
        .args(["--listen", "127.0.0.1:0", "--token", "t0k", "--port-file"])
        .arg(&port_file)
        .arg("--tls-cert-file")
        .arg(&crt)
        .arg("--tls-private-key-file")
        .arg(&key)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _guard = Kill(child);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !port_file.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "port file never appeared"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let addr = std::fs::read_to_string(&port_file).unwrap();
    let out = get_http1(
        addr.trim(),
        client_config(&ca.cert_pem(), &["http/1.1"]),
        "/api/v1/namespaces/default/pods/none",
    )
    .unwrap();
    assert!(out.starts_with("HTTP/1.1 404"), "{out}");
}

#[test]
fn a_client_trusting_another_ca_gets_no_answer() {
    let ca = TestCa::new().unwrap();
    let other = TestCa::new().unwrap();
    let srv = start(&ca);
    let err = get_http1(
        srv.addr(),
        client_config(&other.cert_pem(), &[]),
        "/api/v1/namespaces/default/pods/a",
    )
    .unwrap_err();
    assert!(err.to_string().contains("certificate"), "{err}");
    assert!(srv.requests().is_empty());
}

#[test]
fn h2_streams_share_one_connection() {
    let ca = TestCa::new().unwrap();
    let srv = start(&ca);
    let addr = srv.addr();
    let config = client_config(&ca.cert_pem(), &["h2", "http/1.1"]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let codes = rt.block_on(async move {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let name = ServerName::try_from("127.0.0.1").unwrap();
        let tls = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .unwrap();
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        let io = hyper_util::rt::TokioIo::new(tls);
        let (send, conn) =
            hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io)
                .await
                .unwrap();
        tokio::spawn(conn);
        let calls = ["a", "b", "c", "missing"].map(|name| {
            let mut send = send.clone();
            async move {
                let req = hyper::Request::get(format!(
                    "https://127.0.0.1/api/v1/namespaces/default/pods/{name}"
                ))
                .header("authorization", "Bearer t0k")
                .body(Empty::<Bytes>::new())
                .unwrap();
                let resp = send.send_request(req).await.unwrap();
                assert_eq!(resp.version(), hyper::Version::HTTP_2);
                let code = resp.status().as_u16();
                let body = resp.into_body().collect().await.unwrap().to_bytes();
                let body: Value = serde_json::from_slice(&body).unwrap();
                (code, body)
            }
        });
        let [a, b, c, d] = calls;
        let (a, b, c, d) = tokio::join!(a, b, c, d);
        vec![a, b, c, d]
    });
    assert_eq!(codes[0].0, 200);
    assert_eq!(codes[2].1["metadata"]["name"], "c");
    assert_eq!(codes[3].0, 404);
    assert_eq!(codes[3].1["reason"], "NotFound");
    assert_eq!(
        srv.connections(),
        vec![Connection {
            tls: true,
            alpn: Some("h2".into())
        }]
    );
    assert_eq!(srv.requests().len(), 4);
}
