//! Where signing credentials come from: [`CredentialSource`], implemented by
//! API-key config ([`crate::config::ApiKeySource`]) and instance principals
//! ([`InstancePrincipal`], oci.md §3.4).
//!
//! Instance principals: the leaf certificate, its key and the intermediate
//! come from IMDS (`/opc/v2/identity/*.pem`); the tenancy is the leaf
//! subject's `opc-tenant:` value; a fresh RSA-2048 session key is certified
//! by `POST /v1/x509` on the auth service (signed with the leaf key, keyId
//! `<tenancy>/fed-x509-sha256/<cert SHA-256>`), which returns a JWT; API
//! calls then sign with the session key as `ST$<jwt>`. The token is renewed
//! before its `exp`, and each renewal re-reads the certificate, which OCI
//! rotates. Neither the token nor a key is ever logged.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use rsa::{RsaPrivateKey, RsaPublicKey};
use sha2::{Digest, Sha256};
use x509_cert::der::{DecodePem, Encode};
use x509_cert::Certificate;

use crate::http::{self, signed_call};
use crate::keys::{
    colon_hex, pem_body, private_key_from_pem, public_key_pem, Credentials, KeyError,
};
use crate::sign::Scope;

/// Why credentials are unavailable.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("OCI config: {0}")]
    Config(String),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("instance metadata {path}: {message}")]
    Imds { path: String, message: String },
    #[error("identity certificate: {0}")]
    Certificate(String),
    #[error("tenancy changed from {old} to {new} across a certificate rotation")]
    TenancyChanged { old: String, new: String },
    #[error("federation ({status}, opc-request-id {request_id}): {code}: {message}")]
    Federation {
        status: u16,
        code: String,
        message: String,
        request_id: String,
    },
    #[error("federation transport: {0}")]
    Transport(String),
}

/// A source of signing credentials.
pub trait CredentialSource: Send + Sync + std::fmt::Debug {
    /// Credentials valid for at least the next request.
    fn credentials(&self) -> Result<Credentials, AuthError>;
    /// The region identifier, e.g. `us-phoenix-1`.
    fn region(&self) -> Result<String, AuthError>;
    /// Forgets cached session credentials (the service answered 401).
    fn invalidate(&self);
}

/// Identity material as IMDS serves it.
#[derive(Clone)]
pub struct Identity {
    pub cert_pem: String,
    pub key_pem: String,
    pub intermediate_pem: String,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Identity { <redacted> }")
    }
}

/// The leaf certificate's facts the federation needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leaf {
    pub tenancy: String,
    /// SHA-256 of the DER, colon hex.
    pub fingerprint: String,
}

/// Reads the tenancy (`opc-tenant:` or `opc-identity:` subject value) and
/// the SHA-256 fingerprint of a PEM certificate.
pub fn leaf_facts(cert_pem: &str) -> Result<Leaf, AuthError> {
    let cert = Certificate::from_pem(cert_pem.as_bytes())
        .map_err(|e| AuthError::Certificate(e.to_string()))?;
    let der = cert
        .to_der()
        .map_err(|e| AuthError::Certificate(e.to_string()))?;
    let tenancy = cert
        .tbs_certificate
        .subject
        .0
        .iter()
        .flat_map(|rdn| rdn.0.iter())
        .filter_map(|atv| std::str::from_utf8(atv.value.value()).ok())
        .find_map(|v| {
            v.strip_prefix("opc-tenant:")
                .or_else(|| v.strip_prefix("opc-identity:"))
        })
        .ok_or_else(|| AuthError::Certificate("subject names no opc-tenant".into()))?
        .to_owned();
    Ok(Leaf {
        tenancy,
        fingerprint: colon_hex(&Sha256::digest(&der)),
    })
}

