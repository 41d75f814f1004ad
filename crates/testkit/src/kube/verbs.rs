//! The verbs on stored objects: list, create, update (PUT) and patch (the
//! four PATCH content types), with the body validation and the
//! precondition checks (`commit`) the real server applies on writes.

use axum::response::Response;
use serde_json::{json, Map, Value};

use super::jsonpatch::{json_patch, merge_patch};
use super::resource::Resource;
use super::state::{new_uid, now_rfc3339, State};
use super::status::{
    bad_request, conflict, failure, invalid, json_response, not_found, uid_conflict, unprocessable,
    OPTIMISTIC_LOCK,
};
pub(super) fn list(s: &State, res: &Resource, ns: Option<&str>) -> Response {
    let prefix = match ns {
        _ if !res.namespaced => format!("{}/{}/", res.prefix(), res.plural),
        Some(ns) => format!("{}/namespaces/{ns}/{}/", res.prefix(), res.plural),
        None => format!("{}/namespaces/", res.prefix()),
    };
    let items: Vec<Value> = s
        .objects
        .range(prefix.clone()..)
        .take_while(|(k, _)| k.starts_with(&prefix))
        .filter(|(k, _)| {
            // Cluster-wide: keep only this resource's items.
            k.split('/').rev().nth(1) == Some(res.plural)
        })
        .map(|(_, v)| {
            let mut item = v.clone();
            // Built-in lists omit each item's kind/apiVersion; CR lists keep them.
            if res.builtin {
                if let Some(o) = item.as_object_mut() {
                    o.remove("kind");
                    o.remove("apiVersion");
                }
            }
            item
        })
        .collect();
    json_response(
        200,
        &json!({
            "kind": res.list_kind,
            "apiVersion": res.api_version(),
            "metadata": {"resourceVersion": s.resource_version.to_string()},
            "items": items,
        }),
    )
}

fn decode_body(res: &Resource, body: &[u8]) -> Result<Map<String, Value>, Box<Response>> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(o)) => Ok(o),
        Ok(_) => Err(Box::new(bad_request(&format!(
            "{} in version \"{}\" cannot be handled as a {}: body is not a JSON object",
            res.kind, res.version, res.kind
        )))),
        Err(e) => Err(Box::new(bad_request(&format!(
            "{} in version \"{}\" cannot be handled as a {}: {e}",
            res.kind, res.version, res.kind
        )))),
    }
}

/// Schema checks the real server applies that our tests can trip.
fn validate(
    res: &Resource,
    ns: &str,
    name: &str,
    obj: &Map<String, Value>,
) -> Result<(), Box<Response>> {
    if let Some(kind) = obj.get("kind").and_then(Value::as_str) {
        if kind != res.kind {
            return Err(Box::new(bad_request(&format!(
                "{} in version \"{}\" cannot be handled as a {}: kind {kind:?} does not match",
                res.kind, res.version, res.kind
            ))));
        }
    }
    if res.plural == "network-attachment-definitions" {
        if let Some(config) = obj.get("spec").and_then(|s| s.get("config")) {
            if !config.is_string() {
                let ty = json_type(config);
                return Err(Box::new(invalid(
                    res,
                    name,
                    &format!("spec.config: Invalid value: \"{ty}\": spec.config in body must be of type string: \"{ty}\""),
                )));
            }
        }
    }
    if res.plural == "events" && res.group.is_empty() {
        let involved_ns = obj
            .get("involvedObject")
            .and_then(|i| i.get("namespace"))
            .and_then(Value::as_str)
            .unwrap_or("");
        // Events about cluster-scoped objects (nodes, VnicPools) live in
        // "default", as the real validation allows.
        let cluster_scoped_ok = involved_ns.is_empty() && ns == "default";
        if involved_ns != ns && !cluster_scoped_ok {
            return Err(Box::new(invalid(
                res,
                name,
                &format!("involvedObject.namespace: Invalid value: \"{involved_ns}\": does not match event.namespace"),
            )));
        }
    }
    Ok(())
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn meta_str<'a>(obj: &'a Map<String, Value>, key: &str) -> &'a str {
    obj.get("metadata")
        .and_then(|m| m.get(key))
        .and_then(Value::as_str)
        .unwrap_or("")
}

