//! TLS for the fakes, as a cluster has it: a CA made for the test (its PEM is
//! what a kubeconfig's `certificate-authority-data` or a projected
//! `ca.crt` carries), a serving certificate it signs for the addresses the
//! test names, and the accept loop that serves an axum router over plain TCP
//! or TLS with ALPN `h2` / `http/1.1` — kube-apiserver offers both, and a
//! client that negotiates h2 multiplexes its requests on one connection.
//!
//! Every accepted connection is logged ([`ConnLog`]) so a test can count TLS
//! handshakes and see the negotiated protocol.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose, SanType};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// What went wrong making or loading test certificates.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("generating a test certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("loading PEM: {0}")]
    Pem(String),
    #[error("TLS server config: {0}")]
    Config(#[from] rustls::Error),
}

/// A serving certificate and its key, PEM encoded, as kube-apiserver's
/// `--tls-cert-file` / `--tls-private-key-file` take them.
#[derive(Debug, Clone)]
pub struct ServingCert {
    pub cert_pem: String,
    pub key_pem: String,
    /// Offer only `http/1.1` in ALPN, as a proxy in front of the API server
    /// may: clients that prefer h2 must fall back.
    pub http1_only: bool,
}

impl ServingCert {
    /// The rustls server config: this certificate, ALPN `h2` then
    /// `http/1.1` (the API server's order), or only `http/1.1`.
    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        let certs = CertificateDer::pem_slice_iter(self.cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| TlsError::Pem(e.to_string()))?;
        let key = PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes())
            .map_err(|e| TlsError::Pem(e.to_string()))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(certs, key)?;
        config.alpn_protocols = if self.http1_only {
            vec![b"http/1.1".to_vec()]
        } else {
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        };
        Ok(Arc::new(config))
    }
}

/// A certificate authority made for one test run.
pub struct TestCa {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCa").finish_non_exhaustive()
    }
}

impl TestCa {
    /// A new CA (ECDSA P-256, as kubeadm's defaults are not: the key type
    /// does not matter to the clients, and P-256 is fast to make).
    pub fn new() -> Result<Self, TlsError> {
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, "plexus-test-ca");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate()?;
        let cert = params.self_signed(&key)?;
        Ok(Self { cert, key })
    }

    /// The CA certificate, PEM: the `ca.crt` clients trust.
    pub fn cert_pem(&self) -> String {
        self.cert.pem()
    }

    /// A serving certificate for `ips` and `dns` names, signed by this CA.
    pub fn serving_cert(&self, ips: &[IpAddr], dns: &[&str]) -> Result<ServingCert, TlsError> {
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, "kube-apiserver");
        params.subject_alt_names = ips.iter().map(|ip| SanType::IpAddress(*ip)).collect();
        for name in dns {
            params
                .subject_alt_names
                .push(SanType::DnsName((*name).try_into()?));
        }
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.cert, &self.key)?;
        Ok(ServingCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            http1_only: false,
        })
    }

    /// A serving certificate for loopback (`127.0.0.1`, `::1`, `localhost`).
    pub fn loopback_cert(&self) -> Result<ServingCert, TlsError> {
        let ips = [
            IpAddr::from([127, 0, 0, 1]),
            IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1]),
        ];
        self.serving_cert(&ips, &["localhost"])
    }
}

/// One accepted connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    /// A TLS handshake completed on it.
    pub tls: bool,
    /// The ALPN protocol negotiated (`h2`, `http/1.1`), if any.
    pub alpn: Option<String>,
}

/// The connections a server accepted, in order.
pub type ConnLog = Arc<Mutex<Vec<Connection>>>;

/// Serves `app` on `listener` until the future is dropped: HTTP/1.1 and
/// HTTP/2 (prior knowledge) on plain TCP, or TLS with ALPN when `tls` is
/// set, each handshake delayed by what `handshake_delay` says at the time.
/// Accepted sockets get `TCP_NODELAY`.
pub(crate) async fn serve_router(
    listener: tokio::net::TcpListener,
    app: Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    log: ConnLog,
    handshake_delay: impl Fn() -> Duration + Clone + Send + 'static,
) -> std::io::Result<()> {
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    loop {
        let (tcp, _) = listener.accept().await?;
        let _ = tcp.set_nodelay(true);
        let app = app.clone();
        let acceptor = acceptor.clone();
        let log = log.clone();
        let delay = handshake_delay.clone();
        tokio::spawn(async move {
            let service = TowerToHyperService::new(app);
            let builder = auto::Builder::new(TokioExecutor::new());
            let Some(acceptor) = acceptor else {
                record(&log, false, None);
                let _ = builder.serve_connection(TokioIo::new(tcp), service).await;
                return;
            };
            let delay = delay();
            if !delay.is_zero() {
                crate::kube::latency::precise_sleep(delay).await;
            }
            // A failed handshake (a client that distrusts the CA) is the
            // client's error to report; the server just drops it.
            let Ok(stream) = acceptor.accept(tcp).await else {
                return;
            };
            let alpn = stream
                .get_ref()
                .1
                .alpn_protocol()
                .map(|p| String::from_utf8_lossy(p).into_owned());
            record(&log, true, alpn);
            let _ = builder
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn record(log: &ConnLog, tls: bool, alpn: Option<String>) {
    log.lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(Connection { tls, alpn });
}
