//! The `NetworkAttachmentDefinition` CRD (`k8s.cni.cncf.io/v1`): metadata plus
//! a single `spec.config` string holding a CNI config or conflist.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::api::ObjectMeta;
use crate::RESOURCE_NAME_ANNOTATION;

/// API group/version of the CRD.
pub const NAD_API_VERSION: &str = "k8s.cni.cncf.io/v1";
/// Kind of the CRD.
pub const NAD_KIND: &str = "NetworkAttachmentDefinition";

/// Errors reading a NAD or its embedded CNI config.
#[derive(Debug, thiserror::Error)]
pub enum NadError {
    #[error("invalid NetworkAttachmentDefinition JSON: {0}")]
    Json(#[source] serde_json::Error),
    #[error(
        "NetworkAttachmentDefinition {0}: expected kind NetworkAttachmentDefinition, got {1:?}"
    )]
    WrongKind(String, String),
    /// A config-less NAD: Multus then looks for a file named like the NAD in its confDir.
    #[error("NetworkAttachmentDefinition {0} has an empty spec.config")]
    EmptyConfig(String),
    #[error("NetworkAttachmentDefinition {0}: spec.config is not valid JSON: {1}")]
    ConfigJson(String, #[source] serde_json::Error),
    #[error("NetworkAttachmentDefinition {0}: spec.config must be a JSON object")]
    ConfigNotObject(String),
}

/// `spec` of a NAD; the CRD schema has nothing but `config`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NadSpec {
    #[serde(default)]
    pub config: String,
}

/// A NetworkAttachmentDefinition as returned by the API server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkAttachmentDefinition {
    #[serde(rename = "apiVersion", default)]
    pub api_version: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: NadSpec,
}

impl NetworkAttachmentDefinition {
    /// Parses the API JSON of one NAD. `kind` may be absent (older fakes and
    /// list items omit it) but, when present, must be the NAD kind.
    pub fn from_json(body: &[u8]) -> Result<Self, NadError> {
        let nad: Self = serde_json::from_slice(body).map_err(NadError::Json)?;
        if !nad.kind.is_empty() && nad.kind != NAD_KIND {
            return Err(NadError::WrongKind(nad.qualified_name(), nad.kind));
        }
        Ok(nad)
    }

    /// `<namespace>/<name>`: the delegate name Multus uses in network-status,
    /// events and device-info file names.
    pub fn qualified_name(&self) -> String {
        format!("{}/{}", self.metadata.namespace, self.metadata.name)
    }

    /// The device-plugin resource (e.g. `oracle.com/vnic`) whose device this
    /// network consumes, from the `k8s.v1.cni.cncf.io/resourceName` annotation.
    pub fn resource_name(&self) -> Option<&str> {
        self.metadata
            .annotations
            .get(RESOURCE_NAME_ANNOTATION)
            .map(String::as_str)
            .filter(|s| !s.is_empty())
    }

    /// The delegate CNI config (conf or conflist) as JSON, with `name` set to
    /// the NAD name when the config has none (as the NAD client's
    /// `GetCNIConfig` does). An empty `spec.config` is [`NadError::EmptyConfig`]
    /// so the caller can fall back to a file in its conf dir.
    pub fn delegate_config(&self) -> Result<Value, NadError> {
        if self.spec.config.trim().is_empty() {
            return Err(NadError::EmptyConfig(self.qualified_name()));
        }
        let mut conf: Value = serde_json::from_str(&self.spec.config)
            .map_err(|e| NadError::ConfigJson(self.qualified_name(), e))?;
        let obj = conf
            .as_object_mut()
            .ok_or_else(|| NadError::ConfigNotObject(self.qualified_name()))?;
        let has_name = obj
            .get("name")
            .and_then(Value::as_str)
            .is_some_and(|n| !n.is_empty());
        if !has_name {
            obj.insert("name".into(), Value::String(self.metadata.name.clone()));
        }
        Ok(conf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURE: &str = include_str!("../tests/fixtures/nad_sriov_vnic.json");

    #[test]
    fn parses_api_json_with_resource_name() {
        let nad = NetworkAttachmentDefinition::from_json(FIXTURE.as_bytes()).unwrap();
        assert_eq!(nad.api_version, NAD_API_VERSION);
        assert_eq!(nad.qualified_name(), "default/sriov-vnic-1");
        assert_eq!(nad.resource_name(), Some("oracle.com/sriov_vnic"));
        let conf = nad.delegate_config().unwrap();
        assert_eq!(conf["type"], "host-device");
        assert_eq!(conf["name"], "sriov-vnic-1", "name injected from metadata");
        assert_eq!(conf["ipam"]["addresses"][0]["address"], "198.51.100.93/24");
    }

    #[test]
    fn keeps_an_explicit_config_name() {
        let mut nad = NetworkAttachmentDefinition::from_json(FIXTURE.as_bytes()).unwrap();
        nad.spec.config = r#"{"cniVersion":"1.0.0","name":"mine","plugins":[]}"#.into();
        assert_eq!(nad.delegate_config().unwrap()["name"], "mine");
    }

    #[test]
    fn empty_and_invalid_configs_are_errors() {
        let mut nad = NetworkAttachmentDefinition::from_json(FIXTURE.as_bytes()).unwrap();
        nad.spec.config = "  ".into();
        assert!(
            matches!(nad.delegate_config(), Err(NadError::EmptyConfig(n)) if n == "default/sriov-vnic-1")
        );
        nad.spec.config = "{nope".into();
        assert!(matches!(
            nad.delegate_config(),
            Err(NadError::ConfigJson(..))
        ));
        nad.spec.config = "[1]".into();
        assert!(matches!(
            nad.delegate_config(),
            Err(NadError::ConfigNotObject(_))
        ));
    }

    #[test]
    fn rejects_other_kinds() {
        let err = NetworkAttachmentDefinition::from_json(
            br#"{"kind":"Pod","metadata":{"name":"x","namespace":"d"}}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("\"Pod\""), "{err}");
    }
}
