//! The I/O half of ADD: everything the plan needs read from the outside
//! world (readiness file, pod annotations, NADs, config files, the kubelet's
//! device allocation) gathered once into a [`Resolved`], so [`crate::plan`]
//! can stay a pure function. DEL and STATUS reuse the config-only lookups.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use plexus_cni::args::CniArgs;
use plexus_cni::{CmdArgs, NetConfList};
use plexus_netattach::{
    parse_networks_annotation, NadError, NetworkAttachmentDefinition, NetworkSelection,
    DEFAULT_NETWORK_ANNOTATION, NETWORKS_ANNOTATION,
};
use serde_json::Value;
use tracing::debug;

use crate::cache::PodIdentity;
use crate::config::PlexusConf;
use crate::delegates::{
    auxiliary_plugins, find_conf_by_name, load_conf_path, pod_identity, to_conflist, NetworkRef,
};
use crate::error::PlexusError;
use crate::handlers::Deps;
use crate::kube::{Kube, Sleeper};

/// How long ADD waits for `readinessindicatorfile` (Multus: 45 s, polled 1 s).
const READINESS_WAIT: Duration = Duration::from_secs(45);
const READINESS_POLL: Duration = Duration::from_millis(250);

/// A delegate network by the name network-status reports and its conflist.
#[derive(Debug, Clone, PartialEq)]
pub struct Network {
    pub name: String,
    pub conf: NetConfList,
}

/// One entry of the networks annotation with its conflist and the NAD's
/// `resourceName`.
#[derive(Debug, Clone)]
pub struct Selected {
    pub selection: NetworkSelection,
    pub conf: NetConfList,
    pub resource: Option<String>,
}

/// Everything one ADD learned from outside: the input of [`crate::plan`].
#[derive(Debug, Clone)]
pub struct Resolved {
    pub pod: PodIdentity,
    pub cni_args: CniArgs,
    /// The cluster network, auxiliary chain already appended.
    pub cluster: Network,
    /// Further inline `delegates` or `defaultNetworks`, in order.
    pub defaults: Vec<Network>,
    /// The networks annotation, in order.
    pub selections: Vec<Selected>,
    /// The kubelet's device IDs per resource (empty when nobody asked).
    pub allocated: Vec<(String, Vec<String>)>,
}

pub(crate) fn parse_cni_args(args: &CmdArgs) -> Result<CniArgs, PlexusError> {
    CniArgs::parse(&args.args).map_err(|e| PlexusError::Env(format!("invalid CNI_ARGS: {}", e.msg)))
}

/// Reads everything ADD needs; the only API, kubelet and conf-dir access of
/// an ADD before the delegates run.
pub fn resolve(
    args: &CmdArgs,
    conf: &PlexusConf,
    deps: &Deps<'_>,
    kube: &Kube<'_>,
) -> Result<Resolved, PlexusError> {
    let cni_args = parse_cni_args(args)?;
    let pod = pod_identity(&cni_args, &args.container_id);
    check_pod_names(&pod)?;
    wait_for_readiness(conf, deps.sleeper)?;
    let annotations = pod_annotations(conf, &pod, kube)?;
    let kube_opt = conf.has_kube().then_some(kube);
    if conf.has_kube() {
        kube.prefetch_nads(&nads_to_fetch(conf, &pod, annotations.as_ref()))?;
    }
    let mut cluster = cluster_network(conf, &pod, annotations.as_ref(), kube_opt)?;
    if !conf.auxiliary_cni_chain_name.is_empty() {
        let aux = auxiliary_plugins(
            &conf.cluster_network,
            &conf.conf_dir,
            &conf.auxiliary_cni_chain_name,
        )
        .map_err(PlexusError::Config)?;
        cluster.conf.plugins.extend(aux);
    }
    let defaults = default_networks(conf, &pod, kube_opt)?;
    let selections = selections(&pod, annotations.as_ref())?
        .into_iter()
        .map(|sel| selected(conf, &pod, sel, kube))
        .collect::<Result<Vec<_>, _>>()?;
    let allocated = allocated_devices(conf, &pod, deps, &selections)?;
    Ok(Resolved {
        pod,
        cni_args,
        cluster,
        defaults,
        selections,
        allocated,
    })
}

