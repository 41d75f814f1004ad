//! The rustls client configs for an `https` API server, built from the
//! kubeconfig: its CA (and only it), a client certificate, or
//! `insecure-skip-tls-verify`. One owner for the HTTP/1.1 (ureq) and the
//! HTTP/2 transport, which differ only in the ALPN offer.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::DigitallySignedStruct;

use crate::api::ApiError;
use crate::kubeconfig::ClientConfig;

/// ALPN offer of the HTTP/2 transport: h2 first, HTTP/1.1 as the fallback a
/// proxy in front of the API server may insist on.
pub(crate) const ALPN_H2_FIRST: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// The rustls config for an `https` server, or `None` to use ureq's default
/// (web PKI roots, no client certificate).
pub(crate) fn tls_config(
    config: &ClientConfig,
) -> Result<Option<Arc<rustls::ClientConfig>>, ApiError> {
    if config.ca_pem.is_none() && config.identity.is_none() && !config.insecure_skip_tls_verify {
        return Ok(None);
    }
    build(config).map(|c| Some(Arc::new(c)))
}

/// The config of the HTTP/2 transport: as [`tls_config`] (web PKI roots when
/// the kubeconfig names no CA), offering `h2` then `http/1.1`.
pub(crate) fn h2_tls_config(config: &ClientConfig) -> Result<Arc<rustls::ClientConfig>, ApiError> {
    let mut tls = build(config)?;
    tls.alpn_protocols = ALPN_H2_FIRST.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(tls))
}

fn cfg_err(what: &str, e: &dyn std::fmt::Display) -> ApiError {
    ApiError::Config(format!("{what}: {e}"))
}

fn build(config: &ClientConfig) -> Result<rustls::ClientConfig, ApiError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| cfg_err("TLS versions", &e))?;
    let builder = if config.insecure_skip_tls_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
    } else {
        builder.with_root_certificates(roots(config)?)
    };
    match &config.identity {
        Some(id) => {
            let certs = rustls_pemfile::certs(&mut &id.cert_pem[..])
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| cfg_err("client-certificate", &e))?;
            let key = rustls_pemfile::private_key(&mut &id.key_pem[..])
                .map_err(|e| cfg_err("client-key", &e))?
                .ok_or_else(|| ApiError::Config("client-key holds no PEM private key".into()))?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| cfg_err("client certificate", &e))
        }
        None => Ok(builder.with_no_client_auth()),
    }
}

/// The kubeconfig CA; web PKI roots when it names none and presents no
/// client certificate (a public endpoint, as ureq's default).
fn roots(config: &ClientConfig) -> Result<rustls::RootCertStore, ApiError> {
    let Some(pem) = config.ca_pem.as_deref() else {
        if config.identity.is_some() {
            return Err(ApiError::Config(
                "a client certificate needs certificate-authority(-data)".into(),
            ));
        }
        return Ok(rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        });
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut &pem[..]) {
        let cert = cert.map_err(|e| cfg_err("certificate-authority", &e))?;
        roots
            .add(cert)
            .map_err(|e| cfg_err("certificate-authority", &e))?;
    }
    if roots.is_empty() {
        return Err(ApiError::Config(
            "certificate-authority holds no PEM certificate".into(),
        ));
    }
    Ok(roots)
}

/// `insecure-skip-tls-verify`: accept any server certificate but still check
/// handshake signatures (so the session keys are the server's).
#[derive(Debug)]
struct NoVerify(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> ClientConfig {
        ClientConfig {
            server: "https://198.51.100.1:6443".into(),
            ca_pem: None,
            insecure_skip_tls_verify: false,
            tls_server_name: None,
            token: None,
            identity: None,
            namespace: None,
        }
    }

    #[test]
    fn tls_config_only_when_needed() {
        let mut cfg = cfg();
        assert!(tls_config(&cfg).unwrap().is_none());
        cfg.insecure_skip_tls_verify = true;
        assert!(tls_config(&cfg).unwrap().is_some());
        cfg.insecure_skip_tls_verify = false;
        cfg.ca_pem = Some(b"not pem".to_vec());
        assert!(matches!(tls_config(&cfg), Err(ApiError::Config(m)) if m.contains("no PEM")));
    }

    #[test]
    fn h2_config_offers_h2_then_http1_and_has_roots_without_a_ca() {
        let tls = h2_tls_config(&cfg()).unwrap();
        assert_eq!(tls.alpn_protocols, [b"h2".to_vec(), b"http/1.1".to_vec()]);
        let mut bad = cfg();
        bad.ca_pem = Some(b"not pem".to_vec());
        assert!(matches!(h2_tls_config(&bad), Err(ApiError::Config(_))));
    }
}
