//! Turning configuration and annotations into delegate networks: where a
//! network's CNI config comes from (inline, NAD, file in `confDir`, path),
//! how every delegate is normalized to a conflist, and what Multus injects
//! into each (`deviceID`/`pciBusID`, `args.cni`, runtimeConfig, `CNI_ARGS`).

use std::path::{Path, PathBuf};

use plexus_cni::args::CniArgs;
use plexus_cni::NetConfList;
use plexus_netattach::NetworkSelection;
use serde_json::{json, Map, Value};

use crate::cache::PodIdentity;

/// The type our own configs carry; such files are never used as delegates
/// (Multus v4.0.2 nested itself after a restart this way).
pub const OWN_TYPE: &str = "plexus";

/// Normalizes a conf or conflist to a typed conflist, filling `cniVersion`
/// (and `name`) when absent, and checks every plugin has a `type`.
pub fn to_conflist(
    conf: &Value,
    default_version: &str,
    default_name: &str,
) -> Result<NetConfList, String> {
    let obj = conf.as_object().ok_or("config is not a JSON object")?;
    let version = obj
        .get("cniVersion")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .unwrap_or(default_version)
        .to_string();
    let name = obj
        .get("name")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .unwrap_or(default_name)
        .to_string();
    let mut list = if obj.contains_key("plugins") {
        let mut l = obj.clone();
        l.insert("cniVersion".into(), json!(version));
        l.insert("name".into(), json!(name));
        Value::Object(l)
    } else {
        json!({"cniVersion": version, "name": name, "plugins": [conf]})
    };
    let plugins = list
        .get_mut("plugins")
        .and_then(Value::as_array_mut)
        .ok_or("\"plugins\" is not a list")?;
    if plugins.is_empty() {
        return Err("no plugins in list".into());
    }
    for (i, p) in plugins.iter().enumerate() {
        let t = p.get("type").and_then(Value::as_str).unwrap_or_default();
        if t.is_empty() {
            return Err(format!("plugin #{i} has no \"type\""));
        }
    }
    serde_json::from_value(list).map_err(|e| format!("invalid configuration list: {e}"))
}

/// Whether a config (conf or conflist) is one of ours.
pub fn is_own_conf(conf: &Value) -> bool {
    let own = |p: &Value| p.get("type").and_then(Value::as_str) == Some(OWN_TYPE);
    own(conf)
        || conf
            .get("plugins")
            .and_then(Value::as_array)
            .is_some_and(|ps| ps.iter().any(own))
}

fn conf_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| {
                    p.is_file()
                        && p.extension()
                            .is_some_and(|x| x == "conf" || x == "conflist" || x == "json")
                })
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

fn read_json(path: &Path) -> Result<Value, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    serde_json::from_slice(&bytes).map_err(|e| format!("invalid JSON in {}: {e}", path.display()))
}

/// The first config in `dir` (lexical order, `.conf`/`.conflist`/`.json`)
/// whose network `name` is `name`, skipping our own configs.
pub fn find_conf_by_name(dir: &Path, name: &str) -> Option<Value> {
    conf_files(dir).into_iter().find_map(|p| {
        let v = read_json(&p).ok()?;
        (v.get("name").and_then(Value::as_str) == Some(name) && !is_own_conf(&v)).then_some(v)
    })
}

/// A config from a path: a file, or the first non-plexus config of a directory.
pub fn load_conf_path(path: &Path) -> Result<Value, String> {
    if path.is_dir() {
        return conf_files(path)
            .into_iter()
            .filter_map(|p| read_json(&p).ok())
            .find(|v| !is_own_conf(v))
            .ok_or_else(|| format!("no CNI config in directory {}", path.display()));
    }
    let v = read_json(path)?;
    if is_own_conf(&v) {
        return Err(format!(
            "{} is a plexus config; refusing to nest",
            path.display()
        ));
    }
    Ok(v)
}

