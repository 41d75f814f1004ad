//! Network configuration (SPEC §1): a plugin's `NetConf`, the `NetConfList`
//! a runtime reads, and the libcni rules for turning one list entry into the
//! JSON a plugin receives (inject `name`, `cniVersion`, `prevResult`, and the
//! `runtimeConfig` subset the plugin declared in `capabilities`).
//!
//! Unknown keys are kept verbatim (`extra`), so a meta plugin can pass a
//! delegate's config through unchanged.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::CniError;
use crate::result::{CniResult, Dns};
use crate::version;

/// One plugin's configuration, as read from stdin.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetConf {
    /// Spec version of this config (empty means 0.1.0).
    #[serde(
        default,
        deserialize_with = "crate::nullable::nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub cni_version: String,
    /// Network name.
    #[serde(
        default,
        deserialize_with = "crate::nullable::nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub name: String,
    /// Plugin type (binary name).
    #[serde(
        rename = "type",
        default,
        deserialize_with = "crate::nullable::nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub plugin_type: String,
    /// Declared capabilities (`{"ips": true}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<Map<String, Value>>,
    /// IPAM section, kept raw because each IPAM plugin defines its own keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipam: Option<Value>,
    /// Well-known DNS section.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<Dns>,
    /// `args` (e.g. `args.cni.ips`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<Value>,
    /// Runtime-provided values for declared capabilities.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_config: Option<Value>,
    /// Result of the previous plugin in a chain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prev_result: Option<Value>,
    /// Every other key, preserved in order.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The common view of the `ipam` section.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct IpamConf {
    /// IPAM plugin type.
    #[serde(rename = "type", default)]
    pub plugin_type: String,
}

impl NetConf {
    /// Parses stdin; code 6 on bad JSON.
    pub fn parse(bytes: &[u8]) -> Result<Self, CniError> {
        serde_json::from_slice(bytes)
            .map_err(|e| CniError::decode(format!("failed to load netconf: {e}")))
    }

    /// `cniVersion`, or 0.1.0 when unset (libcni's default).
    pub fn version(&self) -> &str {
        if self.cni_version.is_empty() {
            version::DEFAULT_CONFIG_VERSION
        } else {
            &self.cni_version
        }
    }

    /// The `ipam.type` view; `None` when there is no `ipam` key.
    pub fn ipam_conf(&self) -> Result<Option<IpamConf>, CniError> {
        match &self.ipam {
            None | Some(Value::Null) => Ok(None),
            Some(v) => serde_json::from_value(v.clone())
                .map(Some)
                .map_err(|e| CniError::decode(format!("failed to parse ipam: {e}"))),
        }
    }

    /// Whether the plugin declared `capability` as true.
    pub fn has_capability(&self, capability: &str) -> bool {
        self.capabilities
            .as_ref()
            .and_then(|c| c.get(capability))
            .and_then(Value::as_bool)
            .unwrap_or(false)
    }

    /// Typed `runtimeConfig` (all fields empty when absent).
    pub fn runtime(&self) -> Result<RuntimeConfig, CniError> {
        match &self.runtime_config {
            None | Some(Value::Null) => Ok(RuntimeConfig::default()),
            Some(v) => serde_json::from_value(v.clone())
                .map_err(|e| CniError::decode(format!("failed to parse runtimeConfig: {e}"))),
        }
    }

    /// `prevResult` parsed with this config's version, as libcni's
    /// `ParsePrevResult` does.
    pub fn parse_prev_result(&self) -> Result<Option<CniResult>, CniError> {
        match &self.prev_result {
            None | Some(Value::Null) => Ok(None),
            Some(v) => CniResult::from_json_as(v, self.version()).map(Some),
        }
    }

    /// GC attachments (`cni.dev/valid-attachments`, falling back to the
    /// spec-1.1.0 spelling `cni.dev/attachments`). Top-level config keys.
    pub fn valid_attachments(&self) -> Result<Option<Vec<GcAttachment>>, CniError> {
        for key in [VALID_ATTACHMENTS_KEY, ATTACHMENTS_KEY] {
            if let Some(v) = self.extra.get(key).filter(|v| !v.is_null()) {
                return serde_json::from_value(v.clone())
                    .map(Some)
                    .map_err(|e| CniError::decode(format!("failed to parse {key}: {e}")));
            }
        }
        Ok(None)
    }

    /// Serializes back to JSON bytes (unknown keys included).
    pub fn to_bytes(&self) -> Result<Vec<u8>, CniError> {
        serde_json::to_vec(self)
            .map_err(|e| CniError::generic(format!("failed to encode netconf: {e}")))
    }
}