pub(super) fn create(s: &mut State, res: &Resource, ns: &str, body: &[u8]) -> Response {
    let mut obj = match decode_body(res, body) {
        Ok(o) => o,
        Err(r) => return *r,
    };
    let body_ns = meta_str(&obj, "namespace");
    if res.namespaced && !body_ns.is_empty() && body_ns != ns {
        return bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        );
    }
    let mut name = meta_str(&obj, "name").to_owned();
    if name.is_empty() {
        let generate = meta_str(&obj, "generateName");
        if generate.is_empty() {
            return invalid(
                res,
                "",
                "metadata.name: Required value: name or generateName is required",
            );
        }
        name = format!("{generate}{}", &new_uid()[..5]);
    }
    if let Err(r) = validate(res, ns, &name, &obj) {
        return *r;
    }
    let path = res.item_path(ns, &name);
    if s.objects.contains_key(&path) {
        return failure(
            409,
            "AlreadyExists",
            &format!("{} \"{name}\" already exists", res.qualified()),
            Some(res.details(&name)),
        );
    }
    s.resource_version += 1;
    obj.insert("apiVersion".into(), res.api_version().into());
    obj.insert("kind".into(), res.kind.into());
    let meta = obj.entry("metadata").or_insert_with(|| json!({}));
    if let Some(meta) = meta.as_object_mut() {
        meta.insert("name".into(), name.into());
        if res.namespaced {
            meta.insert("namespace".into(), ns.into());
        } else {
            meta.remove("namespace");
        }
        if res.generation {
            meta.insert("generation".into(), 1.into());
        }
        meta.insert("uid".into(), new_uid().into());
        meta.insert(
            "resourceVersion".into(),
            s.resource_version.to_string().into(),
        );
        meta.insert("creationTimestamp".into(), now_rfc3339().into());
    }
    let obj = Value::Object(obj);
    s.objects.insert(path, obj.clone());
    json_response(201, &obj)
}

/// Checks preconditions carried in the new object, stamps server-owned
/// fields, stores it and answers 200.
fn commit(
    s: &mut State,
    item: ItemRef<'_>,
    old: &Value,
    mut new: Map<String, Value>,
    require_rv: bool,
) -> Response {
    let ItemRef {
        res,
        ns,
        name,
        status: status_only,
    } = item;
    let old_uid = old["metadata"]["uid"].as_str().unwrap_or("");
    let old_rv = old["metadata"]["resourceVersion"].as_str().unwrap_or("");
    let new_uid = meta_str(&new, "uid").to_owned();
    if !new_uid.is_empty() && new_uid != old_uid {
        return uid_conflict(res, ns, name, &new_uid, old_uid);
    }
    let new_name = meta_str(&new, "name");
    if !new_name.is_empty() && new_name != name {
        return bad_request(&format!(
            "the name of the object ({new_name}) does not match the name on the URL ({name})"
        ));
    }
    let new_rv = meta_str(&new, "resourceVersion").to_owned();
    if new_rv.is_empty() && require_rv && !res.unconditional_update {
        return invalid(
            res,
            name,
            "metadata.resourceVersion: Invalid value: 0x0: must be specified for an update",
        );
    }
    if !new_rv.is_empty() && new_rv != old_rv {
        return conflict(res, name, OPTIMISTIC_LOCK);
    }
    if let Err(r) = validate(res, ns, name, &new) {
        return *r;
    }
    if status_only {
        // pods/status ignores spec changes (metadata and status go through).
        match old.get("spec") {
            Some(spec) => new.insert("spec".into(), spec.clone()),
            None => new.remove("spec"),
        };
    } else if res.has_status {
        // The main resource ignores status changes.
        match old.get("status") {
            Some(st) => new.insert("status".into(), st.clone()),
            None => new.remove("status"),
        };
    }
    s.resource_version += 1;
    let new_spec = new.get("spec").cloned();
    new.insert("apiVersion".into(), res.api_version().into());
    new.insert("kind".into(), res.kind.into());
    let meta = new.entry("metadata").or_insert_with(|| json!({}));
    if !meta.is_object() {
        *meta = json!({});
    }
    if let Some(meta) = meta.as_object_mut() {
        meta.insert("name".into(), name.into());
        if res.namespaced {
            meta.insert("namespace".into(), ns.into());
        }
        if res.generation {
            let old_gen = old["metadata"]["generation"].as_u64().unwrap_or(1);
            let bumped = !status_only && new_spec != old.get("spec").cloned();
            meta.insert("generation".into(), (old_gen + u64::from(bumped)).into());
        }
        meta.insert("uid".into(), old_uid.into());
        meta.insert(
            "resourceVersion".into(),
            s.resource_version.to_string().into(),
        );
        if let Some(ts) = old["metadata"].get("creationTimestamp") {
            meta.insert("creationTimestamp".into(), ts.clone());
        }
    }
    let new = Value::Object(new);
    s.objects.insert(res.item_path(ns, name), new.clone());
    json_response(200, &new)
}

