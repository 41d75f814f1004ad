//! Unit tests of the fake's helpers: path matching, patches, uids.

use serde_json::json;

use super::jsonpatch::{json_patch, merge_patch};
use super::state::{new_uid, now_rfc3339, Matcher};

#[test]
fn matcher_segments() {
    let m = Matcher::new("PATCH", "/api/v1/namespaces/*/pods");
    assert!(m.matches("PATCH", "/api/v1/namespaces/default/pods/p/status"));
    assert!(!m.matches("GET", "/api/v1/namespaces/default/pods/p"));
    assert!(!m.matches("PATCH", "/api/v1/namespaces/default/events"));
    assert!(Matcher::new("*", "/").matches("GET", "/anything"));
}

#[test]
fn merge_patch_rfc7386_examples() {
    let mut doc = json!({"a": "b", "c": {"d": "e", "f": "g"}});
    merge_patch(&mut doc, &json!({"a": "z", "c": {"f": null}}));
    assert_eq!(doc, json!({"a": "z", "c": {"d": "e"}}));
    let mut doc = json!({"a": [1]});
    merge_patch(&mut doc, &json!({"a": {"b": "c"}}));
    assert_eq!(doc, json!({"a": {"b": "c"}}));
}

#[test]
fn json_patch_rfc6902_ops() {
    let doc = json!({"foo": ["bar", "baz"], "m": {"a/b": 1}});
    let out = json_patch(
        &doc,
        &json!([
            {"op": "add", "path": "/foo/1", "value": "qux"},
            {"op": "remove", "path": "/foo/0"},
            {"op": "replace", "path": "/m/a~1b", "value": 2},
            {"op": "copy", "from": "/m", "path": "/n"},
            {"op": "move", "from": "/n", "path": "/o"},
            {"op": "add", "path": "/foo/-", "value": "end"},
            {"op": "test", "path": "/o/a~1b", "value": 2}
        ]),
    )
    .unwrap();
    assert_eq!(
        out,
        json!({"foo": ["qux", "baz", "end"], "m": {"a/b": 2}, "o": {"a/b": 2}})
    );
    assert!(json_patch(
        &doc,
        &json!([{"op": "test", "path": "/foo/0", "value": "x"}])
    )
    .is_err());
    assert!(json_patch(&doc, &json!([{"op": "remove", "path": "/nope"}])).is_err());
}

#[test]
fn uids_look_like_v4_uuids() {
    let a = new_uid();
    assert_eq!(a.len(), 36);
    assert_eq!(&a[14..15], "4");
    assert_ne!(a, new_uid());
    assert_eq!(now_rfc3339().len(), 20);
}