/// The NADs an ADD will GET, as `(namespace, name)`: the cluster network,
/// `defaultNetworks` and the allowed annotation networks (the same rules as
/// [`cluster_network`], [`default_networks`] and [`selected`]; what fails to
/// parse here fails there with its error).
fn nads_to_fetch(
    conf: &PlexusConf,
    pod: &PodIdentity,
    annotations: Option<&BTreeMap<String, String>>,
) -> Vec<(String, String)> {
    let mut refs = Vec::new();
    let named = |r: NetworkRef| match r {
        NetworkRef::Named { namespace, name } => Some((namespace, name)),
        NetworkRef::Path(_) => None,
    };
    match annotations.and_then(|a| a.get(DEFAULT_NETWORK_ANNOTATION)) {
        Some(ann) => {
            if let Ok([one]) = parse_networks_annotation(ann, &conf.multus_namespace).as_deref() {
                refs.push((one.namespace.clone(), one.name.clone()));
            }
        }
        None if !conf.cluster_network.is_empty() => refs.extend(named(NetworkRef::parse(
            &conf.cluster_network,
            &conf.multus_namespace,
        ))),
        None => {}
    }
    if !conf.cluster_network.is_empty() && !conf.system_namespaces.contains(&pod.namespace) {
        refs.extend(
            conf.default_networks
                .iter()
                .filter_map(|n| named(NetworkRef::parse(n, &conf.multus_namespace))),
        );
    }
    if let Ok(sels) = selections(pod, annotations) {
        refs.extend(
            sels.into_iter()
                .filter(|s| conf.namespace_allowed(&pod.namespace, &s.namespace))
                .map(|s| (s.namespace, s.name)),
        );
    }
    refs
}

fn wait_for_readiness(conf: &PlexusConf, sleeper: &dyn Sleeper) -> Result<(), PlexusError> {
    if conf.readiness_indicator_file.is_empty() {
        return Ok(());
    }
    let path = Path::new(&conf.readiness_indicator_file);
    let start = Instant::now();
    let mut waited = Duration::ZERO;
    while !path.exists() {
        if start.elapsed().max(waited) >= READINESS_WAIT {
            return Err(PlexusError::TryAgain(format!(
                "readiness indicator file {} not found after {}s: have you checked that your default network is ready?",
                path.display(),
                READINESS_WAIT.as_secs()
            )));
        }
        sleeper.sleep(READINESS_POLL);
        waited += READINESS_POLL;
    }
    Ok(())
}

/// The pod's annotations: from the runtime when it passed them (no API
/// call), else from one GET of the pod; `None` without Kubernetes.
/// Pod names from `CNI_ARGS` end up in API paths: only names Kubernetes
/// itself accepts (namespace a DNS-1123 label, name a subdomain) get there.
fn check_pod_names(pod: &PodIdentity) -> Result<(), PlexusError> {
    use plexus_netattach::networks::{is_dns1123_label, is_dns1123_subdomain};
    if pod.name.is_empty() && pod.namespace.is_empty() {
        return Ok(());
    }
    if !is_dns1123_label(&pod.namespace) || !is_dns1123_subdomain(&pod.name) {
        return Err(PlexusError::Env(format!(
            "invalid CNI_ARGS: K8S_POD_NAMESPACE {:?} / K8S_POD_NAME {:?} is not a valid Kubernetes name",
            pod.namespace, pod.name
        )));
    }
    Ok(())
}

fn pod_annotations(
    conf: &PlexusConf,
    pod: &PodIdentity,
    kube: &Kube<'_>,
) -> Result<Option<BTreeMap<String, String>>, PlexusError> {
    if let Some(map) = conf.runtime_pod_annotations() {
        debug!("using pod annotations passed by the runtime");
        return Ok(Some(
            map.into_iter()
                .filter_map(|(k, v)| v.as_str().map(|s| (k, s.to_string())))
                .collect(),
        ));
    }
    if !conf.has_kube() || pod.name.is_empty() {
        return Ok(None);
    }
    let got = kube.get_pod(&pod.namespace, &pod.name)?;
    if !pod.uid.is_empty() && got.uid() != pod.uid && !got.is_static() {
        return Err(PlexusError::Api {
            what: format!("pod {}/{}", pod.namespace, pod.name),
            reason: format!(
                "expected pod UID {:?} but got {:?} from Kube API",
                pod.uid,
                got.uid()
            ),
            retryable: false,
        });
    }
    Ok(Some(got.metadata.annotations.clone()))
}

fn bad_delegate(network: &str, reason: String) -> PlexusError {
    PlexusError::DelegateConfig {
        network: network.to_string(),
        reason,
    }
}