/// The auxiliary chain (`auxiliaryCNIChainName`): every plugin of the
/// configs in `<dir>/<name>/`, where `dir` is the directory of a path
/// `clusterNetwork` (as Multus requires) or else `confDir`. They run after
/// the cluster network's plugins on the same interface, with its result as
/// `prevResult`, like libcni's sub-directory chains.
pub fn auxiliary_plugins(
    cluster_network: &str,
    conf_dir: &Path,
    name: &str,
) -> Result<Vec<Value>, String> {
    let base = if cluster_network.starts_with('/') {
        Path::new(cluster_network)
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| conf_dir.to_path_buf())
    } else {
        conf_dir.to_path_buf()
    };
    let dir = base.join(name);
    let mut plugins = Vec::new();
    for p in conf_files(&dir) {
        let v = read_json(&p)?;
        match v.get("plugins").and_then(Value::as_array) {
            Some(list) => plugins.extend(list.iter().cloned()),
            None => plugins.push(v),
        }
    }
    if plugins.is_empty() {
        return Err(format!(
            "auxiliary chain {name:?}: no CNI config in {}",
            dir.display()
        ));
    }
    Ok(plugins)
}

/// Sets `deviceID` and `pciBusID` on every plugin of the chain (Multus'
/// JSON injection for resourceName-derived devices).
pub fn inject_device_id(conflist: &mut NetConfList, device_id: &str) {
    for p in plugins_mut(conflist) {
        p.insert("deviceID".into(), json!(device_id));
        p.insert("pciBusID".into(), json!(device_id));
    }
}

/// Merges the annotation's `cni-args` into `args.cni` of every plugin.
pub fn inject_cni_args(conflist: &mut NetConfList, cni_args: &Map<String, Value>) {
    for p in plugins_mut(conflist) {
        let args = p.entry("args").or_insert_with(|| json!({}));
        if !args.is_object() {
            *args = json!({});
        }
        if let Some(a) = args.as_object_mut() {
            let cni = a.entry("cni").or_insert_with(|| json!({}));
            if !cni.is_object() {
                *cni = json!({});
            }
            if let Some(c) = cni.as_object_mut() {
                for (k, v) in cni_args {
                    c.insert(k.clone(), v.clone());
                }
            }
        }
    }
}

fn plugins_mut(conflist: &mut NetConfList) -> impl Iterator<Item = &mut Map<String, Value>> {
    conflist.plugins.iter_mut().filter_map(Value::as_object_mut)
}

/// Capability args for one delegate: the runtime's, and for annotation
/// networks the per-network requests on top (Multus `mergeCNIRuntimeConfig`).
pub fn capability_args(
    runtime: &Map<String, Value>,
    selection: Option<&NetworkSelection>,
    device_id: Option<&str>,
    device_info_file: Option<&Path>,
) -> Map<String, Value> {
    let mut caps = runtime.clone();
    if let Some(sel) = selection {
        if !sel.port_mappings.is_empty() {
            caps.insert("portMappings".into(), json!(sel.port_mappings));
        }
        if let Some(bw) = &sel.bandwidth {
            caps.insert("bandwidth".into(), json!(bw));
        }
        if !sel.ips.is_empty() {
            caps.insert("ips".into(), json!(sel.ips));
        }
        if let Some(mac) = &sel.mac {
            caps.insert("mac".into(), json!(mac));
        }
        if let Some(guid) = &sel.infiniband_guid {
            caps.insert("infinibandGUID".into(), json!(guid));
        }
    }
    if let Some(id) = device_id {
        caps.insert("deviceID".into(), json!(id));
    }
    if let Some(f) = device_info_file {
        caps.insert("CNIDeviceInfoFile".into(), json!(f.to_string_lossy()));
    }
    caps
}

/// The pod keys every delegate gets in `CNI_ARGS`.
const POD_KEYS: [&str; 4] = [
    "K8S_POD_NAMESPACE",
    "K8S_POD_NAME",
    "K8S_POD_INFRA_CONTAINER_ID",
    "K8S_POD_UID",
];

/// `CNI_ARGS` for a delegate: `IgnoreUnknown=1`, the pod keys, any other key
/// the runtime gave us, and `IP=`/`MAC=` from the network's request.
pub fn delegate_cni_args(
    incoming: &CniArgs,
    pod: &PodIdentity,
    selection: Option<&NetworkSelection>,
) -> String {
    let mut pairs: Vec<(String, String)> = vec![
        ("IgnoreUnknown".into(), "1".into()),
        ("K8S_POD_NAMESPACE".into(), pod.namespace.clone()),
        ("K8S_POD_NAME".into(), pod.name.clone()),
        (
            "K8S_POD_INFRA_CONTAINER_ID".into(),
            pod.infra_container_id.clone(),
        ),
        ("K8S_POD_UID".into(), pod.uid.clone()),
    ];
    let mut skip: Vec<&str> = POD_KEYS.to_vec();
    skip.push("IgnoreUnknown");
    if let Some(sel) = selection {
        if !sel.ips.is_empty() {
            skip.push("IP");
            pairs.push(("IP".into(), sel.ips.join(",")));
        }
        if let Some(mac) = &sel.mac {
            skip.push("MAC");
            pairs.push(("MAC".into(), mac.clone()));
        }
    }
    for (k, v) in incoming.pairs() {
        if !skip.contains(&k.as_str()) && !pairs.iter().any(|(pk, _)| pk == k) {
            pairs.push((k.clone(), v.clone()));
        }
    }
    pairs
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(";")
}

