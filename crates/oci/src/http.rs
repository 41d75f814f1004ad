//! One signed HTTP exchange over `ureq` (blocking: the operator reconciles
//! one node at a time and OCI's rate limits, not threads, bound its speed).
//! Returns every status as data; retry policy lives in [`crate::client`].

use std::time::{Duration, SystemTime};

use crate::keys::Credentials;
use crate::sign::{self, Body, Request, Scope};

/// What came back, whatever the status.
#[derive(Debug, Clone, Default)]
pub struct HttpResponse {
    pub status: u16,
    pub body: Vec<u8>,
    /// `opc-request-id`, quoted in errors for Oracle support.
    pub request_id: Option<String>,
    /// `opc-next-page`: more results follow.
    pub next_page: Option<String>,
    /// `opc-work-request-id` of an asynchronous operation.
    pub work_request_id: Option<String>,
    /// The server's `Date`, for clock-skew detection.
    pub date: Option<String>,
    pub retry_after: Option<Duration>,
    pub etag: Option<String>,
}

/// The transport failed (no HTTP status).
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("{url}: {message}")]
pub struct TransportError {
    pub url: String,
    pub message: String,
}

/// Splits `scheme://host[:port]/path?query` into (host, target).
pub fn split_url(url: &str) -> Option<(&str, &str)> {
    let rest = url.split_once("://")?.1;
    let slash = rest.find('/').unwrap_or(rest.len());
    let (host, target) = rest.split_at(slash);
    Some((host, if target.is_empty() { "/" } else { target }))
}

/// Builds the agent every client shares (keep-alive, timeouts, no redirects).
pub fn agent(timeout: Duration) -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout(timeout)
        .redirects(0)
        .no_delay(true)
        .build()
}

/// Sends one request signed with `creds`; JSON body when `body` is set.
pub fn signed_call(
    agent: &ureq::Agent,
    method: &str,
    url: &str,
    body: Option<&[u8]>,
    extra: &[(&str, &str)],
    creds: &Credentials,
    scope: Scope,
) -> Result<HttpResponse, TransportError> {
    let terr = |message: String| TransportError {
        url: url.to_owned(),
        message,
    };
    let (host, target) = split_url(url).ok_or_else(|| terr("not an absolute URL".into()))?;
    let req = Request {
        method,
        target,
        host,
        body: body.map(|bytes| Body {
            content_type: "application/json",
            bytes,
        }),
        scope,
    };
    let date = sign::http_date(SystemTime::now());
    let signed =
        sign::sign(&req, &date, &creds.key_id, &creds.key).map_err(|e| terr(e.to_string()))?;
    let mut r = agent
        .request(method, url)
        .set("accept", "application/json")
        .set(
            "user-agent",
            concat!("plexus-oci/", env!("CARGO_PKG_VERSION")),
        );
    for (name, value) in &signed.headers {
        // ureq sets content-length itself from the body.
        if *name != "content-length" {
            r = r.set(name, value);
        }
    }
    if sign::has_body(method) && body.is_none() {
        r = r.set("content-type", "application/json");
    }
    for (name, value) in extra {
        r = r.set(name, value);
    }
    let result = match body {
        Some(b) => r.send_bytes(b),
        None if sign::has_body(method) => r.send_bytes(&[]),
        None => r.call(),
    };
    let resp = match result {
        Ok(resp) | Err(ureq::Error::Status(_, resp)) => resp,
        Err(ureq::Error::Transport(t)) => return Err(terr(t.to_string())),
    };
    let header = |n: &str| resp.header(n).map(str::to_owned);
    let mut out = HttpResponse {
        status: resp.status(),
        request_id: header("opc-request-id"),
        next_page: header("opc-next-page"),
        work_request_id: header("opc-work-request-id"),
        date: header("date"),
        retry_after: header("retry-after")
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs),
        etag: header("etag"),
        body: Vec::new(),
    };
    std::io::Read::read_to_end(&mut resp.into_reader(), &mut out.body)
        .map_err(|e| terr(e.to_string()))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_host_and_target() {
        assert_eq!(
            split_url("https://iaas.us-phoenix-1.oraclecloud.com/20160918/vnics/x?a=b"),
            Some(("iaas.us-phoenix-1.oraclecloud.com", "/20160918/vnics/x?a=b"))
        );
        assert_eq!(
            split_url("http://127.0.0.1:8080"),
            Some(("127.0.0.1:8080", "/"))
        );
        assert_eq!(split_url("nope"), None);
    }
}
