//! `deploy/plexus.yaml` as the Kubernetes API sees it: every document
//! decoded into its `k8s-openapi` type, strictly. Those types ignore unknown
//! fields, so a misspelled key (`imagePulPolicy`) would silently vanish; we
//! re-encode each typed object and require it to equal the YAML document,
//! which turns every unknown or misplaced field into an error naming it.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The manifest users apply.
pub fn path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/plexus.yaml")
}

/// Every non-empty YAML document of `text`, as JSON.
pub fn documents(text: &str) -> Result<Vec<Value>> {
    let mut out = Vec::new();
    for d in serde_norway::Deserializer::from_str(text) {
        let v = Value::deserialize(d).context("parsing YAML")?;
        if !v.is_null() {
            out.push(v);
        }
    }
    Ok(out)
}

/// The first place where `typed` (re-encoded) and `raw` differ.
fn first_difference(path: &str, raw: &Value, typed: &Value) -> Option<String> {
    match (raw, typed) {
        (Value::Object(r), Value::Object(t)) => {
            for (k, rv) in r {
                let p = format!("{path}.{k}");
                match t.get(k) {
                    None => return Some(format!("{p}: not a field of the API type")),
                    Some(tv) => {
                        if let Some(d) = first_difference(&p, rv, tv) {
                            return Some(d);
                        }
                    }
                }
            }
            t.keys()
                .find(|k| !r.contains_key(*k))
                .map(|k| format!("{path}.{k}: added by the API type"))
        }
        (Value::Array(r), Value::Array(t)) if r.len() == t.len() => r
            .iter()
            .zip(t)
            .enumerate()
            .find_map(|(i, (rv, tv))| first_difference(&format!("{path}[{i}]"), rv, tv)),
        _ if raw == typed => None,
        _ => Some(format!("{path}: {raw} reads back as {typed}")),
    }
}

/// Decodes `doc` as `T` and fails unless re-encoding gives `doc` back.
pub fn strict<T: DeserializeOwned + Serialize>(doc: &Value) -> Result<T> {
    let typed: T = serde_json::from_value(doc.clone())
        .with_context(|| format!("{} {}", doc["kind"], doc["metadata"]["name"]))?;
    let back = serde_json::to_value(&typed)?;
    if let Some(d) = first_difference("", doc, &back) {
        bail!("{} {}: {d}", doc["kind"], doc["metadata"]["name"]);
    }
    Ok(typed)
}

/// The typed objects of the manifest.
#[derive(Debug, Default)]
pub struct Manifest {
    pub crds: Vec<CustomResourceDefinition>,
    pub service_accounts: Vec<ServiceAccount>,
    pub cluster_roles: Vec<ClusterRole>,
    pub cluster_role_bindings: Vec<ClusterRoleBinding>,
    pub daemon_sets: Vec<DaemonSet>,
}

impl Manifest {
    /// Parses `text` strictly; an unknown kind is an error too.
    pub fn parse(text: &str) -> Result<Self> {
        let mut m = Self::default();
        for doc in documents(text)? {
            match (doc["apiVersion"].as_str(), doc["kind"].as_str()) {
                (Some("apiextensions.k8s.io/v1"), Some("CustomResourceDefinition")) => {
                    m.crds.push(strict(&doc)?)
                }
                (Some("v1"), Some("ServiceAccount")) => m.service_accounts.push(strict(&doc)?),
                (Some("rbac.authorization.k8s.io/v1"), Some("ClusterRole")) => {
                    m.cluster_roles.push(strict(&doc)?)
                }
                (Some("rbac.authorization.k8s.io/v1"), Some("ClusterRoleBinding")) => {
                    m.cluster_role_bindings.push(strict(&doc)?)
                }
                (Some("apps/v1"), Some("DaemonSet")) => m.daemon_sets.push(strict(&doc)?),
                (v, k) => bail!("unexpected document {v:?} {k:?}"),
            }
        }
        Ok(m)
    }

    /// `deploy/plexus.yaml`.
    pub fn load() -> Result<Self> {
        let p = path();
        let text =
            std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
        Self::parse(&text).with_context(|| p.display().to_string())
    }

    /// The one DaemonSet.
    pub fn daemon_set(&self) -> Result<&DaemonSet> {
        match self.daemon_sets.as_slice() {
            [ds] => Ok(ds),
            other => Err(anyhow!("{} DaemonSets in the manifest", other.len())),
        }
    }
}