/// The `exp` claim of a JWT, without verifying it (the client only needs
/// to know when to renew; the service verifies).
pub fn jwt_expiry(token: &str) -> Option<SystemTime> {
    let payload = token.split('.').nth(1)?;
    let raw = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&raw).ok()?;
    Some(UNIX_EPOCH + Duration::from_secs(claims["exp"].as_u64()?))
}

/// Where the instance principal gets its material and token.
#[derive(Debug, Clone)]
pub struct PrincipalConfig {
    /// IMDS base, `http://169.254.169.254` on OCI.
    pub imds_base: String,
    /// Auth service base; `None` = `https://auth.<region>.<realm domain>`.
    pub auth_base: Option<String>,
    /// Renew this long before `exp`.
    pub refresh_before: Duration,
    pub timeout: Duration,
}

impl Default for PrincipalConfig {
    fn default() -> Self {
        Self {
            imds_base: "http://169.254.169.254".into(),
            auth_base: None,
            refresh_before: Duration::from_secs(300),
            timeout: Duration::from_secs(10),
        }
    }
}

#[derive(Debug)]
struct Session {
    creds: Credentials,
    expires: SystemTime,
    leaf: Leaf,
}

/// Instance-principal credentials (see the module docs).
#[derive(Debug)]
pub struct InstancePrincipal {
    config: PrincipalConfig,
    agent: ureq::Agent,
    session: Mutex<Option<Session>>,
    /// Tenancy of the first certificate; a rotation must not change it.
    tenancy: Mutex<Option<String>>,
}

impl InstancePrincipal {
    pub fn new(config: PrincipalConfig) -> Self {
        Self {
            agent: http::agent(config.timeout),
            config,
            session: Mutex::new(None),
            tenancy: Mutex::new(None),
        }
    }

    /// GET an IMDS v2 path, retrying 404/429/5xx three times as OCI advises.
    fn imds(&self, path: &str) -> Result<String, AuthError> {
        let url = format!("{}/opc/v2/{path}", self.config.imds_base);
        let err = |message: String| AuthError::Imds {
            path: path.to_owned(),
            message,
        };
        let mut wait = Duration::from_millis(100);
        for attempt in 1..=4 {
            let res = self
                .agent
                .get(&url)
                .set("authorization", "Bearer Oracle")
                .call();
            match res {
                Ok(resp) => return resp.into_string().map_err(|e| err(e.to_string())),
                Err(ureq::Error::Status(code, _))
                    if attempt < 4 && (code == 404 || code == 429 || code >= 500) =>
                {
                    std::thread::sleep(wait);
                    wait *= 2;
                }
                Err(ureq::Error::Status(code, _)) => return Err(err(format!("HTTP {code}"))),
                Err(e) => return Err(err(e.to_string())),
            }
        }
        Err(err("retries exhausted".into()))
    }

    fn identity(&self) -> Result<Identity, AuthError> {
        Ok(Identity {
            cert_pem: self.imds("identity/cert.pem")?,
            key_pem: self.imds("identity/key.pem")?,
            intermediate_pem: self.imds("identity/intermediate.pem")?,
        })
    }

    fn auth_base(&self) -> Result<String, AuthError> {
        if let Some(base) = &self.config.auth_base {
            return Ok(base.clone());
        }
        let region = self.region()?;
        let domain = self.imds("instance/regionInfo/realmDomainComponent")?;
        Ok(format!("https://auth.{}.{}", region.trim(), domain.trim()))
    }

