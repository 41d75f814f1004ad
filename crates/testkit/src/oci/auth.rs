//! Request authentication for the fake OCI API: Signature Version 1 with
//! the same verifier the client's signer is tested against, keys looked up
//! by keyId (API keys, `ST$` sessions, the federation leaf certificate), and
//! the `/v1/x509` federation that issues session tokens.

use std::time::{Duration, SystemTime};

use axum::http::{HeaderMap, Method};
use plexus_oci::sign::{self, Received, Scope};
use rsa::pkcs8::DecodePublicKey;
use rsa::RsaPublicKey;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use x509_cert::der::{DecodePem, Encode};

use super::api::{error, Answer};
use super::State;

pub(super) fn principal_key(
    s: &State,
    key_id: &str,
    path: &str,
    body: &[u8],
) -> Result<(RsaPublicKey, &'static str), Answer> {
    let unauth = || {
        error(
            401,
            "NotAuthenticated",
            "The required information to complete authentication was not provided or was incorrect.",
        )
    };
    if let Some(token) = key_id.strip_prefix("ST$") {
        return s
            .sessions
            .get(token)
            .cloned()
            .map(|k| (k, "session"))
            .ok_or_else(unauth);
    }
    if path == "/v1/x509" {
        let (tenancy, fp) = key_id.split_once("/fed-x509-sha256/").ok_or_else(unauth)?;
        let req: Value = serde_json::from_slice(body).map_err(|_| unauth())?;
        let cert_b64 = req["certificate"].as_str().ok_or_else(unauth)?;
        let pem = pem_wrap("CERTIFICATE", cert_b64);
        let cert = x509_cert::Certificate::from_pem(pem.as_bytes()).map_err(|_| unauth())?;
        let der = cert.to_der().map_err(|_| unauth())?;
        let leaf = plexus_oci::auth::leaf_facts(&pem).map_err(|_| unauth())?;
        if leaf.tenancy != tenancy
            || plexus_oci::keys::colon_hex(&Sha256::digest(&der)) != fp
            || !s.trusted_tenancies.iter().any(|t| t == tenancy)
            || req["intermediateCertificates"]
                .as_array()
                .is_none_or(Vec::is_empty)
        {
            return Err(unauth());
        }
        let spki = cert
            .tbs_certificate
            .subject_public_key_info
            .to_der()
            .map_err(|_| unauth())?;
        let key = RsaPublicKey::from_public_key_der(&spki).map_err(|_| unauth())?;
        return Ok((key, "federation"));
    }
    s.api_keys
        .get(key_id)
        .cloned()
        .map(|k| (k, "api-key"))
        .ok_or_else(unauth)
}

pub(super) fn authenticate(
    s: &State,
    method: &Method,
    target: &str,
    path: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<&'static str, Answer> {
    let header = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let unauth = |why: String| {
        error(
            401,
            "NotAuthenticated",
            &format!("The required information to complete authentication was not provided or was incorrect: {why}"),
        )
    };
    let auth = header("authorization").ok_or_else(|| unauth("no Authorization header".into()))?;
    let parsed = sign::parse_authorization(&auth).map_err(|e| unauth(e.to_string()))?;
    let (key, principal) = principal_key(s, &parsed.key_id, path, body)?;
    let scope = if path == "/v1/x509" {
        Scope::Federation
    } else {
        Scope::Api
    };
    let rx = Received {
        method: method.as_str(),
        target,
        body,
        scope,
        now: server_now(s),
    };
    sign::verify(&parsed, &rx, &header, &key).map_err(|e| unauth(e.to_string()))?;
    Ok(principal)
}

pub(super) fn server_now(s: &State) -> SystemTime {
    let off = Duration::from_secs(s.clock_offset_secs.unsigned_abs());
    if s.clock_offset_secs >= 0 {
        SystemTime::now() + off
    } else {
        SystemTime::now() - off
    }
}

/// Re-wraps a bare base64 body (as the federation request carries it) into
/// PEM with 64-column lines.
pub(super) fn pem_wrap(label: &str, b64: &str) -> String {
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

pub(super) fn federate(s: &mut State, body: &[u8]) -> Answer {
    let req: Value = serde_json::from_slice(body).unwrap_or_default();
    let Some(pk) = req["publicKey"].as_str() else {
        return error(400, "InvalidParameter", "publicKey is required");
    };
    let pem = pem_wrap("PUBLIC KEY", pk);
    let Ok(key) = RsaPublicKey::from_public_key_pem(&pem) else {
        return error(400, "InvalidParameter", "publicKey is not an RSA SPKI key");
    };
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let exp = server_now(s) + s.token_ttl;
    let exp = exp
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    s.counter += 1;
    let claims = json!({"sub": "ocid1.instance.oc1.phx.fake", "exp": exp, "jti": s.counter, "ptype": "instance"});
    let token = format!(
        "{}.{}.{}",
        b64.encode(br#"{"alg":"RS256","kid":"fake"}"#),
        b64.encode(claims.to_string()),
        b64.encode(format!("sig{}", s.counter))
    );
    s.sessions.insert(token.clone(), key);
    (200, json!({"token": token}), Vec::new())
}
