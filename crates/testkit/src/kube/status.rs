//! Kubernetes `Status` failure bodies worded as kube-apiserver words them
//! (clients match on reason, code and sometimes the message), and the JSON
//! and plain-text response builders.

use axum::body::Body;
use axum::http::{HeaderValue, Method, StatusCode};
use axum::response::Response;
use serde_json::{json, Map, Value};

use super::resource::{Resource, Target};
fn status_body(code: u16, reason: &str, message: &str, details: Option<Value>) -> Value {
    let mut s = Map::new();
    s.insert("kind".into(), "Status".into());
    s.insert("apiVersion".into(), "v1".into());
    s.insert("metadata".into(), json!({}));
    s.insert("status".into(), "Failure".into());
    if !message.is_empty() {
        s.insert("message".into(), message.into());
    }
    if !reason.is_empty() {
        s.insert("reason".into(), reason.into());
    }
    if let Some(d) = details {
        s.insert("details".into(), d);
    }
    s.insert("code".into(), code.into());
    Value::Object(s)
}

pub(super) fn json_response(code: u16, body: &Value) -> Response {
    let mut resp = Response::new(Body::from(body.to_string()));
    *resp.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/json"));
    resp
}

pub(super) fn failure(code: u16, reason: &str, message: &str, details: Option<Value>) -> Response {
    json_response(code, &status_body(code, reason, message, details))
}

pub(super) fn text_response(body: &'static str) -> Response {
    let mut resp = Response::new(Body::from(body));
    resp.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

pub(super) fn not_found_path() -> Response {
    failure(
        404,
        "NotFound",
        "the server could not find the requested resource",
        Some(json!({})),
    )
}

pub(super) fn method_not_allowed() -> Response {
    failure(
        405,
        "MethodNotAllowed",
        "the server does not allow this method on the requested resource",
        Some(json!({})),
    )
}

pub(super) fn not_found(res: &Resource, name: &str) -> Response {
    failure(
        404,
        "NotFound",
        &format!("{} \"{name}\" not found", res.qualified()),
        Some(res.details(name)),
    )
}

pub(super) fn conflict(res: &Resource, name: &str, why: &str) -> Response {
    failure(
        409,
        "Conflict",
        &format!(
            "Operation cannot be fulfilled on {} \"{name}\": {why}",
            res.qualified()
        ),
        Some(res.details(name)),
    )
}

pub(super) const OPTIMISTIC_LOCK: &str =
    "the object has been modified; please apply your changes to the latest version and try again";

pub(super) fn uid_conflict(
    res: &Resource,
    ns: &str,
    name: &str,
    want: &str,
    have: &str,
) -> Response {
    conflict(
        res,
        name,
        &format!(
            "StorageError: invalid object, Code: 4, Key: {}, ResourceVersion: 0, AdditionalErrorMsg: Precondition failed: UID in precondition: {want}, UID in object meta: {have}",
            res.storage_key(ns, name)
        ),
    )
}

/// 422 Invalid for one field error `"<field>: <detail>"`, with the
/// `causes` entry the real server adds.
pub(super) fn invalid(res: &Resource, name: &str, field_error: &str) -> Response {
    let (field, detail) = field_error.split_once(": ").unwrap_or(("", field_error));
    let cause_reason = if detail.starts_with("Required value") {
        "FieldValueRequired"
    } else if detail.contains("must be of type") {
        "FieldValueTypeInvalid"
    } else {
        "FieldValueInvalid"
    };
    let mut details = res.details(name);
    if let Some(d) = details.as_object_mut() {
        d.insert("kind".into(), res.kind.into());
        d.insert(
            "causes".into(),
            json!([{"reason": cause_reason, "message": detail, "field": field}]),
        );
    }
    let kind = if res.group.is_empty() {
        res.kind.to_owned()
    } else {
        format!("{}.{}", res.kind, res.group)
    };
    failure(
        422,
        "Invalid",
        &format!("{kind} \"{name}\" is invalid: {field_error}"),
        Some(details),
    )
}

/// What `NewGenericServerResponse(422, …)` produces for a patch that cannot
/// be applied (e.g. a failed JSON-patch `test`).
pub(super) fn unprocessable(server_message: &str) -> Response {
    failure(
        422,
        "Invalid",
        "the server rejected our request due to an error in our request",
        Some(
            json!({"causes": [{"reason": "UnexpectedServerResponse", "message": server_message}]}),
        ),
    )
}

pub(super) fn bad_request(message: &str) -> Response {
    failure(400, "BadRequest", message, None)
}

/// The Status the real server sends for an injected code.
pub(super) fn injected(status: u16) -> Response {
    let (reason, message, details) = match status {
        409 => ("Conflict", "Operation cannot be fulfilled: the object has been modified; please apply your changes to the latest version and try again", None),
        429 => (
            "TooManyRequests",
            "Too many requests, please try again later.",
            Some(json!({"retryAfterSeconds": 1})),
        ),
        500 => (
            "InternalError",
            "Internal error occurred: injected fault",
            Some(json!({"causes": [{"message": "injected fault"}]})),
        ),
        503 => ("ServiceUnavailable", "the server is currently unable to handle the request", None),
        504 => (
            "Timeout",
            "Timeout: request did not complete within requested timeout - context deadline exceeded",
            Some(json!({})),
        ),
        401 => ("Unauthorized", "Unauthorized", None),
        403 => ("Forbidden", "forbidden: injected", None),
        404 => ("NotFound", "the server could not find the requested resource", None),
        _ => ("", "injected fault", None),
    };
    let mut resp = failure(status, reason, message, details);
    if status == 429 {
        resp.headers_mut()
            .insert("retry-after", HeaderValue::from_static("1"));
    }
    resp
}

fn verb(method: &Method, target: &Target<'_>) -> &'static str {
    match (method.as_str(), target) {
        ("GET", Target::Collection { .. }) => "list",
        ("GET", _) => "get",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", Target::Collection { .. }) => "deletecollection",
        ("DELETE", _) => "delete",
        _ => "unknown",
    }
}

pub(super) fn forbidden(user: &str, method: &Method, target: &Target<'_>) -> Response {
    let verb = verb(method, target);
    let (res, ns, name, status) = match target {
        Target::Collection { res, ns } => (*res, ns.clone(), None, false),
        Target::Item {
            res,
            ns,
            name,
            status,
        } => (*res, Some(ns.clone()), Some(name.as_str()), *status),
    };
    let subject = match name {
        Some(n) => format!("{} \"{n}\"", res.qualified()),
        None => res.qualified(),
    };
    let resource = if status {
        format!("{}/status", res.plural)
    } else {
        res.plural.to_owned()
    };
    let scope = match &ns {
        Some(ns) if !ns.is_empty() => format!("in the namespace \"{ns}\""),
        _ => "at the cluster scope".to_owned(),
    };
    let message = format!(
        "{subject} is forbidden: User \"{user}\" cannot {verb} resource \"{resource}\" in API group \"{}\" {scope}",
        res.group
    );
    failure(
        403,
        "Forbidden",
        &message,
        Some(res.details(name.unwrap_or(""))),
    )
}
