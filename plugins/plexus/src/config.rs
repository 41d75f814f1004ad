//! The meta plugin's own configuration: every key of Multus' `NetConf`
//! (`pkg/types/types.go`, defaults from `GetDefaultNetConf`) plus Plexus'
//! bounded-API keys. The runtime hands us one plugin object (from a `.conf`
//! or the plexus entry of a `.conflist`) with `name`/`cniVersion` injected.

use std::path::PathBuf;
use std::time::Duration;

use plexus_cni::NetConf;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::error::PlexusError;

/// containerd passes all pod annotations under this runtimeConfig key when the
/// conf declares the capability.
pub const POD_ANNOTATIONS_CAPABILITY: &str = "io.kubernetes.cri.pod-annotations";

/// Default of `confDir` (Multus: `/etc/cni/multus/net.d`; the runtime's conf
/// dir is where NAD-less configs live on a Plexus node).
pub const DEFAULT_CONF_DIR: &str = "/etc/cni/net.d";
/// Default of `cniDir`: the ADD cache.
pub const DEFAULT_CNI_DIR: &str = "/var/lib/cni/plexus";
/// Default of `binDir`, prepended to `CNI_PATH`.
pub const DEFAULT_BIN_DIR: &str = "/opt/cni/bin";
/// Base of the device-info files shared with device plugins.
pub const DEFAULT_DEVICE_INFO_DIR: &str = "/var/run/k8s.cni.cncf.io/devinfo";

/// `logOptions` (lumberjack settings in Multus); accepted for compatibility,
/// Plexus appends to `logFile` and leaves rotation to logrotate.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogOptions {
    #[serde(default)]
    pub max_age: Option<i64>,
    #[serde(default)]
    pub max_size: Option<i64>,
    #[serde(default)]
    pub max_backups: Option<i64>,
    #[serde(default)]
    pub compress: Option<bool>,
}

/// `globalNamespaces` is a comma-separated string in Multus; a JSON list is
/// accepted too.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
enum StringOrList {
    One(String),
    Many(Vec<String>),
}