/// Resolves a config-named network (`clusterNetwork`, `defaultNetworks`, or
/// the default-network annotation); the NAD is tried first when `kube` is
/// given, as Multus does.
fn resolve_named(
    conf: &PlexusConf,
    reference: &NetworkRef,
    kube: Option<&Kube<'_>>,
) -> Result<Network, PlexusError> {
    match reference {
        NetworkRef::Path(p) => {
            let v = load_conf_path(p).map_err(|e| bad_delegate(&p.to_string_lossy(), e))?;
            let name = v
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            let list =
                to_conflist(&v, &conf.cni_version, &name).map_err(|e| bad_delegate(&name, e))?;
            Ok(Network { name, conf: list })
        }
        NetworkRef::Named { namespace, name } => {
            if let Some(k) = kube {
                if let Some(nad) = k.get_nad(namespace, name)? {
                    let network = nad.qualified_name();
                    let list = nad_conflist(conf, &nad).map_err(|e| bad_delegate(&network, e))?;
                    return Ok(Network {
                        name: network,
                        conf: list,
                    });
                }
            }
            if let Some(v) = find_conf_by_name(&conf.conf_dir, name) {
                let list =
                    to_conflist(&v, &conf.cni_version, name).map_err(|e| bad_delegate(name, e))?;
                return Ok(Network {
                    name: name.clone(),
                    conf: list,
                });
            }
            Err(PlexusError::Config(format!(
                "cannot find network {name:?}: no NetworkAttachmentDefinition {namespace}/{name} and no config named {name:?} in {}",
                conf.conf_dir.display()
            )))
        }
    }
}

fn nad_conflist(
    conf: &PlexusConf,
    nad: &NetworkAttachmentDefinition,
) -> Result<NetConfList, String> {
    let (raw, tenant_written) = match nad.delegate_config() {
        Ok(v) => (v, true),
        Err(NadError::EmptyConfig(_)) => find_conf_by_name(&conf.conf_dir, &nad.metadata.name)
            .ok_or_else(|| {
                format!(
                    "spec.config is empty and no config named {:?} exists in {}",
                    nad.metadata.name,
                    conf.conf_dir.display()
                )
            })
            .map(|v| (v, false))?,
        Err(e) => return Err(e.to_string()),
    };
    let list = to_conflist(&raw, &conf.cni_version, &nad.metadata.name)?;
    let checked =
        tenant_written.then(|| crate::nadpolicy::forbidden_key(&list.plugins, &conf.nad_node_keys));
    if let Some(Some((i, key))) = checked {
        return Err(format!(
            "plugins[{i}] sets {key:?}, a node path the cluster admin has not allowed in NADs \
             (plexus conf \"nadNodeKeys\")"
        ));
    }
    Ok(list)
}

/// An inline `delegates` entry as a network; `label` names it in errors.
pub(crate) fn inline_delegate(
    conf: &PlexusConf,
    delegate: &Value,
    label: Option<String>,
) -> Result<Network, PlexusError> {
    let name = delegate
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let list = to_conflist(delegate, &conf.cni_version, &name)
        .map_err(|e| bad_delegate(label.as_deref().unwrap_or(&name), e))?;
    Ok(Network { name, conf: list })
}

fn annotation_err(pod: &PodIdentity, annotation: &'static str, reason: String) -> PlexusError {
    PlexusError::Annotation {
        pod: format!("{}/{}", pod.namespace, pod.name),
        annotation,
        reason,
    }
}

/// The cluster network: the default-network annotation, else
/// `clusterNetwork`, else the first inline delegate. Without `kube` no NAD
/// is consulted (DEL/STATUS fallbacks).
pub(crate) fn cluster_network(
    conf: &PlexusConf,
    pod: &PodIdentity,
    annotations: Option<&BTreeMap<String, String>>,
    kube: Option<&Kube<'_>>,
) -> Result<Network, PlexusError> {
    if let Some(ann) = annotations.and_then(|a| a.get(DEFAULT_NETWORK_ANNOTATION)) {
        let sel = parse_networks_annotation(ann, &conf.multus_namespace)
            .map_err(|e| annotation_err(pod, DEFAULT_NETWORK_ANNOTATION, e.to_string()))?;
        let [one] = sel.as_slice() else {
            let reason = format!("exactly one network expected, got {}", sel.len());
            return Err(annotation_err(pod, DEFAULT_NETWORK_ANNOTATION, reason));
        };
        let r = NetworkRef::Named {
            namespace: one.namespace.clone(),
            name: one.name.clone(),
        };
        return resolve_named(conf, &r, kube);
    }
    if !conf.cluster_network.is_empty() {
        let r = NetworkRef::parse(&conf.cluster_network, &conf.multus_namespace);
        return resolve_named(conf, &r, kube);
    }
    let first = conf.delegates.first().ok_or_else(|| {
        PlexusError::Config("at least one delegate/clusterNetwork must be specified".into())
    })?;
    inline_delegate(conf, first, None)
}

