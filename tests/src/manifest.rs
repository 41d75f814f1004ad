//! The manifests under `deploy/` as the Kubernetes API sees them: every document
//! decoded into its `k8s-openapi` type, strictly. Those types ignore unknown
//! fields, so a misspelled key (`imagePulPolicy`) would silently vanish; we
//! re-encode each typed object and require it to equal the YAML document,
//! which turns every unknown or misplaced field into an error naming it.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{PodSpec, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The manifest users apply.
pub fn path() -> PathBuf {
    deploy_dir().join("plexus.yaml")
}

/// `deploy/`: every manifest we ship.
pub fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

/// Every `*.yaml` under `deploy/`, sorted.
pub fn all_paths() -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(deploy_dir()).context("reading deploy/")? {
        let p = e?.path();
        if p.extension().is_some_and(|x| x == "yaml") {
            out.push(p);
        }
    }
    out.sort();
    Ok(out)
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
        // A schema's `minimum: 0` is an f64 in the API type (reads back 0.0).
        (Value::Number(r), Value::Number(t)) if r.as_f64() == t.as_f64() => None,
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
    pub roles: Vec<Role>,
    pub role_bindings: Vec<RoleBinding>,
    pub daemon_sets: Vec<DaemonSet>,
    pub deployments: Vec<Deployment>,
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
                (Some("rbac.authorization.k8s.io/v1"), Some("Role")) => m.roles.push(strict(&doc)?),
                (Some("rbac.authorization.k8s.io/v1"), Some("RoleBinding")) => {
                    m.role_bindings.push(strict(&doc)?)
                }
                (Some("apps/v1"), Some("DaemonSet")) => m.daemon_sets.push(strict(&doc)?),
                (Some("apps/v1"), Some("Deployment")) => m.deployments.push(strict(&doc)?),
                (v, k) => bail!("unexpected document {v:?} {k:?}"),
            }
        }
        Ok(m)
    }

    /// `deploy/plexus.yaml`.
    pub fn load() -> Result<Self> {
        Self::load_file(&path())
    }

    /// One manifest file, parsed strictly.
    pub fn load_file(p: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
        Self::parse(&text).with_context(|| p.display().to_string())
    }

    /// The pod templates of every workload (DaemonSets, Deployments), each
    /// named by its kind and name.
    pub fn pod_specs(&self) -> Vec<(String, &PodSpec)> {
        let ds = self.daemon_sets.iter().filter_map(|d| {
            let spec = d.spec.as_ref()?.template.spec.as_ref()?;
            Some((format!("DaemonSet {}", d.metadata.name.as_deref()?), spec))
        });
        let dep = self.deployments.iter().filter_map(|d| {
            let spec = d.spec.as_ref()?.template.spec.as_ref()?;
            Some((format!("Deployment {}", d.metadata.name.as_deref()?), spec))
        });
        ds.chain(dep).collect()
    }

    /// The one DaemonSet.
    pub fn daemon_set(&self) -> Result<&DaemonSet> {
        match self.daemon_sets.as_slice() {
            [ds] => Ok(ds),
            other => Err(anyhow!("{} DaemonSets in the manifest", other.len())),
        }
    }
}
