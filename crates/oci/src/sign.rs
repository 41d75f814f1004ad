//! OCI request signing ("Signature Version 1"): draft-cavage-http-signatures-08
//! with `rsa-sha256` (RSASSA-PKCS1-v1_5 over SHA-256), carried in the
//! `Authorization: Signature …` header (oci.md §3.5).
//!
//! Pure functions on plain data: [`sign`] builds the headers a request must
//! carry, [`verify`] checks them (the fake OCI API uses it, so both sides of
//! the scheme have one owner). The signed header set depends on the method:
//! `date (request-target) host` for GET/DELETE/HEAD, plus `content-length
//! content-type x-content-sha256` for POST/PUT/PATCH, whose body hash is sent
//! even for an empty body. The identity federation call leaves out `host`.

use std::time::{Duration, SystemTime};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use rsa::pkcs1v15::{Signature, SigningKey, VerifyingKey};
use rsa::signature::{SignatureEncoding, Signer, Verifier};
use rsa::{RsaPrivateKey, RsaPublicKey};
use sha2::{Digest, Sha256};

/// OCI rejects a request whose `date` is further than this from its clock
/// (401 NotAuthenticated, signingrequests.htm).
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(300);

/// Why signing or verification failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignError {
    #[error("rsa-sha256 signing failed: {0}")]
    Rsa(String),
    #[error("malformed Authorization header: {0}")]
    Malformed(String),
    #[error("unsupported signature algorithm or version {0:?}")]
    Unsupported(String),
    #[error("header {0:?} must be signed for this method")]
    HeaderNotSigned(&'static str),
    #[error("signed header {0:?} is missing from the request")]
    HeaderMissing(String),
    #[error("x-content-sha256 does not match the body")]
    BodyHash,
    #[error("date header {0:?} is not an HTTP date")]
    BadDate(String),
    #[error("clock skew of {skew_secs} s exceeds the {max_secs} s OCI accepts")]
    ClockSkew { skew_secs: u64, max_secs: u64 },
    #[error("signature does not verify")]
    BadSignature,
}

/// Which header set a request signs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Every OCI API call: `host` is signed.
    Api,
    /// `POST /v1/x509` on the auth service: `host` is not signed (as the
    /// SDKs do).
    Federation,
}

/// A request body with its media type.
#[derive(Debug, Clone, Copy)]
pub struct Body<'a> {
    pub content_type: &'a str,
    pub bytes: &'a [u8],
}

/// What gets signed about one request.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// HTTP method, any case.
    pub method: &'a str,
    /// Path and query exactly as sent (already percent-encoded).
    pub target: &'a str,
    /// `host[:port]` as sent in the Host header.
    pub host: &'a str,
    /// The body; `None` for methods without one.
    pub body: Option<Body<'a>>,
    pub scope: Scope,
}

/// The headers to add to a request, in signing order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedHeaders {
    /// `(name, value)` pairs to send, `authorization` last.
    pub headers: Vec<(&'static str, String)>,
}

impl SignedHeaders {
    /// The value of one header.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Whether `method` carries a signed body (Go SDK `defaultBodyHashPredicate`).
pub fn has_body(method: &str) -> bool {
    matches!(
        method.to_ascii_uppercase().as_str(),
        "POST" | "PUT" | "PATCH"
    )
}

/// The header names signed for `method` in `scope`, in order.
pub fn signed_header_names(method: &str, scope: Scope) -> Vec<&'static str> {
    let mut names = vec!["date", "(request-target)"];
    if scope == Scope::Api {
        names.push("host");
    }
    if has_body(method) {
        names.extend(["content-length", "content-type", "x-content-sha256"]);
    }
    names
}

/// base64(SHA-256(body)), the `x-content-sha256` value.
pub fn body_sha256(body: &[u8]) -> String {
    B64.encode(Sha256::digest(body))
}