/// The GC key libcni sends today.
pub const VALID_ATTACHMENTS_KEY: &str = "cni.dev/valid-attachments";
/// The key spec-v1.1.0 named; libcni sends both.
pub const ATTACHMENTS_KEY: &str = "cni.dev/attachments";

/// One attachment still valid during GC.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GcAttachment {
    /// Container id.
    #[serde(rename = "containerID", alias = "containerId")]
    pub container_id: String,
    /// Interface name in the container.
    pub ifname: String,
}

/// Typed `runtimeConfig` (CONVENTIONS.md capabilities). Accepts both the
/// documented camelCase keys and the Go field names containerd sends.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeConfig {
    /// `portMappings`.
    #[serde(
        default,
        deserialize_with = "crate::nullable::nullable",
        alias = "PortMappings",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub port_mappings: Vec<PortMapping>,
    /// `bandwidth`.
    #[serde(default, alias = "Bandwidth", skip_serializing_if = "Option::is_none")]
    pub bandwidth: Option<Bandwidth>,
    /// `dns`.
    #[serde(default, alias = "DNS", skip_serializing_if = "Option::is_none")]
    pub dns: Option<RuntimeDns>,
    /// `ips`: requested addresses (CIDR strings, validated by IPAM).
    #[serde(
        default,
        deserialize_with = "crate::nullable::nullable",
        alias = "IPs",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub ips: Vec<String>,
    /// `mac`: requested MAC.
    #[serde(default, alias = "MAC", skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// `deviceID`: PCI address (or other id) from a device plugin.
    #[serde(
        default,
        rename = "deviceID",
        alias = "DeviceID",
        skip_serializing_if = "Option::is_none"
    )]
    pub device_id: Option<String>,
    /// `infinibandGUID`.
    #[serde(
        default,
        rename = "infinibandGUID",
        alias = "InfinibandGUID",
        skip_serializing_if = "Option::is_none"
    )]
    pub infiniband_guid: Option<String>,
    /// `ipRanges`, raw (host-local's format).
    #[serde(default, alias = "IPRanges", skip_serializing_if = "Option::is_none")]
    pub ip_ranges: Option<Value>,
    /// `aliases`.
    #[serde(
        default,
        deserialize_with = "crate::nullable::nullable",
        alias = "Aliases",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub aliases: Vec<String>,
    /// `cgroupPath`.
    #[serde(default, alias = "CgroupPath", skip_serializing_if = "Option::is_none")]
    pub cgroup_path: Option<String>,
    /// Any other capability, preserved.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One `portMappings` entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortMapping {
    /// Host port.
    #[serde(alias = "HostPort")]
    pub host_port: u16,
    /// Container port.
    #[serde(alias = "ContainerPort")]
    pub container_port: u16,
    /// `tcp`/`udp`/`sctp`; left out when empty (the plugin's default).
    #[serde(
        default,
        deserialize_with = "crate::nullable::nullable",
        alias = "Protocol",
        skip_serializing_if = "String::is_empty"
    )]
    pub protocol: String,
    /// Host IP to bind, if any.
    #[serde(
        default,
        rename = "hostIP",
        alias = "HostIP",
        skip_serializing_if = "Option::is_none"
    )]
    pub host_ip: Option<IpAddr>,
}

/// The `bandwidth` capability (bits per second / bits).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Bandwidth {
    /// Ingress rate.
    #[serde(default, alias = "IngressRate")]
    pub ingress_rate: u64,
    /// Ingress burst.
    #[serde(default, alias = "IngressBurst")]
    pub ingress_burst: u64,
    /// Egress rate.
    #[serde(default, alias = "EgressRate")]
    pub egress_rate: u64,
    /// Egress burst.
    #[serde(default, alias = "EgressBurst")]
    pub egress_burst: u64,
}

/// The `dns` capability (runtime-provided resolver settings).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuntimeDns {
    /// Name servers.
    #[serde(
        default,
        deserialize_with = "crate::nullable::nullable",
        alias = "Servers"
    )]
    pub servers: Vec<String>,
    /// Search domains.
    #[serde(
        default,
        deserialize_with = "crate::nullable::nullable",
        alias = "Searches"
    )]
    pub searches: Vec<String>,
    /// Options.
    #[serde(
        default,
        deserialize_with = "crate::nullable::nullable",
        alias = "Options"
    )]
    pub options: Vec<String>,
}

