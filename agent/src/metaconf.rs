//! Pure rendering of what `install` writes: the choice of the node's
//! primary config, the meta plugin's conflist wrapping it, and the
//! kubeconfig naming the token by file.

use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};

use crate::install::InstallError;

/// The `type` of the meta plugin; used to recognise our own output.
pub const META_PLUGIN_TYPE: &str = "plexus";
/// The network name the runtime sees for the wrapped default network.
pub const META_NETWORK_NAME: &str = "plexus-cni-network";

/// The config chosen as the node's default network.
#[derive(Debug, Clone, PartialEq)]
pub struct Primary {
    pub file_name: String,
    pub conf: Value,
}

/// True when `conf` is a config of the meta plugin itself, single or list.
pub fn is_own_conf(conf: &Value) -> bool {
    let is_meta = |v: &Value| v.get("type").and_then(Value::as_str) == Some(META_PLUGIN_TYPE);
    is_meta(conf)
        || conf
            .get("plugins")
            .and_then(Value::as_array)
            .is_some_and(|ps| ps.iter().any(is_meta))
}

/// Pure: choose the primary among `(file name, content)` pairs of the conf
/// dir. Lexical order like libcni; ours is skipped by name and by content;
/// files that are not JSON are skipped (the runtime would skip them too).
pub fn select_primary(entries: &[(String, Vec<u8>)], own_name: &str) -> Option<Primary> {
    let mut sorted: Vec<&(String, Vec<u8>)> = entries
        .iter()
        .filter(|(name, _)| name.ends_with(".conf") || name.ends_with(".conflist"))
        .filter(|(name, _)| name != own_name && !name.starts_with("00-plexus"))
        .collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    sorted.into_iter().find_map(|(name, bytes)| {
        let conf: Value = serde_json::from_slice(bytes).ok()?;
        if !conf.is_object() || is_own_conf(&conf) {
            return None;
        }
        Some(Primary {
            file_name: name.clone(),
            conf,
        })
    })
}

/// Capabilities the runtime must pass to the meta plugin: the union of those
/// the primary's plugins declare, so e.g. `portMappings` still reaches Flannel's
/// portmap through us.
fn union_capabilities(primary: &Value) -> Map<String, Value> {
    let mut caps = Map::new();
    let plugins: Vec<&Value> = match primary.get("plugins").and_then(Value::as_array) {
        Some(ps) => ps.iter().collect(),
        None => vec![primary],
    };
    for p in plugins {
        if let Some(c) = p.get("capabilities").and_then(Value::as_object) {
            for (k, v) in c {
                if v.as_bool() == Some(true) {
                    caps.insert(k.clone(), Value::Bool(true));
                }
            }
        }
    }
    caps
}

/// Pure: the meta plugin's conflist wrapping `primary`.
pub fn render_meta_conf(
    primary: &Primary,
    kubeconfig_host_path: &Path,
    readiness: Option<&Path>,
    pod_resources_socket: &Path,
) -> Result<Value, InstallError> {
    let version = primary
        .conf
        .get("cniVersion")
        .and_then(Value::as_str)
        .ok_or_else(|| InstallError::NoCniVersion {
            path: PathBuf::from(&primary.file_name),
        })?;
    let mut plugin = Map::new();
    plugin.insert("type".into(), json!(META_PLUGIN_TYPE));
    let caps = union_capabilities(&primary.conf);
    if !caps.is_empty() {
        plugin.insert("capabilities".into(), Value::Object(caps));
    }
    plugin.insert(
        "kubeconfig".into(),
        json!(kubeconfig_host_path.to_string_lossy()),
    );
    if let Some(r) = readiness {
        plugin.insert("readinessindicatorfile".into(), json!(r.to_string_lossy()));
    }
    plugin.insert(
        "podResourcesSocket".into(),
        json!(pod_resources_socket.to_string_lossy()),
    );
    plugin.insert("delegates".into(), json!([primary.conf.clone()]));
    Ok(json!({
        "cniVersion": version,
        "name": META_NETWORK_NAME,
        "plugins": [Value::Object(plugin)],
    }))
}

/// Pure: a kubeconfig naming the token by file, so the plugin always reads
/// the current token instead of a copy frozen at install time.
pub fn render_kubeconfig(api_server: &str, ca_host_path: &Path, token_host_path: &Path) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "local", "cluster": {
            "server": api_server,
            "certificate-authority": ca_host_path.to_string_lossy(),
        }}],
        "users": [{"name": "plexus", "user": {"tokenFile": token_host_path.to_string_lossy()}}],
        "contexts": [{"name": "plexus", "context": {"cluster": "local", "user": "plexus"}}],
        "current-context": "plexus",
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::install::DEFAULT_CONF_NAME;

    fn entry(name: &str, v: Value) -> (String, Vec<u8>) {
        (name.to_string(), serde_json::to_vec(&v).unwrap())
    }

    #[test]
    fn select_skips_own_by_name_and_content_and_sorts() {
        let entries = vec![
            entry(
                "10-flannel.conflist",
                json!({"cniVersion":"0.3.1","plugins":[{"type":"flannel"}]}),
            ),
            entry(
                "00-plexus.conflist",
                json!({"cniVersion":"0.3.1","plugins":[{"type":"plexus"}]}),
            ),
            entry(
                "01-renamed.conf",
                json!({"cniVersion":"0.3.1","type":"plexus"}),
            ),
            entry("05-broken.conf", json!("not an object")),
            entry(
                "99-bridge.conf",
                json!({"cniVersion":"1.0.0","type":"bridge"}),
            ),
            ("03-junk.conf".into(), b"{not json".to_vec()),
            entry("02-readme.txt", json!({"cniVersion":"0.3.1","type":"x"})),
        ];
        let p = select_primary(&entries, DEFAULT_CONF_NAME).unwrap();
        assert_eq!(p.file_name, "10-flannel.conflist");
    }

    #[test]
    fn capabilities_are_the_union_of_true_ones() {
        let conf = json!({"cniVersion":"0.3.1","plugins":[
            {"type":"flannel"},
            {"type":"portmap","capabilities":{"portMappings":true}},
            {"type":"bandwidth","capabilities":{"bandwidth":true,"x":false}}]});
        let caps = union_capabilities(&conf);
        assert_eq!(
            Value::Object(caps),
            json!({"portMappings":true,"bandwidth":true})
        );
    }

    #[test]
    fn missing_cni_version_is_an_error() {
        let p = Primary {
            file_name: "10-x.conf".into(),
            conf: json!({"type":"bridge"}),
        };
        assert!(matches!(
            render_meta_conf(&p, Path::new("/k"), None, Path::new("/s")),
            Err(InstallError::NoCniVersion { .. })
        ));
    }
}