impl StringOrList {
    fn into_list(self) -> Vec<String> {
        match self {
            Self::One(s) => s
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
            Self::Many(v) => v,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawConf {
    /// The keys every plugin config has (`cniVersion`, `name`, `type`,
    /// `capabilities`, `runtimeConfig`, `prevResult`), typed once in plexus-cni.
    #[serde(flatten)]
    base: NetConf,
    #[serde(default)]
    kubeconfig: String,
    #[serde(default)]
    cluster_network: String,
    #[serde(default)]
    default_networks: Vec<String>,
    #[serde(default)]
    delegates: Vec<Value>,
    #[serde(default)]
    conf_dir: Option<String>,
    #[serde(default)]
    cni_dir: Option<String>,
    #[serde(default)]
    bin_dir: Option<String>,
    #[serde(default)]
    log_file: String,
    #[serde(default)]
    log_level: String,
    #[serde(default)]
    log_to_stderr: Option<bool>,
    #[serde(default)]
    log_options: Option<LogOptions>,
    #[serde(rename = "readinessindicatorfile", default)]
    readiness_indicator_file: String,
    #[serde(default)]
    namespace_isolation: bool,
    #[serde(default)]
    global_namespaces: Option<StringOrList>,
    #[serde(default)]
    system_namespaces: Option<Vec<String>>,
    #[serde(default)]
    multus_namespace: Option<String>,
    #[serde(default)]
    retry_delete_on_error: bool,
    #[serde(rename = "auxiliaryCNIChainName", default)]
    auxiliary_cni_chain_name: String,
    #[serde(default)]
    api_timeout_seconds: Option<f64>,
    #[serde(default)]
    api_retry_budget_seconds: Option<f64>,
    #[serde(default)]
    events: Option<bool>,
    #[serde(default)]
    pod_resources_socket: Option<String>,
    #[serde(default)]
    pod_resources_timeout_seconds: Option<f64>,
    #[serde(default)]
    device_info_dir: Option<String>,
}

/// The parsed, defaulted configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct PlexusConf {
    pub cni_version: String,
    pub name: String,
    pub plugin_type: String,
    pub capabilities: Map<String, Value>,
    /// Capability args from the runtime (everything under `runtimeConfig`).
    pub runtime_config: Map<String, Value>,
    pub prev_result: Option<Value>,
    /// Empty: no Kubernetes (inline `delegates` only, like Multus without a client).
    pub kubeconfig: String,
    pub cluster_network: String,
    pub default_networks: Vec<String>,
    /// Inline delegate confs or conflists; the first is the cluster network.
    pub delegates: Vec<Value>,
    pub conf_dir: PathBuf,
    pub cni_dir: PathBuf,
    pub bin_dir: PathBuf,
    pub log_file: String,
    pub log_level: String,
    pub log_to_stderr: bool,
    pub log_options: Option<LogOptions>,
    pub readiness_indicator_file: String,
    pub namespace_isolation: bool,
    pub global_namespaces: Vec<String>,
    pub system_namespaces: Vec<String>,
    pub multus_namespace: String,
    pub retry_delete_on_error: bool,
    pub auxiliary_cni_chain_name: String,
    /// Per-request API timeout.
    pub api_timeout: Duration,
    /// Total time spent retrying retryable API errors per call.
    pub api_retry_budget: Duration,
    /// POST `AddedInterface` events.
    pub events: bool,
    pub pod_resources_socket: PathBuf,
    pub pod_resources_timeout: Duration,
    pub device_info_dir: PathBuf,
}

fn seconds(v: Option<f64>, default: f64, key: &str) -> Result<Duration, PlexusError> {
    let s = v.unwrap_or(default);
    if !s.is_finite() || s < 0.0 {
        return Err(PlexusError::Config(format!(
            "{key} must be a non-negative number of seconds, got {s}"
        )));
    }
    Ok(Duration::from_secs_f64(s))
}

impl PlexusConf {
    /// Parses and defaults stdin. Fails like Multus when neither `delegates`
    /// nor `clusterNetwork` is given.
    pub fn parse(bytes: &[u8]) -> Result<Self, PlexusError> {
        let raw: RawConf = serde_json::from_slice(bytes)
            .map_err(|e| PlexusError::Decode(format!("failed to load netconf: {e}")))?;
        if raw.delegates.is_empty() && raw.cluster_network.is_empty() {
            return Err(PlexusError::Config(
                "at least one delegate/clusterNetwork must be specified".into(),
            ));
        }
        for (i, d) in raw.delegates.iter().enumerate() {
            if !d.is_object() {
                return Err(PlexusError::Config(format!(
                    "delegates[{i}] is not a JSON object"
                )));
            }
        }
        let base = raw.base;
        let runtime_config = match base.runtime_config {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(m)) => m,
            Some(other) => {
                return Err(PlexusError::Decode(format!(
                    "failed to load netconf: runtimeConfig is not an object: {other}"
                )))
            }
        };
        Ok(Self {
            cni_version: if base.cni_version.is_empty() {
                plexus_cni::version::DEFAULT_CONFIG_VERSION.to_string()
            } else {
                base.cni_version
            },
            name: base.name,
            plugin_type: base.plugin_type,
            capabilities: base.capabilities.unwrap_or_default(),
            runtime_config,
            prev_result: base.prev_result,
            kubeconfig: raw.kubeconfig,
            cluster_network: raw.cluster_network,
            default_networks: raw.default_networks,
            delegates: raw.delegates,
            conf_dir: PathBuf::from(raw.conf_dir.unwrap_or_else(|| DEFAULT_CONF_DIR.into())),
            cni_dir: PathBuf::from(raw.cni_dir.unwrap_or_else(|| DEFAULT_CNI_DIR.into())),
            bin_dir: PathBuf::from(raw.bin_dir.unwrap_or_else(|| DEFAULT_BIN_DIR.into())),
            log_file: raw.log_file,
            log_level: raw.log_level,
            log_to_stderr: raw.log_to_stderr.unwrap_or(true),
            log_options: raw.log_options,
            readiness_indicator_file: raw.readiness_indicator_file,
            namespace_isolation: raw.namespace_isolation,
            global_namespaces: raw
                .global_namespaces
                .map(StringOrList::into_list)
                .unwrap_or_else(|| vec!["default".into()]),
            system_namespaces: raw
                .system_namespaces
                .unwrap_or_else(|| vec!["kube-system".into()]),
            multus_namespace: raw
                .multus_namespace
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "kube-system".into()),
            retry_delete_on_error: raw.retry_delete_on_error,
            auxiliary_cni_chain_name: raw.auxiliary_cni_chain_name,
            api_timeout: seconds(raw.api_timeout_seconds, 10.0, "apiTimeoutSeconds")?,
            api_retry_budget: seconds(raw.api_retry_budget_seconds, 5.0, "apiRetryBudgetSeconds")?,
            events: raw.events.unwrap_or(true),
            pod_resources_socket: PathBuf::from(
                raw.pod_resources_socket
                    .unwrap_or_else(|| plexus_kubelet_api::POD_RESOURCES_SOCKET.into()),
            ),
            pod_resources_timeout: seconds(
                raw.pod_resources_timeout_seconds,
                10.0,
                "podResourcesTimeoutSeconds",
            )?,
            device_info_dir: PathBuf::from(
                raw.device_info_dir
                    .unwrap_or_else(|| DEFAULT_DEVICE_INFO_DIR.into()),
            ),
        })
    }