/// The networks every pod gets after the cluster network: the other inline
/// delegates, or `defaultNetworks` (not for pods in `systemNamespaces`).
fn default_networks(
    conf: &PlexusConf,
    pod: &PodIdentity,
    kube: Option<&Kube<'_>>,
) -> Result<Vec<Network>, PlexusError> {
    if conf.cluster_network.is_empty() {
        return conf
            .delegates
            .iter()
            .enumerate()
            .skip(1)
            .map(|(i, d)| inline_delegate(conf, d, Some(format!("delegates[{i}]"))))
            .collect();
    }
    if conf.system_namespaces.iter().any(|n| n == &pod.namespace) {
        return Ok(Vec::new());
    }
    conf.default_networks
        .iter()
        .map(|n| resolve_named(conf, &NetworkRef::parse(n, &conf.multus_namespace), kube))
        .collect()
}

fn selections(
    pod: &PodIdentity,
    annotations: Option<&BTreeMap<String, String>>,
) -> Result<Vec<NetworkSelection>, PlexusError> {
    match annotations
        .and_then(|a| a.get(NETWORKS_ANNOTATION))
        .filter(|s| !s.trim().is_empty())
    {
        Some(text) => parse_networks_annotation(text, &pod.namespace)
            .map_err(|e| annotation_err(pod, NETWORKS_ANNOTATION, e.to_string())),
        None => Ok(Vec::new()),
    }
}

/// One annotation network's conflist: namespace isolation first (no API
/// call for a forbidden NAD), then the NAD, or a config file when there is
/// no Kubernetes at all.
fn selected(
    conf: &PlexusConf,
    pod: &PodIdentity,
    sel: NetworkSelection,
    kube: &Kube<'_>,
) -> Result<Selected, PlexusError> {
    let nad_name = sel.qualified_name();
    let pod_name = format!("{}/{}", pod.namespace, pod.name);
    if !conf.namespace_allowed(&pod.namespace, &sel.namespace) {
        return Err(PlexusError::NamespaceIsolation {
            pod: pod_name,
            pod_namespace: pod.namespace.clone(),
            nad: nad_name,
            allowed: conf.global_namespaces.join(", "),
        });
    }
    if !conf.has_kube() {
        let v = find_conf_by_name(&conf.conf_dir, &sel.name).ok_or_else(|| {
            PlexusError::NadNotFound {
                pod: pod_name,
                nad: sel.name.clone(),
                namespace: format!(
                    "{} (no kubeconfig; no config named {:?} in {})",
                    sel.namespace,
                    sel.name,
                    conf.conf_dir.display()
                ),
            }
        })?;
        let list = to_conflist(&v, &conf.cni_version, &sel.name)
            .map_err(|e| bad_delegate(&nad_name, e))?;
        return Ok(Selected {
            selection: sel,
            conf: list,
            resource: None,
        });
    }
    let nad = kube
        .get_nad(&sel.namespace, &sel.name)?
        .ok_or_else(|| PlexusError::NadNotFound {
            pod: pod_name,
            nad: sel.name.clone(),
            namespace: sel.namespace.clone(),
        })?;
    let list = nad_conflist(conf, &nad).map_err(|e| bad_delegate(&nad_name, e))?;
    let resource = nad.resource_name().map(str::to_string);
    Ok(Selected {
        selection: sel,
        conf: list,
        resource,
    })
}

/// The kubelet's allocation, asked once and only when a selected NAD names
/// a `resourceName` and the pod is known.
fn allocated_devices(
    conf: &PlexusConf,
    pod: &PodIdentity,
    deps: &Deps<'_>,
    selections: &[Selected],
) -> Result<Vec<(String, Vec<String>)>, PlexusError> {
    if pod.name.is_empty() || pod.namespace.is_empty() {
        return Ok(Vec::new());
    }
    let Some((sel, res)) = selections
        .iter()
        .find_map(|s| s.resource.as_ref().map(|r| (s, r)))
    else {
        return Ok(Vec::new());
    };
    deps.devices
        .allocated(
            &conf.pod_resources_socket,
            conf.pod_resources_timeout,
            &pod.namespace,
            &pod.name,
        )
        .map_err(|reason| PlexusError::Device {
            network: sel.selection.qualified_name(),
            resource: res.clone(),
            reason,
        })
}
