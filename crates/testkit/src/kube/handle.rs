//! One request end to end: record it, apply injected latency, authenticate,
//! apply injected faults and forbid rules, then route it to the health,
//! discovery and eviction paths or to a verb on a resource.

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, Uri};
use axum::response::Response;
use serde_json::json;

use super::delete::{delete, delete_foreground, delete_pod, evict, foreground, parse_eviction};
use super::latency;
use super::pb::{is_protobuf, protobuf_body_to_json, PROTOBUF};
use super::resource::{discovery, parse_target, version, Target};
use super::state::{lock, Shared};
use super::status::{
    bad_request, failure, forbidden, injected, json_response, method_not_allowed, not_found,
    not_found_path, text_response,
};
use super::verbs::{create, list, patch, update, ItemRef};
use super::RecordedRequest;
pub(super) async fn handle(
    shared: Shared,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_owned();
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let authorization = header("authorization");
    let content_type = header("content-type");
    let delay = {
        let mut s = lock(&shared);
        s.requests.push(RecordedRequest {
            method: method.to_string(),
            path: path.clone(),
            query: uri.query().map(str::to_owned),
            content_type: content_type.clone(),
            body: String::from_utf8_lossy(&body).into_owned(),
            authorization: authorization.clone(),
        });
        let m = method.as_str();
        s.latencies
            .iter_mut()
            .find(|l| l.remaining > 0 && l.matcher.matches(m, &path))
            .map(|l| {
                l.remaining -= 1;
                l.delay
            })
            .or_else(|| s.verb_latency.map(|l| l.for_request(m, &path)))
            .filter(|d| !d.is_zero())
    };
    if let Some(delay) = delay {
        latency::precise_sleep(delay).await;
    }
    let mut s = lock(&shared);
    let public = matches!(
        path.as_str(),
        "/healthz" | "/readyz" | "/livez" | "/version"
    );
    let mut anonymous = false;
    if let Some(token) = &s.token {
        match authorization
            .as_deref()
            .and_then(|a| a.strip_prefix("Bearer "))
        {
            Some(got) if got == token => {}
            None if authorization.is_none() => anonymous = true,
            _ => return failure(401, "Unauthorized", "Unauthorized", None),
        }
    }
    let m = method.as_str();
    if let Some(inj) = s
        .injections
        .iter_mut()
        .find(|i| i.remaining > 0 && i.matcher.matches(m, &path))
    {
        inj.remaining -= 1;
        return injected(inj.status);
    }
    if public {
        return match (m, path.as_str()) {
            ("GET", "/version") => json_response(200, &version()),
            ("GET", _) => text_response("ok"),
            _ => method_not_allowed(),
        };
    }
    if let Some(resp) = discovery(&path) {
        if anonymous {
            return failure(
                403,
                "Forbidden",
                &format!("forbidden: User \"system:anonymous\" cannot get path \"{path}\""),
                Some(json!({})),
            );
        }
        return if m == "GET" {
            resp
        } else {
            method_not_allowed()
        };
    }
    if let Some((ns, name)) = parse_eviction(&path) {
        if anonymous || s.forbidden.iter().any(|f| f.matches(m, &path)) {
            let user = if anonymous {
                "system:anonymous".to_owned()
            } else {
                s.user.clone()
            };
            let msg = format!("pods \"{name}\" is forbidden: User \"{user}\" cannot create resource \"pods/eviction\" in API group \"\" in the namespace \"{ns}\"");
            return failure(
                403,
                "Forbidden",
                &msg,
                Some(json!({"name": name, "kind": "pods"})),
            );
        }
        return if method == Method::POST {
            evict(&mut s, ns, name, &body)
        } else {
            method_not_allowed()
        };
    }
    let Some(target) = parse_target(&path) else {
        return not_found_path();
    };
    if anonymous {
        return forbidden("system:anonymous", &method, &target);
    }
    if s.forbidden.iter().any(|f| f.matches(m, &path)) {
        let user = s.user.clone();
        return forbidden(&user, &method, &target);
    }
    let ctype = content_type.as_deref().unwrap_or("");
    let query = uri.query().unwrap_or("");
    let mut body = body;
    if matches!(method, Method::POST | Method::PUT) {
        if let Some(resp) = check_body_media_type(&target, ctype) {
            return resp;
        }
        if is_protobuf(ctype) {
            match protobuf_body_to_json(&s, &target, &body) {
                Ok(json) => body = Bytes::from(json.to_string()),
                Err(e) => return bad_request(&format!("unable to decode protobuf body: {e}")),
            }
        }
    }
    match (&method, target) {
        (&Method::GET, Target::Collection { res, ns }) => list(&s, res, ns.as_deref()),
        (&Method::POST, Target::Collection { res, ns: Some(ns) }) => {
            create(&mut s, res, &ns, &body)
        }
        (&Method::GET, Target::Item { res, ns, name, .. }) => {
            match s.objects.get(&res.item_path(&ns, &name)) {
                Some(obj) => json_response(200, obj),
                None => not_found(res, &name),
            }
        }
        (
            &Method::PUT | &Method::PATCH,
            Target::Item {
                res,
                ns,
                name,
                status,
            },
        ) => {
            let item = ItemRef {
                res,
                ns: &ns,
                name: &name,
                status,
            };
            if method == Method::PUT {
                update(&mut s, item, &body)
            } else {
                patch(&mut s, item, ctype, query, &body)
            }
        }
        (
            &Method::DELETE,
            Target::Item {
                res,
                ns,
                name,
                status: false,
            },
        ) => {
            if foreground(query, &body) && res.builtin {
                delete_foreground(&mut s, res, &ns, &name)
            } else if res.kind == "Pod" {
                delete_pod(&mut s, res, &ns, &name, query, &body)
            } else {
                delete(&mut s, res, &ns, &name)
            }
        }
        _ => method_not_allowed(),
    }
}

/// Create/update bodies: JSON (or YAML, read here as JSON only); an empty
/// Content-Type defaults to JSON as on the real server.
fn check_body_media_type(target: &Target<'_>, content_type: &str) -> Option<Response> {
    let media = content_type.split(';').next().unwrap_or("").trim();
    let res = match target {
        Target::Collection { res, .. } | Target::Item { res, .. } => *res,
    };
    if matches!(media, "" | "application/json" | "application/yaml")
        || (res.builtin && media == PROTOBUF)
    {
        return None;
    }
    let accepted = if res.builtin {
        "application/json, application/yaml, application/vnd.kubernetes.protobuf"
    } else {
        "application/json, application/yaml"
    };
    Some(failure(
        415,
        "UnsupportedMediaType",
        &format!("the body of the request was in an unknown format - accepted media types include: {accepted}"),
        None,
    ))
}