/// Reads the pod identity from `CNI_ARGS`.
pub fn pod_identity(args: &CniArgs, container_id: &str) -> PodIdentity {
    let get = |k: &str| args.get(k).unwrap_or_default().to_string();
    let infra = get("K8S_POD_INFRA_CONTAINER_ID");
    PodIdentity {
        namespace: get("K8S_POD_NAMESPACE"),
        name: get("K8S_POD_NAME"),
        uid: get("K8S_POD_UID"),
        infra_container_id: if infra.is_empty() {
            container_id.to_string()
        } else {
            infra
        },
    }
}

/// How a network name from the config (`clusterNetwork`, `defaultNetworks`)
/// is looked up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetworkRef {
    /// An absolute path to a file or directory.
    Path(PathBuf),
    /// A NAD (`ns/name`, or `name` in `multusNamespace`), else a config in
    /// `confDir` named `name`.
    Named { namespace: String, name: String },
}

impl NetworkRef {
    pub fn parse(s: &str, default_namespace: &str) -> Self {
        if s.starts_with('/') {
            return Self::Path(PathBuf::from(s));
        }
        match s.split_once('/') {
            Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
                Self::Named {
                    namespace: ns.to_string(),
                    name: name.to_string(),
                }
            }
            _ => Self::Named {
                namespace: default_namespace.to_string(),
                name: s.to_string(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conf_becomes_conflist_with_defaults() {
        let l = to_conflist(
            &json!({"type":"host-device","device":"ens5"}),
            "1.0.0",
            "sriov",
        )
        .unwrap();
        assert_eq!(
            serde_json::to_value(&l).unwrap(),
            json!({"cniVersion":"1.0.0","name":"sriov","plugins":[{"type":"host-device","device":"ens5"}]})
        );
        let l = to_conflist(
            &json!({"cniVersion":"0.3.1","name":"flannel","plugins":[{"type":"flannel"},{"type":"portmap"}]}),
            "1.0.0",
            "x",
        )
        .unwrap();
        assert_eq!(l.cni_version, "0.3.1");
        assert!(to_conflist(&json!({"name":"x"}), "1.0.0", "x")
            .unwrap_err()
            .contains("type"));
        assert!(to_conflist(&json!({"plugins":[]}), "1.0.0", "x").is_err());
        assert!(to_conflist(&json!([1]), "1.0.0", "x").is_err());
    }

    #[test]
    fn injections_reach_every_plugin() {
        let mut l: NetConfList = serde_json::from_value(
            json!({"plugins":[{"type":"host-device"},{"type":"tuning","args":{"cni":{"keep":1}}}]}),
        )
        .unwrap();
        inject_device_id(&mut l, "0000:00:04.0");
        let mut extra = Map::new();
        extra.insert("foo".into(), json!("bar"));
        inject_cni_args(&mut l, &extra);
        assert_eq!(l.plugins[0]["pciBusID"], "0000:00:04.0");
        assert_eq!(l.plugins[1]["deviceID"], "0000:00:04.0");
        assert_eq!(l.plugins[0]["args"]["cni"]["foo"], "bar");
        assert_eq!(l.plugins[1]["args"]["cni"], json!({"keep":1,"foo":"bar"}));
    }

    #[test]
    fn cni_args_for_delegates() {
        let incoming = CniArgs::parse(
            "K8S_POD_NAME=p;IgnoreUnknown=1;K8S_POD_NAMESPACE=ns;CUSTOM=x;IP=9.9.9.9",
        )
        .unwrap();
        let pod = pod_identity(&incoming, "cid");
        assert_eq!(pod.infra_container_id, "cid");
        let sel = NetworkSelection {
            name: "n".into(),
            namespace: "ns".into(),
            ips: vec!["198.51.100.5/24".into()],
            mac: Some("0a:58:00:00:00:01".into()),
            ..NetworkSelection::default()
        };
        assert_eq!(
            delegate_cni_args(&incoming, &pod, Some(&sel)),
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=ns;K8S_POD_NAME=p;K8S_POD_INFRA_CONTAINER_ID=cid;K8S_POD_UID=;IP=198.51.100.5/24;MAC=0a:58:00:00:00:01;CUSTOM=x"
        );
        assert_eq!(
            delegate_cni_args(&incoming, &pod, None),
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=ns;K8S_POD_NAME=p;K8S_POD_INFRA_CONTAINER_ID=cid;K8S_POD_UID=;CUSTOM=x;IP=9.9.9.9"
        );
    }

    #[test]
    fn capability_overlay() {
        let mut rt = Map::new();
        rt.insert(
            "portMappings".into(),
            json!([{"hostPort":1,"containerPort":2}]),
        );
        let sel = NetworkSelection {
            ips: vec!["198.51.100.5/24".into()],
            ..NetworkSelection::default()
        };
        let c = capability_args(
            &rt,
            Some(&sel),
            Some("0000:00:04.0"),
            Some(Path::new("/d/f")),
        );
        assert_eq!(c["ips"], json!(["198.51.100.5/24"]));
        assert_eq!(c["deviceID"], "0000:00:04.0");
        assert_eq!(c["CNIDeviceInfoFile"], "/d/f");
        assert_eq!(c["portMappings"], rt["portMappings"]);
    }

    #[test]
    fn conf_dir_lookup_skips_own_configs() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("00-plexus.conflist"),
            json!({"cniVersion":"1.0.0","name":"flannel","plugins":[{"type":"plexus"}]})
                .to_string(),
        )
        .unwrap();
        std::fs::write(
            dir.path().join("10-flannel.conflist"),
            json!({"cniVersion":"1.0.0","name":"flannel","plugins":[{"type":"flannel"}]})
                .to_string(),
        )
        .unwrap();
        std::fs::write(dir.path().join("20-bad.conf"), "{").unwrap();
        let f = find_conf_by_name(dir.path(), "flannel").unwrap();
        assert_eq!(f["plugins"][0]["type"], "flannel");
        assert!(find_conf_by_name(dir.path(), "nope").is_none());
        assert_eq!(
            load_conf_path(dir.path()).unwrap()["plugins"][0]["type"],
            "flannel"
        );
        assert!(load_conf_path(&dir.path().join("00-plexus.conflist")).is_err());
    }

    #[test]
    fn auxiliary_chain_plugins() {
        let dir = tempfile::tempdir().unwrap();
        let aux = dir.path().join("aux");
        std::fs::create_dir_all(&aux).unwrap();
        std::fs::write(
            aux.join("10-tuning.conf"),
            json!({"type":"tuning"}).to_string(),
        )
        .unwrap();
        std::fs::write(
            aux.join("20-more.conflist"),
            json!({"name":"x","plugins":[{"type":"bandwidth"}]}).to_string(),
        )
        .unwrap();
        let got = auxiliary_plugins("flannel", dir.path(), "aux").unwrap();
        assert_eq!(
            got,
            vec![json!({"type":"tuning"}), json!({"type":"bandwidth"})]
        );
        let path = dir.path().join("10-flannel.conflist");
        let got =
            auxiliary_plugins(&path.to_string_lossy(), Path::new("/nonexistent"), "aux").unwrap();
        assert_eq!(got.len(), 2);
        assert!(auxiliary_plugins("flannel", dir.path(), "missing").is_err());
    }

    #[test]
    fn network_refs() {
        assert_eq!(
            NetworkRef::parse("flannel", "kube-system"),
            NetworkRef::Named {
                namespace: "kube-system".into(),
                name: "flannel".into()
            }
        );
        assert_eq!(
            NetworkRef::parse("ns/flannel", "kube-system"),
            NetworkRef::Named {
                namespace: "ns".into(),
                name: "flannel".into()
            }
        );
        assert_eq!(
            NetworkRef::parse("/etc/cni/net.d/10-flannel.conflist", "x"),
            NetworkRef::Path("/etc/cni/net.d/10-flannel.conflist".into())
        );
    }
}
