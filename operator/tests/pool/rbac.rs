//! Every request the operator sends is allowed by `deploy/operator.yaml`.

use std::path::Path;
use std::time::Duration;

use plexus_netattach::ClientConfig;
use plexus_oci::model::NetworkType;
use plexus_operator::crd::NodePhase;
use plexus_operator::kube::HttpKube;
use plexus_operator::leader::Elector;
use serde_json::{json, Value};

use crate::support::{all_phase, Harness, POOL};

/// Every request the operator sent is allowed by deploy/operator.yaml's
/// ClusterRole (anywhere) or Role (in its namespace): the manifest's RBAC is
/// sufficient, and a right missing from it fails here.
fn assert_rbac_allows(requests: &[plexus_testkit::kube::RecordedRequest]) {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/operator.yaml"
    ))
    .unwrap();
    let mut rules: Vec<(Option<String>, Value)> = Vec::new();
    for doc in serde_norway::Deserializer::from_str(&text) {
        let v: Value = serde::Deserialize::deserialize(doc).unwrap();
        let ns = match v["kind"].as_str() {
            Some("ClusterRole") => None,
            Some("Role") => Some(v["metadata"]["namespace"].as_str().unwrap().to_owned()),
            _ => continue,
        };
        for r in v["rules"].as_array().unwrap() {
            rules.push((ns.clone(), r.clone()));
        }
    }
    let has = |list: &Value, x: &str| list.as_array().is_some_and(|l| l.iter().any(|i| i == x));
    for req in requests {
        let segs: Vec<&str> = req.path.trim_matches('/').split('/').collect();
        let (group, rest) = match segs.as_slice() {
            ["api", _v, rest @ ..] => ("", rest),
            ["apis", g, _v, rest @ ..] => (*g, rest),
            _ => panic!("unexpected path {}", req.path),
        };
        let (ns, rest) = match rest {
            ["namespaces", ns, rest @ ..] => (Some(*ns), rest),
            rest => (None, rest),
        };
        let (resource, name, collection) = match rest {
            [res] => (res.to_string(), None, true),
            [res, name] => (res.to_string(), Some(*name), false),
            [res, name, sub] => (format!("{res}/{sub}"), Some(*name), false),
            _ => panic!("unexpected path {}", req.path),
        };
        let verb = match (req.method.as_str(), collection) {
            ("GET", true) => "list",
            ("GET", false) => "get",
            ("POST", _) => "create",
            ("PUT", _) => "update",
            ("PATCH", _) => "patch",
            ("DELETE", _) => "delete",
            (m, _) => panic!("unexpected method {m}"),
        };
        let allowed = rules.iter().any(|(rule_ns, r)| {
            rule_ns.as_deref().is_none_or(|n| Some(n) == ns)
                && has(&r["apiGroups"], group)
                && has(&r["resources"], &resource)
                && has(&r["verbs"], verb)
                && (r["resourceNames"].is_null()
                    || name.is_some_and(|n| has(&r["resourceNames"], n)))
        });
        assert!(allowed, "RBAC in deploy/operator.yaml does not allow {verb} {group}/{resource} {ns:?} {name:?} ({} {})", req.method, req.path);
    }
}

#[test]
fn the_manifest_rbac_covers_every_call() {
    let h = Harness::new(&[("a", NetworkType::Paravirtualized)]);
    h.pool(1, true);
    h.kube.put_pod(json!({"metadata": {"name": "app", "namespace": "default"}, "spec": {"nodeName": "node-a"}})).unwrap();
    let op = h.operator(Duration::from_secs(30));
    h.advertise("node-a", 1);
    h.run_until(&op, "switched", |s| all_phase(s, 1, NodePhase::Ready));
    h.pool(0, true);
    h.run_until(&op, "shrunk", |s| {
        s.nodes.iter().all(|n| n.wanted == 0 && n.attaching == 0)
    });
    let cfg = format!("apiVersion: v1\nkind: Config\nclusters:\n- name: f\n  cluster:\n    server: {}\nusers:\n- name: u\n  user: {{}}\ncontexts:\n- name: f\n  context:\n    cluster: f\n    user: u\ncurrent-context: f\n", h.kube.url());
    let kube = HttpKube::new(
        ClientConfig::from_kubeconfig_str(&cfg, Path::new("/"), Path::new("kc")).unwrap(),
        "t",
    )
    .unwrap();
    let mut e = Elector::new(
        "kube-system",
        "plexus-operator",
        "a",
        Duration::from_secs(1),
    );
    assert!(e.try_lead(&kube) && e.try_lead(&kube));
    // The test's own pool writes are not the operator's.
    let ours: Vec<_> = h
        .kube
        .requests()
        .into_iter()
        .filter(|r| !(r.path == POOL && r.method == "PATCH"))
        .collect();
    assert!(ours.iter().any(|r| r.path.ends_with("/eviction")));
    assert_rbac_allows(&ours);
}
