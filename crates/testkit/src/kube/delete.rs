//! Removing objects: plain DELETE, graceful pod deletion ([`grace`]),
//! foreground (dependents-first) deletion, and the `pods/eviction`
//! subresource.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::response::Response;
use serde_json::{json, Value};

use super::grace;
use super::resource::{Resource, RESOURCES};
use super::state::{now_rfc3339, State};
use super::status::{bad_request, json_response, not_found};
pub(super) fn delete(s: &mut State, res: &Resource, ns: &str, name: &str) -> Response {
    let Some(old) = s.objects.remove(&res.item_path(ns, name)) else {
        return not_found(res, name);
    };
    s.resource_version += 1;
    // Core built-ins answer with the deleted object (pods bound to a node
    // first get a deletionTimestamp, `delete_pod`); apps/v1 and CRDs
    // with a Success Status.
    if res.builtin && res.group != "apps" {
        json_response(200, &old)
    } else {
        let mut details = res.details(name);
        if let Some(d) = details.as_object_mut() {
            d.insert("uid".into(), old["metadata"]["uid"].clone());
        }
        json_response(
            200,
            &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details}),
        )
    }
}

/// DELETE of a pod: graceful ([`grace`]) unless its grace period is 0.
pub(super) fn delete_pod(
    s: &mut State,
    res: &Resource,
    ns: &str,
    name: &str,
    query: &str,
    body: &[u8],
) -> Response {
    let path = res.item_path(ns, name);
    let Some(pod) = s.objects.get(&path) else {
        return not_found(res, name);
    };
    let grace = grace::grace_seconds(pod, query, body);
    if grace == 0 {
        return delete(s, res, ns, name);
    }
    let mut pod = pod.clone();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs();
    if grace::mark_terminating(&mut pod, grace, now) {
        s.resource_version += 1;
        pod["metadata"]["resourceVersion"] = json!(s.resource_version.to_string());
        s.objects.insert(path, pod.clone());
    }
    json_response(200, &pod)
}

/// `propagationPolicy=Foreground`, as a query parameter or in the
/// `DeleteOptions` body (kubectl sends the body).
pub(super) fn foreground(query: &str, body: &[u8]) -> bool {
    query
        .split('&')
        .any(|kv| kv == "propagationPolicy=Foreground")
        || serde_json::from_slice::<Value>(body)
            .is_ok_and(|o| o["propagationPolicy"] == "Foreground")
}

/// Foreground deletion of an owner: the object stays, with a
/// `deletionTimestamp` and the `foregroundDeletion` finalizer, until the
/// garbage collector has removed its dependents (the fake never finishes
/// that; tests delete it again without the policy). 200 with the object.
pub(super) fn delete_foreground(s: &mut State, res: &Resource, ns: &str, name: &str) -> Response {
    s.resource_version += 1;
    let rv = s.resource_version.to_string();
    let Some(obj) = s.objects.get_mut(&res.item_path(ns, name)) else {
        return not_found(res, name);
    };
    let meta = &mut obj["metadata"];
    if meta.get("deletionTimestamp").is_none() {
        meta["deletionTimestamp"] = now_rfc3339().into();
        meta["deletionGracePeriodSeconds"] = 0.into();
        meta["finalizers"] = json!(["foregroundDeletion"]);
        meta["resourceVersion"] = rv.into();
    }
    json_response(200, obj)
}

/// `/api/v1/namespaces/{ns}/pods/{name}/eviction` -> (ns, name).
pub(super) fn parse_eviction(path: &str) -> Option<(&str, &str)> {
    let rest = path.strip_prefix("/api/v1/namespaces/")?;
    match rest.split('/').collect::<Vec<_>>().as_slice() {
        [ns, "pods", name, "eviction"] if !name.is_empty() => Some((ns, name)),
        _ => None,
    }
}

/// The eviction subresource (policy/v1 `Eviction`): deletes the pod and
/// answers 201 with a Success Status, as the real server does when no
/// disruption budget blocks it (a blocked eviction is a 429, injectable).
pub(super) fn evict(s: &mut State, ns: &str, name: &str, body: &[u8]) -> Response {
    let pods = &RESOURCES[0];
    let eviction: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => return bad_request(&format!("error decoding Eviction: {e}")),
    };
    if eviction["kind"].as_str().is_some_and(|k| k != "Eviction") {
        return bad_request("the body is not an Eviction");
    }
    let body_name = eviction["metadata"]["name"].as_str().unwrap_or(name);
    if body_name != name {
        return bad_request(&format!(
            "name in URL does not match name in Eviction object: {name} != {body_name}"
        ));
    }
    if s.objects.remove(&pods.item_path(ns, name)).is_none() {
        return not_found(pods, name);
    }
    s.resource_version += 1;
    json_response(
        201,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
    )
}