    /// Pod annotations passed by the runtime (containerd's
    /// `io.kubernetes.cri.pod-annotations` capability), if any.
    pub fn runtime_pod_annotations(&self) -> Option<Map<String, Value>> {
        self.runtime_config
            .get(POD_ANNOTATIONS_CAPABILITY)
            .and_then(Value::as_object)
            .cloned()
    }

    /// Whether Kubernetes is configured at all.
    pub fn has_kube(&self) -> bool {
        !self.kubeconfig.is_empty()
    }

    /// Whether pods in `namespace` may use NADs from `nad_namespace`.
    pub fn namespace_allowed(&self, pod_namespace: &str, nad_namespace: &str) -> bool {
        !self.namespace_isolation
            || pod_namespace == nad_namespace
            || self.global_namespaces.iter().any(|g| g == nad_namespace)
    }

    /// `CNI_PATH` for delegates: `binDir` first, then the runtime's list.
    pub fn delegate_path(&self, cni_path: &str) -> String {
        let bin = self.bin_dir.to_string_lossy();
        if cni_path.is_empty() {
            bin.into_owned()
        } else if cni_path.split(':').any(|p| p == bin) {
            cni_path.to_string()
        } else {
            format!("{bin}:{cni_path}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults_match_multus_where_compatible() {
        let c = PlexusConf::parse(
            json!({"cniVersion":"1.0.0","name":"m","type":"plexus","clusterNetwork":"flannel"})
                .to_string()
                .as_bytes(),
        )
        .unwrap();
        assert_eq!(c.conf_dir, PathBuf::from("/etc/cni/net.d"));
        assert_eq!(c.cni_dir, PathBuf::from("/var/lib/cni/plexus"));
        assert_eq!(c.bin_dir, PathBuf::from("/opt/cni/bin"));
        assert!(c.log_to_stderr);
        assert_eq!(c.global_namespaces, vec!["default"]);
        assert_eq!(c.system_namespaces, vec!["kube-system"]);
        assert_eq!(c.multus_namespace, "kube-system");
        assert_eq!(c.api_timeout, Duration::from_secs(10));
        assert_eq!(c.api_retry_budget, Duration::from_secs(5));
        assert!(c.events);
        assert!(!c.has_kube());
    }

    #[test]
    fn every_multus_key_is_read() {
        let c = PlexusConf::parse(
            json!({
                "cniVersion":"0.3.1","name":"multus-cni-network","type":"plexus",
                "kubeconfig":"/etc/cni/net.d/plexus.d/plexus.kubeconfig",
                "clusterNetwork":"kube-system/flannel","defaultNetworks":["a","b"],
                "confDir":"/c","cniDir":"/d","binDir":"/b","logFile":"/l","logLevel":"debug",
                "logToStderr":false,"logOptions":{"maxAge":5,"maxSize":100,"maxBackups":5,"compress":true},
                "readinessindicatorfile":"/r","namespaceIsolation":true,
                "globalNamespaces":"default,shared","systemNamespaces":["kube-system","ops"],
                "multusNamespace":"plexus","retryDeleteOnError":true,"auxiliaryCNIChainName":"aux",
                "capabilities":{"portMappings":true},"runtimeConfig":{"portMappings":[]},
                "apiTimeoutSeconds":0.5,"apiRetryBudgetSeconds":0,"events":false
            })
            .to_string()
            .as_bytes(),
        )
        .unwrap();
        assert_eq!(c.kubeconfig, "/etc/cni/net.d/plexus.d/plexus.kubeconfig");
        assert_eq!(c.default_networks, vec!["a", "b"]);
        assert_eq!(c.global_namespaces, vec!["default", "shared"]);
        assert_eq!(c.system_namespaces, vec!["kube-system", "ops"]);
        assert_eq!(c.multus_namespace, "plexus");
        assert!(!c.log_to_stderr && c.retry_delete_on_error && c.namespace_isolation);
        assert_eq!(c.log_options.as_ref().and_then(|o| o.max_size), Some(100));
        assert_eq!(c.api_timeout, Duration::from_millis(500));
        assert_eq!(c.api_retry_budget, Duration::ZERO);
        assert!(!c.events);
        assert!(c.namespace_allowed("p", "p"));
        assert!(c.namespace_allowed("p", "shared"));
        assert!(!c.namespace_allowed("p", "other"));
    }

    #[test]
    fn needs_a_cluster_network() {
        let e =
            PlexusConf::parse(br#"{"cniVersion":"1.0.0","name":"m","type":"plexus"}"#).unwrap_err();
        assert!(e
            .to_string()
            .contains("at least one delegate/clusterNetwork"));
        assert!(PlexusConf::parse(b"{").is_err());
        let e = PlexusConf::parse(br#"{"name":"m","clusterNetwork":"x","apiTimeoutSeconds":-1}"#)
            .unwrap_err();
        assert!(e.to_string().contains("apiTimeoutSeconds"));
    }

    #[test]
    fn runtime_annotations_and_path() {
        let c = PlexusConf::parse(
            json!({"name":"m","delegates":[{"type":"bridge"}],"binDir":"/opt/cni/bin",
                "runtimeConfig":{"io.kubernetes.cri.pod-annotations":{"k8s.v1.cni.cncf.io/networks":"a"}}})
            .to_string()
            .as_bytes(),
        )
        .unwrap();
        assert_eq!(
            c.runtime_pod_annotations()
                .unwrap()
                .get("k8s.v1.cni.cncf.io/networks"),
            Some(&json!("a"))
        );
        assert_eq!(c.delegate_path("/x:/y"), "/opt/cni/bin:/x:/y");
        assert_eq!(c.delegate_path("/x:/opt/cni/bin"), "/x:/opt/cni/bin");
        assert_eq!(c.delegate_path(""), "/opt/cni/bin");
        assert_eq!(c.cni_version, "0.1.0");
    }
}