/// A network configuration list (`.conflist`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetConfList {
    /// Spec version.
    #[serde(
        default,
        deserialize_with = "crate::nullable::nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub cni_version: String,
    /// Versions the list is valid for (1.1.0); the highest supported wins.
    #[serde(
        default,
        deserialize_with = "crate::nullable::nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub cni_versions: Vec<String>,
    /// Network name.
    #[serde(default, deserialize_with = "crate::nullable::nullable")]
    pub name: String,
    /// The runtime must not call CHECK.
    #[serde(
        default,
        deserialize_with = "crate::nullable::nullable",
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub disable_check: bool,
    /// The runtime must not call GC (1.1.0).
    #[serde(
        default,
        rename = "disableGC",
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub disable_gc: bool,
    /// Do not load plugins from `<confdir>/<name>/` (1.1.0).
    #[serde(
        default,
        deserialize_with = "crate::nullable::nullable",
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub load_only_inlined_plugins: bool,
    /// Plugin configs, raw so unknown keys survive.
    #[serde(default, deserialize_with = "crate::nullable::nullable")]
    pub plugins: Vec<Value>,
    /// Other keys.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl NetConfList {
    /// Parses a conflist; code 6 on bad JSON, code 7 without name or plugins.
    pub fn parse(bytes: &[u8]) -> Result<Self, CniError> {
        let list: Self = serde_json::from_slice(bytes)
            .map_err(|e| CniError::decode(format!("error parsing configuration list: {e}")))?;
        if list.name.is_empty() {
            return Err(CniError::invalid_config(
                "error parsing configuration list: no name",
            ));
        }
        if list.plugins.is_empty() {
            return Err(CniError::invalid_config(
                "error parsing configuration list: no plugins in list",
            ));
        }
        Ok(list)
    }

    /// Wraps a single `.conf` the way libcni's `ConfListFromConf` does.
    pub fn from_conf(conf: &Value) -> Self {
        let s = |k: &str| {
            conf.get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        Self {
            cni_version: s("cniVersion"),
            name: s("name"),
            plugins: vec![conf.clone()],
            ..Self::default()
        }
    }

    /// The version to run the list at: the highest of `cniVersions` that is
    /// in `supported`, else `cniVersion`.
    pub fn effective_version(&self, supported: &[&str]) -> String {
        let best = self
            .cni_versions
            .iter()
            .filter(|v| supported.contains(&v.as_str()))
            .filter_map(|v| version::Version::parse(v).ok().map(|p| (p, v)))
            .max_by_key(|(p, _)| *p)
            .map(|(_, v)| v.clone());
        best.unwrap_or_else(|| self.cni_version.clone())
    }
}

/// Builds the JSON one plugin of a list receives, like libcni's
/// `buildOneConfig`: inject `name` and `cniVersion`, `prevResult` when given,
/// and `runtimeConfig` holding only the capabilities the plugin declared true
/// and the runtime provided.
pub fn build_plugin_conf(
    plugin: &Value,
    name: &str,
    cni_version: &str,
    prev_result: Option<&Value>,
    capability_args: &Map<String, Value>,
) -> Result<Value, CniError> {
    let Value::Object(orig) = plugin else {
        return Err(CniError::invalid_config(
            "plugin config is not a JSON object",
        ));
    };
    let mut out = orig.clone();
    out.insert("name".into(), Value::from(name));
    out.insert("cniVersion".into(), Value::from(cni_version));
    if let Some(prev) = prev_result {
        out.insert("prevResult".into(), prev.clone());
    }
    let rc = filter_runtime_config(orig.get("capabilities"), capability_args);
    if !rc.is_empty() {
        out.insert("runtimeConfig".into(), Value::Object(rc));
    }
    Ok(Value::Object(out))
}

/// The capability args a plugin may see: those whose name it declared `true`.
pub fn filter_runtime_config(
    capabilities: Option<&Value>,
    capability_args: &Map<String, Value>,
) -> Map<String, Value> {
    let mut rc = Map::new();
    if let Some(Value::Object(caps)) = capabilities {
        for (cap, enabled) in caps {
            if enabled.as_bool() == Some(true) {
                if let Some(v) = capability_args.get(cap) {
                    rc.insert(cap.clone(), v.clone());
                }
            }
        }
    }
    rc
}

/// Adds the GC attachment list under both keys, as libcni does (#1101).
pub fn inject_gc_attachments(
    conf: &mut Value,
    attachments: &[GcAttachment],
) -> Result<(), CniError> {
    let list = serde_json::to_value(attachments)
        .map_err(|e| CniError::generic(format!("failed to encode attachments: {e}")))?;
    let Value::Object(m) = conf else {
        return Err(CniError::invalid_config(
            "plugin config is not a JSON object",
        ));
    };
    m.insert(VALID_ATTACHMENTS_KEY.into(), list.clone());
    m.insert(ATTACHMENTS_KEY.into(), list);
    Ok(())
}

#[cfg(test)]
mod tests;