    /// Fetches identity material and federates a new session.
    fn federate(&self) -> Result<Session, AuthError> {
        let id = self.identity()?;
        let leaf = leaf_facts(&id.cert_pem)?;
        {
            let mut known = self.tenancy.lock().unwrap_or_else(|p| p.into_inner());
            match known.as_ref() {
                Some(old) if *old != leaf.tenancy => {
                    return Err(AuthError::TenancyChanged {
                        old: old.clone(),
                        new: leaf.tenancy,
                    })
                }
                _ => *known = Some(leaf.tenancy.clone()),
            }
        }
        let leaf_key = private_key_from_pem(&id.key_pem)?;
        let session_key = RsaPrivateKey::new(&mut rand::thread_rng(), 2048)
            .map_err(|e| AuthError::Certificate(format!("session key: {e}")))?;
        let body = serde_json::json!({
            "certificate": pem_body(&id.cert_pem),
            "publicKey": pem_body(&public_key_pem(&RsaPublicKey::from(&session_key))?),
            "intermediateCertificates": [pem_body(&id.intermediate_pem)],
            "fingerprintAlgorithm": "SHA256",
        })
        .to_string();
        let signer = Credentials {
            key_id: format!("{}/fed-x509-sha256/{}", leaf.tenancy, leaf.fingerprint),
            key: Arc::new(leaf_key),
        };
        let url = format!("{}/v1/x509", self.auth_base()?);
        let resp = signed_call(
            &self.agent,
            "POST",
            &url,
            Some(body.as_bytes()),
            &[],
            &signer,
            Scope::Federation,
        )
        .map_err(|e| AuthError::Transport(e.to_string()))?;
        let json: serde_json::Value = serde_json::from_slice(&resp.body).unwrap_or_default();
        if resp.status != 200 {
            return Err(AuthError::Federation {
                status: resp.status,
                code: json["code"].as_str().unwrap_or("Unknown").to_owned(),
                message: json["message"].as_str().unwrap_or("").to_owned(),
                request_id: resp.request_id.unwrap_or_default(),
            });
        }
        let token = json["token"].as_str().unwrap_or("");
        let expires = jwt_expiry(token).ok_or_else(|| AuthError::Federation {
            status: resp.status,
            code: "InvalidToken".into(),
            message: "the token carries no exp claim".into(),
            request_id: resp.request_id.unwrap_or_default(),
        })?;
        tracing::info!(tenancy = %leaf.tenancy, cert = %leaf.fingerprint, "federated an instance-principal session");
        Ok(Session {
            creds: Credentials {
                key_id: format!("ST${token}"),
                key: Arc::new(session_key),
            },
            expires,
            leaf,
        })
    }

    /// The fingerprint of the certificate behind the current session.
    pub fn current_certificate(&self) -> Option<String> {
        let s = self.session.lock().unwrap_or_else(|p| p.into_inner());
        s.as_ref().map(|s| s.leaf.fingerprint.clone())
    }
}

impl CredentialSource for InstancePrincipal {
    fn credentials(&self) -> Result<Credentials, AuthError> {
        let mut guard = self.session.lock().unwrap_or_else(|p| p.into_inner());
        let fresh = guard
            .as_ref()
            .is_some_and(|s| SystemTime::now() + self.config.refresh_before < s.expires);
        if !fresh {
            let session = self.federate()?;
            if let Some(old) = guard.as_ref() {
                if old.leaf.fingerprint != session.leaf.fingerprint {
                    tracing::info!(old = %old.leaf.fingerprint, new = %session.leaf.fingerprint, "identity certificate rotated");
                }
            }
            *guard = Some(session);
        }
        guard
            .as_ref()
            .map(|s| s.creds.clone())
            .ok_or_else(|| AuthError::Certificate("no session".into()))
    }

    fn region(&self) -> Result<String, AuthError> {
        Ok(self
            .imds("instance/regionInfo/regionIdentifier")?
            .trim()
            .to_owned())
    }

    fn invalidate(&self) {
        *self.session.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jwt_exp_is_read_from_the_payload() {
        let payload = URL_SAFE_NO_PAD.encode(br#"{"sub":"x","exp":1700000000}"#);
        let token = format!("eyJhbGciOiJSUzI1NiJ9.{payload}.sig");
        assert_eq!(
            jwt_expiry(&token),
            Some(UNIX_EPOCH + Duration::from_secs(1_700_000_000))
        );
        assert_eq!(jwt_expiry("garbage"), None);
    }
}
