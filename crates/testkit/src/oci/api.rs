//! Request handling for [`super::FakeOci`]: routing, faults, retry tokens,
//! the error bodies; authentication is in `auth`, resources in `ops`.

use std::collections::BTreeMap;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::Response;
use plexus_oci::model::{VnicState, API_PREFIX};
use plexus_oci::sign;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::auth::{authenticate, federate, server_now};
use super::ops::{
    attach, detach, imds_vnics, instance_json, list_attachments, settle, to_json, update_instance,
};
use super::{lock, OciRequest, Shared, State};

pub(super) type Answer = (u16, Value, Vec<(&'static str, String)>);

pub(super) fn error(status: u16, code: &str, message: &str) -> Answer {
    (
        status,
        json!({"code": code, "message": message}),
        Vec::new(),
    )
}

pub(super) fn not_found() -> Answer {
    error(
        404,
        "NotAuthorizedOrNotFound",
        "Authorization failed or requested resource not found.",
    )
}

fn injected(status: u16) -> Answer {
    match status {
        409 => error(
            409,
            "IncorrectState",
            "The resource is in a conflicting state (injected).",
        ),
        429 => error(429, "TooManyRequests", "Too many requests for the tenancy."),
        503 => error(
            503,
            "ServiceUnavailable",
            "The service is currently unavailable.",
        ),
        504 => error(
            504,
            "GatewayTimeout",
            "The gateway timed out waiting for the service.",
        ),
        s if s >= 500 => error(s, "InternalServerError", "Internal error occurred."),
        s => error(s, "InjectedFault", "Injected fault."),
    }
}

pub(super) async fn handle(
    shared: Shared,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_owned();
    let target = uri
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| path.clone());
    let retry_token = headers
        .get("opc-retry-token")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut s = lock(&shared);
    s.counter += 1;
    let request_id = format!("fake/{:016X}", s.counter);
    let (principal, answer) = route(
        &mut s,
        &method,
        &uri,
        &target,
        &headers,
        &body,
        retry_token.as_deref(),
    );
    s.log.push(OciRequest {
        method: method.to_string(),
        target,
        retry_token,
        principal: principal.to_owned(),
        status: answer.0,
    });
    let date = sign::http_date(server_now(&s));
    drop(s);
    let (status, json, extra) = answer;
    let mut resp = Response::new(if status == 204 {
        Body::empty()
    } else {
        Body::from(json.to_string())
    });
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let h = resp.headers_mut();
    h.insert("content-type", HeaderValue::from_static("application/json"));
    for (name, value) in std::iter::once(("opc-request-id", request_id))
        .chain(std::iter::once(("date", date)))
        .chain(extra)
    {
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert(name, v);
        }
    }
    resp
}

fn route(
    s: &mut State,
    method: &Method,
    uri: &Uri,
    target: &str,
    headers: &HeaderMap,
    body: &[u8],
    retry_token: Option<&str>,
) -> (&'static str, Answer) {
    let path = uri.path();
    if let Some(rest) = path.strip_prefix("/_fake/imds/") {
        // Unsigned test hook for the fake-imds binary.
        settle(s);
        let id = rest.trim_end_matches("/vnics");
        return ("unsigned", (200, imds_vnics(s, id), Vec::new()));
    }
    let principal = match authenticate(s, method, target, path, headers, body) {
        Ok(p) => p,
        Err(a) => return ("unsigned", a),
    };
    if path == "/v1/x509" && method == Method::POST {
        return (principal, federate(s, body));
    }
    let Some(rest) = path.strip_prefix(API_PREFIX) else {
        return (principal, not_found());
    };
    let m = method.as_str();
    let mut lost = None;
    if let Some(f) = s.faults.iter_mut().find(|f| {
        f.remaining > 0 && (f.method == "*" || f.method == m) && rest.starts_with(&f.path_prefix)
    }) {
        f.remaining -= 1;
        if !f.after {
            let status = f.status;
            return (principal, injected(status));
        }
        lost = Some(f.status);
    }
    let answer = serve(
        s,
        method,
        rest,
        uri.query().unwrap_or(""),
        body,
        retry_token,
    );
    match lost {
        Some(status) => (principal, injected(status)),
        None => (principal, answer),
    }
}

/// Carries out an authenticated API request (retry tokens honoured).
fn serve(
    s: &mut State,
    method: &Method,
    rest: &str,
    query: &str,
    body: &[u8],
    retry_token: Option<&str>,
) -> Answer {
    settle(s);
    if let Some(token) = retry_token {
        let digest = format!("{} {rest} {:x}", method.as_str(), Sha256::digest(body));
        if let Some((seen, status, answer)) = s.retry_tokens.get(token) {
            if *seen == digest {
                return (*status, answer.clone(), Vec::new());
            }
            return error(
                409,
                "InvalidatedRetryToken",
                "The retry token was used with a different request.",
            );
        }
        let answer = dispatch(s, method, rest, query, body);
        if answer.0 < 300 {
            s.retry_tokens
                .insert(token.to_owned(), (digest, answer.0, answer.1.clone()));
        }
        return answer;
    }
    dispatch(s, method, rest, query, body)
}

fn query_map(query: &str) -> BTreeMap<String, String> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), percent_decode(v)))
        .collect()
}

fn percent_decode(v: &str) -> String {
    let bytes = v.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&v[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn dispatch(s: &mut State, method: &Method, rest: &str, query: &str, body: &[u8]) -> Answer {
    let segs: Vec<&str> = rest.trim_matches('/').split('/').collect();
    match (method.as_str(), segs.as_slice()) {
        ("GET", ["instances", id]) => match s.instances.get(*id) {
            Some(i) => (200, instance_json(i), Vec::new()),
            None => not_found(),
        },
        ("PUT", ["instances", id]) => update_instance(s, id, body),
        ("GET", ["vnicAttachments"]) => list_attachments(s, &query_map(query)),
        ("POST", ["vnicAttachments"]) => attach(s, body),
        ("GET", ["vnicAttachments", id]) => match s.attachments.get(*id) {
            Some(a) => (200, to_json(&a.attachment), Vec::new()),
            None => not_found(),
        },
        ("DELETE", ["vnicAttachments", id]) => detach(s, id),
        ("GET", ["vnics", id]) => {
            let found = s
                .attachments
                .values()
                .map(|a| &a.vnic)
                .find(|v| v.id == *id && v.lifecycle_state != VnicState::Provisioning);
            match found {
                Some(v) => (200, to_json(v), Vec::new()),
                None => not_found(),
            }
        }
        _ => not_found(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%3Ab%20c"), "a:b c");
        assert_eq!(percent_decode("plain"), "plain");
        assert_eq!(percent_decode("bad%"), "bad%");
    }
}
