//! RSA keys as OCI uses them: PEM private keys (PKCS#1 from IMDS and
//! `openssl genrsa`, PKCS#8 from newer tooling), the public key as SPKI, and
//! the API-key fingerprint (MD5 of the SPKI DER, colon-separated hex).
//! [`Credentials`] pairs a key with its `keyId` and never prints the key.

use std::fmt;
use std::sync::Arc;

use md5::Md5;
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePublicKey, LineEnding};
use rsa::{RsaPrivateKey, RsaPublicKey};
use sha2::Digest;

/// Why a key could not be read.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("encrypted private keys are not supported; decrypt it with `openssl rsa`")]
    Encrypted,
    #[error("not an RSA private key in PEM (PKCS#1 or PKCS#8): {0}")]
    Private(String),
    #[error("not an RSA public key in PEM (SPKI): {0}")]
    Public(String),
}

/// Reads a PEM RSA private key, PKCS#1 or PKCS#8.
pub fn private_key_from_pem(pem: &str) -> Result<RsaPrivateKey, KeyError> {
    if pem.contains("ENCRYPTED") {
        return Err(KeyError::Encrypted);
    }
    if pem.contains("BEGIN RSA PRIVATE KEY") {
        RsaPrivateKey::from_pkcs1_pem(pem).map_err(|e| KeyError::Private(e.to_string()))
    } else {
        RsaPrivateKey::from_pkcs8_pem(pem).map_err(|e| KeyError::Private(e.to_string()))
    }
}

/// Reads a PEM SPKI public key.
pub fn public_key_from_pem(pem: &str) -> Result<RsaPublicKey, KeyError> {
    RsaPublicKey::from_public_key_pem(pem).map_err(|e| KeyError::Public(e.to_string()))
}

/// The public key as SPKI PEM.
pub fn public_key_pem(key: &RsaPublicKey) -> Result<String, KeyError> {
    key.to_public_key_pem(LineEnding::LF)
        .map_err(|e| KeyError::Public(e.to_string()))
}

/// The API-key fingerprint OCI shows in the console:
/// MD5(SPKI DER) as lower-case colon-separated hex.
pub fn fingerprint(key: &RsaPublicKey) -> Result<String, KeyError> {
    let der = key
        .to_public_key_der()
        .map_err(|e| KeyError::Public(e.to_string()))?;
    Ok(colon_hex(&Md5::digest(der.as_bytes())))
}

/// `aa:bb:…` lower-case hex.
pub fn colon_hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// A PEM body without its BEGIN/END lines and newlines, as the federation
/// request carries certificates and keys.
pub fn pem_body(pem: &str) -> String {
    pem.lines()
        .filter(|l| !l.starts_with("-----"))
        .map(str::trim)
        .collect()
}

/// A signing identity: the `keyId` to name and the key to sign with.
#[derive(Clone)]
pub struct Credentials {
    pub key_id: String,
    pub key: Arc<RsaPrivateKey>,
}

impl fmt::Debug for Credentials {
    // A session keyId embeds a bearer token: neither it nor the key is printed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = if self.key_id.starts_with("ST$") {
            "ST$<redacted>"
        } else {
            &self.key_id
        };
        f.debug_struct("Credentials")
            .field("key_id", &shown)
            .field("key", &"<redacted>")
            .finish()
    }
}