/// One addressed object (optionally its status subresource).
#[derive(Clone, Copy)]
pub(super) struct ItemRef<'a> {
    pub(super) res: &'a Resource,
    pub(super) ns: &'a str,
    pub(super) name: &'a str,
    pub(super) status: bool,
}

pub(super) fn update(s: &mut State, item: ItemRef<'_>, body: &[u8]) -> Response {
    let ItemRef { res, ns, name, .. } = item;
    let new = match decode_body(res, body) {
        Ok(o) => o,
        Err(r) => return *r,
    };
    let Some(old) = s.objects.get(&res.item_path(ns, name)).cloned() else {
        return not_found(res, name);
    };
    commit(s, item, &old, new, true)
}

pub(super) fn patch(
    s: &mut State,
    item: ItemRef<'_>,
    content_type: &str,
    query: &str,
    body: &[u8],
) -> Response {
    let ItemRef { res, ns, name, .. } = item;
    let media = content_type.split(';').next().unwrap_or("").trim();
    let kind = match media {
        "application/merge-patch+json" => PatchKind::Merge,
        "application/strategic-merge-patch+json" if res.builtin => PatchKind::Merge,
        "application/json-patch+json" => PatchKind::Json,
        "application/apply-patch+yaml" => {
            let has_manager = query
                .split('&')
                .any(|kv| kv.strip_prefix("fieldManager=").is_some_and(|v| !v.is_empty()));
            if !has_manager {
                return bad_request("PATCH /apply requests require a fieldManager query parameter: fieldManager is required for apply requests");
            }
            PatchKind::Merge
        }
        _ => {
            return failure(
                415,
                "UnsupportedMediaType",
                &format!(
                    "the body of the request was in an unknown format - accepted media types include: {}",
                    res.accepted_patch_types()
                ),
                None,
            )
        }
    };
    let Some(old) = s.objects.get(&res.item_path(ns, name)).cloned() else {
        return not_found(res, name);
    };
    let patch: Value = match serde_json::from_slice(body) {
        Ok(p) => p,
        Err(e) => return bad_request(&format!("error decoding patch: {e}")),
    };
    let patched = match kind {
        PatchKind::Merge => {
            if !patch.is_object() {
                return bad_request("error decoding patch: patch is not a JSON object");
            }
            let mut target = old.clone();
            merge_patch(&mut target, &patch);
            target
        }
        PatchKind::Json => match json_patch(&old, &patch) {
            Ok(v) => v,
            Err(e) => return unprocessable(&e),
        },
    };
    let Value::Object(new) = patched else {
        return unprocessable("patched object is not a JSON object");
    };
    // A patch cannot change the uid: the server validates the patched
    // object (422 Invalid); only a PUT treats `metadata.uid` as a storage
    // precondition (409, in `commit`). Measured on kube-apiserver v1.28.
    let (old_uid, new_uid) = (
        old["metadata"]["uid"].as_str().unwrap_or(""),
        meta_str(&new, "uid"),
    );
    if !new_uid.is_empty() && new_uid != old_uid {
        return invalid(
            res,
            name,
            &format!("metadata.uid: Invalid value: \"{new_uid}\": field is immutable"),
        );
    }
    commit(s, item, &old, new, false)
}

enum PatchKind {
    Merge,
    Json,
}