/// The RFC 7231 date OCI expects, e.g. `Thu, 05 Jan 2014 21:31:40 GMT`.
pub fn http_date(at: SystemTime) -> String {
    httpdate::fmt_http_date(at)
}

/// The draft-cavage signing string: `name: value` lines joined by `\n`.
pub fn signing_string(lines: &[(&str, &str)]) -> String {
    lines
        .iter()
        .map(|(n, v)| format!("{n}: {v}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Signs `req` with `key`, naming `key_id`. `date` is sent and signed
/// literally (normally [`http_date`] of now).
pub fn sign(
    req: &Request<'_>,
    date: &str,
    key_id: &str,
    key: &RsaPrivateKey,
) -> Result<SignedHeaders, SignError> {
    let names = signed_header_names(req.method, req.scope);
    let target = format!("{} {}", req.method.to_ascii_lowercase(), req.target);
    let empty = Body {
        content_type: "application/json",
        bytes: &[],
    };
    let body = req.body.unwrap_or(empty);
    let mut headers: Vec<(&'static str, String)> = Vec::new();
    let mut lines: Vec<(&str, String)> = Vec::new();
    for name in &names {
        let value = match *name {
            "date" => date.to_owned(),
            "(request-target)" => target.clone(),
            "host" => req.host.to_owned(),
            "content-length" => body.bytes.len().to_string(),
            "content-type" => body.content_type.to_owned(),
            _ => body_sha256(body.bytes),
        };
        if *name != "(request-target)" && *name != "host" {
            headers.push((name, value.clone()));
        }
        lines.push((name, value));
    }
    let refs: Vec<(&str, &str)> = lines.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let signature = rsa_sign(key, signing_string(&refs).as_bytes())?;
    let auth = format!(
        "Signature version=\"1\",headers=\"{}\",keyId=\"{key_id}\",algorithm=\"rsa-sha256\",signature=\"{signature}\"",
        names.join(" ")
    );
    headers.push(("authorization", auth));
    Ok(SignedHeaders { headers })
}

/// base64 RSASSA-PKCS1-v1_5/SHA-256 signature of `data`.
pub fn rsa_sign(key: &RsaPrivateKey, data: &[u8]) -> Result<String, SignError> {
    let signer = SigningKey::<Sha256>::new(key.clone());
    let sig = signer
        .try_sign(data)
        .map_err(|e| SignError::Rsa(e.to_string()))?;
    Ok(B64.encode(sig.to_bytes()))
}

/// A parsed `Authorization: Signature …` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    pub key_id: String,
    pub headers: Vec<String>,
    pub signature: String,
}

/// Parses the `Signature k="v",…` form (parameters in any order).
pub fn parse_authorization(value: &str) -> Result<Authorization, SignError> {
    let rest = value
        .strip_prefix("Signature ")
        .ok_or_else(|| SignError::Malformed("not a Signature scheme".into()))?;
    let (mut key_id, mut headers, mut signature) = (None, None, None);
    let (mut version, mut algorithm) = (None, None);
    let mut s = rest.trim();
    while !s.is_empty() {
        let (name, after) = s
            .split_once("=\"")
            .ok_or_else(|| SignError::Malformed(format!("bad parameter near {s:?}")))?;
        let (val, after) = after
            .split_once('"')
            .ok_or_else(|| SignError::Malformed(format!("unterminated {name}")))?;
        match name.trim() {
            "keyId" => key_id = Some(val.to_owned()),
            "headers" => headers = Some(val.split(' ').map(str::to_owned).collect()),
            "signature" => signature = Some(val.to_owned()),
            "version" => version = Some(val.to_owned()),
            "algorithm" => algorithm = Some(val.to_owned()),
            _ => {}
        }
        s = after.trim_start_matches(',').trim();
    }
    if version.as_deref() != Some("1") {
        return Err(SignError::Unsupported(version.unwrap_or_default()));
    }
    if algorithm.as_deref() != Some("rsa-sha256") {
        return Err(SignError::Unsupported(algorithm.unwrap_or_default()));
    }
    Ok(Authorization {
        key_id: key_id.ok_or_else(|| SignError::Malformed("no keyId".into()))?,
        headers: headers.unwrap_or_else(|| vec!["date".into()]),
        signature: signature.ok_or_else(|| SignError::Malformed("no signature".into()))?,
    })
}

/// What the verifier needs to know about a received request.
#[derive(Debug, Clone, Copy)]
pub struct Received<'a> {
    pub method: &'a str,
    pub target: &'a str,
    pub body: &'a [u8],
    pub scope: Scope,
    pub now: SystemTime,
}

/// Checks a received request's signature the way OCI does: the required
/// headers for the method are covered, the body hash matches, the date is
/// within [`MAX_CLOCK_SKEW`], and the signature verifies with `public`.
/// `header` looks up a received header by lower-case name.
pub fn verify(
    auth: &Authorization,
    req: &Received<'_>,
    header: &dyn Fn(&str) -> Option<String>,
    public: &RsaPublicKey,
) -> Result<(), SignError> {
    for name in signed_header_names(req.method, req.scope) {
        let covered = auth.headers.iter().any(|h| h == name)
            || (name == "date" && auth.headers.iter().any(|h| h == "x-date"));
        if !covered {
            return Err(SignError::HeaderNotSigned(name));
        }
    }
    let mut lines = Vec::new();
    for name in &auth.headers {
        let value = match name.as_str() {
            "(request-target)" => format!("{} {}", req.method.to_ascii_lowercase(), req.target),
            other => header(other).ok_or_else(|| SignError::HeaderMissing(other.to_owned()))?,
        };
        lines.push((name.as_str(), value));
    }
    if has_body(req.method) {
        let sent = header("x-content-sha256").unwrap_or_default();
        if sent != body_sha256(req.body) {
            return Err(SignError::BodyHash);
        }
    }
    let date = header("x-date")
        .or_else(|| header("date"))
        .ok_or_else(|| SignError::HeaderMissing("date".into()))?;
    check_skew(req.now, &date)?;
    let refs: Vec<(&str, &str)> = lines.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let raw = B64
        .decode(&auth.signature)
        .map_err(|_| SignError::BadSignature)?;
    let sig = Signature::try_from(raw.as_slice()).map_err(|_| SignError::BadSignature)?;
    VerifyingKey::<Sha256>::new(public.clone())
        .verify(signing_string(&refs).as_bytes(), &sig)
        .map_err(|_| SignError::BadSignature)
}

/// Fails when `date` (an HTTP date, e.g. a server's `Date` header) is more
/// than [`MAX_CLOCK_SKEW`] away from `now`.
pub fn check_skew(now: SystemTime, date: &str) -> Result<(), SignError> {
    let skew = clock_skew(now, date)?;
    if skew > MAX_CLOCK_SKEW {
        return Err(SignError::ClockSkew {
            skew_secs: skew.as_secs(),
            max_secs: MAX_CLOCK_SKEW.as_secs(),
        });
    }
    Ok(())
}

/// The absolute difference between `now` and the HTTP date `date`.
pub fn clock_skew(now: SystemTime, date: &str) -> Result<Duration, SignError> {
    let at = parse_date(date)?;
    Ok(now
        .duration_since(at)
        .or_else(|_| at.duration_since(now))
        .unwrap_or_default())
}

/// Parses an HTTP date, ignoring a weekday that does not match the date (the
/// published vectors sign "Thu, 05 Jan 2014", a Sunday; the time is what
/// matters for skew).
fn parse_date(date: &str) -> Result<SystemTime, SignError> {
    if let Ok(at) = httpdate::parse_http_date(date) {
        return Ok(at);
    }
    let rest = date.split_once(", ").map(|(_, r)| r).unwrap_or(date);
    ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
        .iter()
        .find_map(|day| httpdate::parse_http_date(&format!("{day}, {rest}")).ok())
        .ok_or_else(|| SignError::BadDate(date.to_owned()))
}
