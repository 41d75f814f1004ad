//! Reading the manifests: YAML documents by kind, DaemonSets, NAD configs, env and paths.

use std::fs;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

pub(crate) fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

pub(crate) fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            yaml_files(&p, out);
        } else if matches!(p.extension().and_then(|x| x.to_str()), Some("yaml" | "yml")) {
            out.push(p);
        }
    }
}

/// All documents of all YAML files under `sub`, as JSON values.
pub(crate) fn docs(sub: &str) -> Vec<(PathBuf, Value)> {
    let mut files = Vec::new();
    yaml_files(&repo().join(sub), &mut files);
    files.sort();
    assert!(!files.is_empty(), "no YAML under {sub}");
    let mut out = Vec::new();
    for f in files {
        let text = fs::read_to_string(&f).unwrap();
        for d in serde_norway::Deserializer::from_str(&text) {
            let v = Value::deserialize(d).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            if v.is_null() {
                continue;
            }
            assert!(
                v["apiVersion"].is_string() && v["kind"].is_string(),
                "{}: document without apiVersion/kind",
                f.display()
            );
            out.push((f.clone(), v));
        }
    }
    out
}

/// The node side's manifest only: `deploy/operator.yaml` carries its own
/// CRD and RBAC, checked by the operator's tests.
pub(crate) fn plexus_manifest() -> Vec<(PathBuf, Value)> {
    docs("deploy")
        .into_iter()
        .filter(|(p, _)| p.ends_with("plexus.yaml"))
        .collect()
}

pub(crate) fn of_kind<'a>(all: &'a [(PathBuf, Value)], kind: &str) -> Vec<&'a Value> {
    all.iter()
        .filter(|(_, v)| v["kind"] == kind)
        .map(|(_, v)| v)
        .collect()
}

pub(crate) fn daemonset<'a>(all: &'a [(PathBuf, Value)], name: &str) -> &'a Value {
    of_kind(all, "DaemonSet")
        .into_iter()
        .find(|d| d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no DaemonSet {name}"))
}

pub(crate) fn nad_config(nad: &Value) -> Value {
    let text = nad["spec"]["config"].as_str().unwrap();
    serde_json::from_str(text).unwrap_or_else(|e| panic!("NAD config is not JSON ({e}): {text}"))
}

pub(crate) fn pod_networks(pod: &Value) -> Vec<String> {
    pod["metadata"]["annotations"]["k8s.v1.cni.cncf.io/networks"]
        .as_str()
        .unwrap()
        .split(',')
        .map(|s| s.trim().to_string())
        .collect()
}

/// The DaemonSet's env for the agent container (literal values only).
pub(crate) fn daemonset_env(c: &Value) -> Vec<(String, String)> {
    c["env"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| Some((e["name"].as_str()?.into(), e["value"].as_str()?.into())))
        .collect()
}

/// `path` (absolute, as the container sees it) under `base`.
pub(crate) fn under(base: &Path, path: &str) -> PathBuf {
    base.join(path.trim_start_matches('/'))
}
