//! NAD configs are tenant input: whoever may create a NAD in a namespace
//! writes the plugin config that runs as root on the node. Keys that name
//! node files, directories or URLs would let that tenant point a root
//! process at any file (a FIFO that blocks the ADD, a state file it wrote
//! itself, a log file it wants overwritten) or at any metadata server. Such
//! keys are refused in a NAD's plugin configs (top level and `ipam`) unless
//! the cluster admin lists them in the plexus conf's `nadNodeKeys`; configs
//! from the node (`clusterNetwork`, `delegates`, conf-dir files) are the
//! admin's and are not checked. Trust model: docs/security.md.

use serde_json::Value;

/// Keys, in any plugin config or its `ipam`, that name node paths or URLs.
pub const NODE_KEYS: &[&str] = &[
    "stateFile",
    "imdsUrl",
    "sysfsRoot",
    "dataDir",
    "cniDir",
    "confDir",
    "binDir",
    "logFile",
    "kubeconfig",
    "socketDir",
    "daemonSocketDir",
    "readinessindicatorfile",
    "podResourcesSocket",
    "deviceInfoDir",
];

/// The first node-path key a NAD's plugin list sets that `allowed` does not
/// list, as `(plugin index, "key" or "ipam.key")`.
pub fn forbidden_key(plugins: &[Value], allowed: &[String]) -> Option<(usize, String)> {
    let refused = |k: &str| NODE_KEYS.contains(&k) && !allowed.iter().any(|a| a == k);
    for (i, plugin) in plugins.iter().enumerate() {
        let Some(obj) = plugin.as_object() else {
            continue;
        };
        if let Some(k) = obj.keys().find(|k| refused(k)) {
            return Some((i, k.clone()));
        }
        if let Some(ipam) = obj.get("ipam").and_then(Value::as_object) {
            if let Some(k) = ipam.keys().find(|k| refused(k)) {
                return Some((i, format!("ipam.{k}")));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn node_keys_are_refused_unless_the_admin_allows_them() {
        let plugins = vec![
            json!({"type": "bridge"}),
            json!({"type": "host-device", "device": "eth1",
                   "ipam": {"type": "vnic", "stateFile": "/tmp/fifo"}}),
        ];
        assert_eq!(
            forbidden_key(&plugins, &[]),
            Some((1, "ipam.stateFile".to_string()))
        );
        assert_eq!(forbidden_key(&plugins, &["stateFile".into()]), None);
        let top = vec![json!({"type": "host-device", "dataDir": "/etc"})];
        assert_eq!(forbidden_key(&top, &[]), Some((0, "dataDir".to_string())));
        let clean = vec![json!({"type": "host-device", "device": "eth1",
                               "ipam": {"type": "static"}})];
        assert_eq!(forbidden_key(&clean, &[]), None);
    }
}
