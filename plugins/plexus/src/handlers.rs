//! The five CNI operations of the meta plugin, written as steps. All side
//! effects go through [`Deps`]: delegate exec, the pod API, the kubelet's
//! device IDs, the ADD cache and default-route edits.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use plexus_cni::args::CniArgs;
use plexus_cni::config::GcAttachment;
use plexus_cni::exec::Exec;
use plexus_cni::{CmdArgs, CniError, CniResult, NetConf};
use plexus_netattach::api::PodRef;
use plexus_netattach::{
    encode_network_status, network_statuses_from_result, parse_networks_annotation, DeviceInfo,
    Event, NetworkSelection, NetworkStatus, DEFAULT_NETWORK_ANNOTATION, NETWORKS_ANNOTATION,
};
use serde_json::Value;
use tracing::{debug, info, warn};

use crate::cache::{Attachment, CacheEntry, CacheStore, PodIdentity, CACHE_KIND};
use crate::chain::{Chain, RunEnv};
use crate::config::PlexusConf;
use crate::delegates::{
    auxiliary_plugins, capability_args, delegate_cni_args, find_conf_by_name, inject_cni_args,
    inject_device_id, load_conf_path, pod_identity, to_conflist, NetworkRef,
};
use crate::devices::{
    cni_device_info_path, copy_dp_device_info, dp_device_info_path, is_pci_address,
    read_device_info, DeviceAllocator, DeviceIdSource,
};
use crate::error::PlexusError;
use crate::kube::{Kube, KubeConnect, Sleeper};
use crate::routes::{add_default_route, plan_filters, strip_default_routes, RouteOps};

/// Component name on events, as `kubectl describe pod` shows it.
pub const EVENT_COMPONENT: &str = "plexus";

/// How long ADD waits for `readinessindicatorfile` (Multus: 45 s, polled 1 s).
const READINESS_WAIT: Duration = Duration::from_secs(45);
const READINESS_POLL: Duration = Duration::from_millis(250);

/// Every side effect a handler may perform.
pub struct Deps<'a> {
    pub exec: &'a dyn Exec,
    pub kube: &'a dyn KubeConnect,
    pub sleeper: &'a dyn Sleeper,
    pub devices: &'a dyn DeviceIdSource,
    pub cache: &'a dyn CacheStore,
    pub routes: &'a dyn RouteOps,
}

/// One network about to be attached.
#[derive(Debug, Clone)]
struct Planned {
    attachment: Attachment,
    gateways: Vec<IpAddr>,
}

fn delegate_path(conf: &PlexusConf, args: &CmdArgs) -> Vec<PathBuf> {
    let mut out = vec![conf.bin_dir.clone()];
    for p in &args.path {
        if !out.contains(p) {
            out.push(p.clone());
        }
    }
    out
}

fn path_string(p: &[PathBuf]) -> String {
    p.iter()
        .map(|x| x.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(":")
}

fn context(pod: &PodIdentity, network: &str) -> String {
    format!("[{}/{}/{}:{}]", pod.namespace, pod.name, pod.uid, network)
}

/// A netns that no longer exists is passed as empty, so delegates treat
/// teardown as "already gone" instead of failing to open it.
fn live_netns(netns: &str) -> String {
    if !netns.is_empty() && Path::new(netns).exists() {
        netns.to_string()
    } else {
        String::new()
    }
}

fn run_env(args: &CmdArgs, conf: &PlexusConf, netns: &str, att: &Attachment) -> RunEnv {
    RunEnv {
        container_id: args.container_id.clone(),
        netns: netns.to_string(),
        ifname: att.ifname.clone(),
        cni_args: att.cni_args.clone(),
        path: delegate_path(conf, args),
    }
}

fn parse_cni_args(args: &CmdArgs) -> Result<CniArgs, PlexusError> {
    CniArgs::parse(&args.args).map_err(|e| PlexusError::Env(format!("invalid CNI_ARGS: {}", e.msg)))
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

/// Resolves a config-named network (`clusterNetwork`, `defaultNetworks`, or
/// the default-network annotation) to `(status name, conflist)`; the NAD is
/// tried first when `kube` is given, as Multus does.
fn resolve_named(
    conf: &PlexusConf,
    reference: &NetworkRef,
    kube: Option<&Kube<'_>>,
) -> Result<(String, Value), PlexusError> {
    let bad = |network: &str, reason: String| PlexusError::DelegateConfig {
        network: network.to_string(),
        reason,
    };
    match reference {
        NetworkRef::Path(p) => {
            let v = load_conf_path(p).map_err(|e| bad(&p.to_string_lossy(), e))?;
            let name = v
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            let list = to_conflist(&v, &conf.cni_version, &name).map_err(|e| bad(&name, e))?;
            Ok((name, list))
        }
        NetworkRef::Named { namespace, name } => {
            if let Some(k) = kube {
                if let Some(nad) = k.get_nad(namespace, name)? {
                    let network = nad.qualified_name();
                    let list = nad_conflist(conf, &nad).map_err(|e| bad(&network, e))?;
                    return Ok((network, list));
                }
            }
            if let Some(v) = find_conf_by_name(&conf.conf_dir, name) {
                let list = to_conflist(&v, &conf.cni_version, name).map_err(|e| bad(name, e))?;
                return Ok((name.clone(), list));
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
    nad: &plexus_netattach::NetworkAttachmentDefinition,
) -> Result<Value, String> {
    let raw = match nad.delegate_config() {
        Ok(v) => v,
        Err(plexus_netattach::NadError::EmptyConfig(_)) => {
            find_conf_by_name(&conf.conf_dir, &nad.metadata.name).ok_or_else(|| {
                format!(
                    "spec.config is empty and no config named {:?} exists in {}",
                    nad.metadata.name,
                    conf.conf_dir.display()
                )
            })?
        }
        Err(e) => return Err(e.to_string()),
    };
    to_conflist(&raw, &conf.cni_version, &nad.metadata.name)
}

/// The cluster network: the default-network annotation, else
/// `clusterNetwork`, else the first inline delegate. Without `kube` no NAD
/// is consulted (DEL/STATUS fallbacks).
fn cluster_network(
    conf: &PlexusConf,
    pod: &PodIdentity,
    annotations: Option<&BTreeMap<String, String>>,
    kube: Option<&Kube<'_>>,
) -> Result<(String, Value), PlexusError> {
    if let Some(ann) = annotations.and_then(|a| a.get(DEFAULT_NETWORK_ANNOTATION)) {
        let sel = parse_networks_annotation(ann, &conf.multus_namespace).map_err(|e| {
            PlexusError::Annotation {
                pod: format!("{}/{}", pod.namespace, pod.name),
                annotation: DEFAULT_NETWORK_ANNOTATION,
                reason: e.to_string(),
            }
        })?;
        if sel.len() != 1 {
            return Err(PlexusError::Annotation {
                pod: format!("{}/{}", pod.namespace, pod.name),
                annotation: DEFAULT_NETWORK_ANNOTATION,
                reason: format!("exactly one network expected, got {}", sel.len()),
            });
        }
        let r = NetworkRef::Named {
            namespace: sel[0].namespace.clone(),
            name: sel[0].name.clone(),
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
    let name = first
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let list =
        to_conflist(first, &conf.cni_version, &name).map_err(|e| PlexusError::DelegateConfig {
            network: name.clone(),
            reason: e,
        })?;
    Ok((name, list))
}

/// One annotation network's conflist: namespace isolation first (no API
/// call for a forbidden NAD), then the NAD, or a config file when there is
/// no Kubernetes at all.
fn selection_conflist(
    conf: &PlexusConf,
    pod: &PodIdentity,
    sel: &NetworkSelection,
    kube: &Kube<'_>,
) -> Result<(Value, Option<String>), PlexusError> {
    let nad_name = sel.qualified_name();
    if !conf.namespace_allowed(&pod.namespace, &sel.namespace) {
        return Err(PlexusError::NamespaceIsolation {
            pod: format!("{}/{}", pod.namespace, pod.name),
            pod_namespace: pod.namespace.clone(),
            nad: nad_name,
            allowed: conf.global_namespaces.join(", "),
        });
    }
    if !conf.has_kube() {
        let v = find_conf_by_name(&conf.conf_dir, &sel.name).ok_or_else(|| {
            PlexusError::NadNotFound {
                pod: format!("{}/{}", pod.namespace, pod.name),
                nad: sel.name.clone(),
                namespace: format!(
                    "{} (no kubeconfig; no config named {:?} in {})",
                    sel.namespace,
                    sel.name,
                    conf.conf_dir.display()
                ),
            }
        })?;
        let list = to_conflist(&v, &conf.cni_version, &sel.name).map_err(|e| {
            PlexusError::DelegateConfig {
                network: nad_name.clone(),
                reason: e,
            }
        })?;
        return Ok((list, None));
    }
    let nad = kube
        .get_nad(&sel.namespace, &sel.name)?
        .ok_or_else(|| PlexusError::NadNotFound {
            pod: format!("{}/{}", pod.namespace, pod.name),
            nad: sel.name.clone(),
            namespace: sel.namespace.clone(),
        })?;
    let list = nad_conflist(conf, &nad).map_err(|e| PlexusError::DelegateConfig {
        network: nad_name,
        reason: e,
    })?;
    Ok((list, nad.resource_name().map(str::to_string)))
}

/// Works out every network to attach, in order, with everything each
/// delegate will receive. Pure apart from API/kubelet reads.
#[allow(clippy::too_many_arguments)]
fn plan(
    args: &CmdArgs,
    conf: &PlexusConf,
    cni_args: &CniArgs,
    pod: &PodIdentity,
    annotations: Option<&BTreeMap<String, String>>,
    kube: &Kube<'_>,
    deps: &Deps<'_>,
) -> Result<Vec<Planned>, PlexusError> {
    let kube_opt = conf.has_kube().then_some(kube);
    let mut out: Vec<Planned> = Vec::new();
    let runtime_caps = conf.runtime_config.clone();

    let (name, mut list) = cluster_network(conf, pod, annotations, kube_opt)?;
    if !conf.auxiliary_cni_chain_name.is_empty() {
        let aux = auxiliary_plugins(
            &conf.cluster_network,
            &conf.conf_dir,
            &conf.auxiliary_cni_chain_name,
        )
        .map_err(PlexusError::Config)?;
        if let Some(plugins) = list.get_mut("plugins").and_then(Value::as_array_mut) {
            plugins.extend(aux);
        }
    }
    out.push(Planned {
        attachment: Attachment {
            network: name,
            ifname: args.ifname.clone(),
            is_default: true,
            conf: list,
            cni_args: delegate_cni_args(cni_args, pod, None),
            capability_args: runtime_caps.clone(),
            ..Attachment::default()
        },
        gateways: Vec::new(),
    });

    let mut extra: Vec<(String, Value)> = Vec::new();
    if conf.cluster_network.is_empty() {
        for (i, d) in conf.delegates.iter().enumerate().skip(1) {
            let name = d
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            let list = to_conflist(d, &conf.cni_version, &name).map_err(|e| {
                PlexusError::DelegateConfig {
                    network: format!("delegates[{i}]"),
                    reason: e,
                }
            })?;
            extra.push((name, list));
        }
    } else if !conf.system_namespaces.iter().any(|n| n == &pod.namespace) {
        for n in &conf.default_networks {
            let r = NetworkRef::parse(n, &conf.multus_namespace);
            extra.push(resolve_named(conf, &r, kube_opt)?);
        }
    }
    for (name, list) in extra {
        let idx = out.len();
        out.push(Planned {
            attachment: Attachment {
                network: name,
                ifname: format!("net{idx}"),
                conf: list,
                cni_args: delegate_cni_args(cni_args, pod, None),
                capability_args: runtime_caps.clone(),
                ..Attachment::default()
            },
            gateways: Vec::new(),
        });
    }

    let selections = match annotations
        .and_then(|a| a.get(NETWORKS_ANNOTATION))
        .filter(|s| !s.trim().is_empty())
    {
        Some(text) => parse_networks_annotation(text, &pod.namespace).map_err(|e| {
            PlexusError::Annotation {
                pod: format!("{}/{}", pod.namespace, pod.name),
                annotation: NETWORKS_ANNOTATION,
                reason: e.to_string(),
            }
        })?,
        None => Vec::new(),
    };
    let mut allocator: Option<DeviceAllocator> = None;
    for sel in &selections {
        let (mut list, resource) = selection_conflist(conf, pod, sel, kube)?;
        let network = sel.qualified_name();
        let mut device_id = None;
        if let Some(res) = &resource {
            if !pod.name.is_empty() && !pod.namespace.is_empty() {
                if allocator.is_none() {
                    let got = deps
                        .devices
                        .allocated(
                            &conf.pod_resources_socket,
                            conf.pod_resources_timeout,
                            &pod.namespace,
                            &pod.name,
                        )
                        .map_err(|reason| PlexusError::Device {
                            network: network.clone(),
                            resource: res.clone(),
                            reason,
                        })?;
                    allocator = Some(DeviceAllocator::new(got));
                }
                device_id = allocator.as_mut().and_then(|a| a.take(res));
                match &device_id {
                    Some(id) => inject_device_id(&mut list, id),
                    None => {
                        warn!(network = %network, resource = %res, "no allocated device left for resource")
                    }
                }
            }
        }
        if let Some(cni) = &sel.cni_args {
            inject_cni_args(&mut list, cni);
        }
        let idx = out.len();
        let ifname = sel.interface.clone().unwrap_or_else(|| format!("net{idx}"));
        let device_info_file = device_id.as_ref().filter(|_| resource.is_some()).map(|_| {
            cni_device_info_path(&conf.device_info_dir, &network, &args.container_id, &ifname)
        });
        let runtime_device = device_id.clone().or_else(|| sel.device_id.clone());
        out.push(Planned {
            attachment: Attachment {
                network,
                ifname,
                conf: list,
                cni_args: delegate_cni_args(cni_args, pod, Some(sel)),
                capability_args: capability_args(
                    &runtime_caps,
                    Some(sel),
                    runtime_device.as_deref(),
                    device_info_file.as_deref(),
                ),
                device_id,
                resource_name: resource,
                device_info_file,
                ..Attachment::default()
            },
            gateways: sel.default_route.clone(),
        });
    }

    let mut seen = std::collections::HashSet::new();
    for p in &out {
        if !seen.insert(p.attachment.ifname.clone()) {
            return Err(PlexusError::Config(format!(
                "interface name {} is requested by more than one network",
                p.attachment.ifname
            )));
        }
    }
    Ok(out)
}

/// ADD: plan every network, record the plan, run the delegates in order
/// (rolling back on failure), record results, publish network-status and
/// events, and return the cluster network's result in our cniVersion.
pub fn add(args: &CmdArgs, conf: &PlexusConf, deps: &Deps<'_>) -> Result<Value, PlexusError> {
    let cni_args = parse_cni_args(args)?;
    let pod = pod_identity(&cni_args, &args.container_id);
    wait_for_readiness(conf, deps.sleeper)?;
    let kube = Kube::new(deps.kube, deps.sleeper, conf);
    let annotations = pod_annotations(conf, &pod, &kube)?;
    let planned = plan(
        args,
        conf,
        &cni_args,
        &pod,
        annotations.as_ref(),
        &kube,
        deps,
    )?;
    let filters = plan_filters(
        &planned
            .iter()
            .map(|p| p.gateways.clone())
            .collect::<Vec<_>>(),
    )?;

    let mut entry = CacheEntry {
        kind: CACHE_KIND.into(),
        container_id: args.container_id.clone(),
        ifname: args.ifname.clone(),
        netns: args.netns.clone(),
        cni_version: conf.cni_version.clone(),
        pod: pod.clone(),
        cni_path: path_string(&delegate_path(conf, args)),
        attachments: planned.iter().map(|p| p.attachment.clone()).collect(),
        ..CacheEntry::default()
    };
    // Recorded before any delegate runs: a crash mid-ADD still leaves DEL
    // enough to undo what was done.
    deps.cache.save(&entry)?;

    for (i, p) in planned.iter().enumerate() {
        let outcome = attach(args, conf, deps, &pod, p, filters.as_ref().map(|f| f[i]));
        match outcome {
            Ok(result) => entry.attachments[i].result = Some(result),
            Err(e) => {
                rollback(args, conf, deps, &entry, i + 1);
                return Err(e);
            }
        }
    }
    if let Err(e) = deps.cache.save(&entry) {
        rollback(args, conf, deps, &entry, entry.attachments.len());
        return Err(e);
    }

    // Everything that can still fail after the delegates ran rolls them back.
    let finish = || -> Result<Value, PlexusError> {
        let result = final_result(conf, &pod, &entry)?;
        if conf.has_kube() && !pod.name.is_empty() {
            let statuses = network_status(&entry)?;
            let text =
                encode_network_status(&statuses).map_err(|e| PlexusError::Io(e.to_string()))?;
            if !kube.patch_network_status(&pod.namespace, &pod.name, &pod.uid, &text)? {
                warn!(pod = %pod.name, "pod not found while setting network-status");
            } else if conf.events {
                post_events(&kube, &pod, &entry);
            }
        }
        Ok(result)
    };
    let result = match finish() {
        Ok(r) => r,
        Err(e) => {
            rollback(args, conf, deps, &entry, entry.attachments.len());
            return Err(e);
        }
    };
    info!(container = %args.container_id, networks = entry.attachments.len(), "ADD done");
    Ok(result)
}

/// The cluster network's result in the caller's cniVersion.
fn final_result(
    conf: &PlexusConf,
    pod: &PodIdentity,
    entry: &CacheEntry,
) -> Result<Value, PlexusError> {
    let master = entry
        .attachments
        .first()
        .ok_or_else(|| PlexusError::Config("no cluster network".into()))?;
    let raw = master
        .result
        .as_ref()
        .ok_or_else(|| PlexusError::Config("cluster network produced no result".into()))?;
    CniResult::from_json_as(raw, Chain::new(&master.conf).version())
        .and_then(|r| r.to_json(&conf.cni_version))
        .map_err(|e| PlexusError::Delegate {
            context: context(pod, &master.network),
            op: "converting the result of",
            network: master.network.clone(),
            ifname: master.ifname.clone(),
            source: Box::new(e),
        })
}

/// One `AddedInterface` event per attachment; failures are only logged.
fn post_events(kube: &Kube<'_>, pod: &PodIdentity, entry: &CacheEntry) {
    let pref = PodRef {
        namespace: pod.namespace.clone(),
        name: pod.name.clone(),
        uid: pod.uid.clone(),
    };
    for att in &entry.attachments {
        let ips = result_addresses(att.result.as_ref());
        let ev = Event::added_interface(&att.ifname, &ips, &att.network);
        if let Err(e) = kube.event(&pref, &ev) {
            warn!(error = %e, "cannot post AddedInterface event");
        }
    }
}

/// Runs one delegate's ADD, then the default-route edits it needs.
fn attach(
    args: &CmdArgs,
    conf: &PlexusConf,
    deps: &Deps<'_>,
    pod: &PodIdentity,
    p: &Planned,
    filter: Option<(bool, bool)>,
) -> Result<Value, PlexusError> {
    let att = &p.attachment;
    let delegate_err = |source: CniError| PlexusError::Delegate {
        context: context(pod, &att.network),
        op: "adding",
        network: att.network.clone(),
        ifname: att.ifname.clone(),
        source: Box::new(source),
    };
    if let (Some(resource), Some(device), Some(file)) =
        (&att.resource_name, &att.device_id, &att.device_info_file)
    {
        let dp = dp_device_info_path(&conf.device_info_dir, resource, device);
        if let Err(e) = copy_dp_device_info(&dp, file) {
            warn!(error = %e, "cannot copy device-info");
        }
    }
    let env = run_env(args, conf, &args.netns, att);
    debug!(network = %att.network, ifname = %att.ifname, "delegate ADD");
    let mut result = Chain::new(&att.conf)
        .add(deps.exec, &env, &att.capability_args)
        .map_err(delegate_err)?;
    if let Some((f4, f6)) = filter {
        for (filter, v6) in [(f4, false), (f6, true)] {
            if filter {
                deps.routes
                    .delete_default_routes(&args.netns, &att.ifname, v6)
                    .map_err(|e| delegate_err(CniError::generic(e)))?;
                strip_default_routes(&mut result, v6);
            }
        }
        for gw in &p.gateways {
            // The requester's own default route of that family is replaced.
            strip_default_routes(&mut result, gw.is_ipv6());
            deps.routes
                .add_default_route(&args.netns, &att.ifname, *gw)
                .map_err(|e| delegate_err(CniError::generic(e)))?;
            add_default_route(&mut result, *gw);
        }
    }
    Ok(result)
}

/// Undoes attachments `0..upto` in reverse, ignoring failures (the ADD
/// error is what matters), and forgets the cache entry.
fn rollback(args: &CmdArgs, conf: &PlexusConf, deps: &Deps<'_>, entry: &CacheEntry, upto: usize) {
    let netns = live_netns(&args.netns);
    for att in entry.attachments.iter().take(upto).rev() {
        let env = run_env(args, conf, &netns, att);
        if let Err(e) =
            Chain::new(&att.conf).del(deps.exec, &env, &att.capability_args, att.result.as_ref())
        {
            warn!(network = %att.network, error = %e, "rollback DEL failed");
        }
        remove_device_info(att);
    }
    if let Err(e) = deps.cache.remove(&entry.container_id, &entry.ifname) {
        warn!(error = %e, "cannot remove cache entry after failed ADD");
    }
}

fn remove_device_info(att: &Attachment) {
    if let Some(f) = &att.device_info_file {
        match std::fs::remove_file(f) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => warn!(file = %f.display(), error = %e, "cannot remove device-info"),
        }
    }
}

/// Addresses with prefix from a result of any version (for events).
fn result_addresses(result: Option<&Value>) -> Vec<String> {
    let Some(r) = result else { return Vec::new() };
    let mut out: Vec<String> = r
        .get("ips")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|ip| {
            ip.get("address")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .collect();
    for legacy in ["ip4", "ip6"] {
        if let Some(ip) = r
            .get(legacy)
            .and_then(|b| b.get("ip"))
            .and_then(Value::as_str)
        {
            out.push(ip.to_string());
        }
    }
    out
}

/// The network-status entries of every attachment, device-info included:
/// the CNI device-info file when a device plugin or delegate wrote one, else
/// a `pci` entry synthesized from a PCI device ID.
fn network_status(entry: &CacheEntry) -> Result<Vec<NetworkStatus>, PlexusError> {
    let mut out = Vec::new();
    for att in &entry.attachments {
        let Some(result) = &att.result else { continue };
        let info = att
            .device_info_file
            .as_deref()
            .and_then(read_device_info)
            .or_else(|| {
                att.device_id
                    .as_deref()
                    .filter(|d| is_pci_address(d))
                    .map(|d| DeviceInfo::pci(d, None))
            });
        out.extend(
            network_statuses_from_result(result, &att.network, att.is_default, info.as_ref())
                .map_err(|e| PlexusError::Io(e.to_string()))?,
        );
    }
    Ok(out)
}

/// Errors that mean "already gone": teardown treats them as success.
fn is_gone(e: &CniError) -> bool {
    let m = format!("{} {}", e.msg, e.details).to_ascii_lowercase();
    e.code == CniError::UNKNOWN_CONTAINER
        || m.contains("no such file or directory")
        || m.contains("not found")
        || m.contains("does not exist")
}

/// DELs every attachment of `entry` in reverse; returns the real failures.
fn teardown(
    args: &CmdArgs,
    conf: &PlexusConf,
    deps: &Deps<'_>,
    entry: &CacheEntry,
) -> Vec<PlexusError> {
    let netns = live_netns(&args.netns);
    let mut errors = Vec::new();
    for att in entry.attachments.iter().rev() {
        let env = run_env(args, conf, &netns, att);
        debug!(network = %att.network, ifname = %att.ifname, "delegate DEL");
        match Chain::new(&att.conf).del(deps.exec, &env, &att.capability_args, att.result.as_ref())
        {
            Ok(()) => {}
            Err(e) if is_gone(&e) => info!(network = %att.network, error = %e, "already gone"),
            Err(e) => errors.push(PlexusError::Delegate {
                context: context(&entry.pod, &att.network),
                op: "deleting",
                network: att.network.clone(),
                ifname: att.ifname.clone(),
                source: Box::new(e),
            }),
        }
        remove_device_info(att);
    }
    errors
}

/// DEL: replays the cached ADD in reverse, no API server needed. Without a
/// cache entry, DELs the cluster network resolved from config alone.
pub fn del(args: &CmdArgs, conf: &PlexusConf, deps: &Deps<'_>) -> Result<(), PlexusError> {
    let entry = match deps.cache.load(&args.container_id, &args.ifname) {
        Ok(e) => e,
        Err(e) => {
            warn!(error = %e, "unreadable cache entry; falling back to config");
            let _ = deps.cache.remove(&args.container_id, &args.ifname);
            None
        }
    };
    let Some(entry) = entry else {
        return del_without_cache(args, conf, deps);
    };
    let errors = teardown(args, conf, deps, &entry);
    if errors.is_empty() || !conf.retry_delete_on_error {
        deps.cache.remove(&args.container_id, &args.ifname)?;
    }
    match errors.len() {
        0 => Ok(()),
        _ => Err(PlexusError::Multiple(errors)),
    }
}

fn del_without_cache(
    args: &CmdArgs,
    conf: &PlexusConf,
    deps: &Deps<'_>,
) -> Result<(), PlexusError> {
    let cni_args = parse_cni_args(args)?;
    let pod = pod_identity(&cni_args, &args.container_id);
    let (network, list) = match cluster_network(conf, &pod, None, None) {
        Ok(x) => x,
        Err(e) => {
            info!(error = %e, "no cache entry and no config-only cluster network; nothing to delete");
            return Ok(());
        }
    };
    let entry = CacheEntry {
        kind: CACHE_KIND.into(),
        container_id: args.container_id.clone(),
        ifname: args.ifname.clone(),
        pod: pod.clone(),
        attachments: vec![Attachment {
            network,
            ifname: args.ifname.clone(),
            is_default: true,
            conf: list,
            cni_args: delegate_cni_args(&cni_args, &pod, None),
            capability_args: conf.runtime_config.clone(),
            ..Attachment::default()
        }],
        ..CacheEntry::default()
    };
    let errors = teardown(args, conf, deps, &entry);
    match errors.len() {
        0 => Ok(()),
        _ => Err(PlexusError::Multiple(errors)),
    }
}

/// CHECK: every cached attachment (cluster and annotation networks) with
/// its delegate's cached result as prevResult.
pub fn check(args: &CmdArgs, conf: &PlexusConf, deps: &Deps<'_>) -> Result<(), PlexusError> {
    let entry = deps
        .cache
        .load(&args.container_id, &args.ifname)?
        .ok_or_else(|| {
            PlexusError::UnknownContainer(format!(
                "no ADD recorded for container {} interface {}",
                args.container_id, args.ifname
            ))
        })?;
    for att in &entry.attachments {
        let env = run_env(args, conf, &args.netns, att);
        let outcome = Chain::new(&att.conf)
            .check(deps.exec, &env, &att.capability_args, att.result.as_ref())
            .map_err(|source| PlexusError::Delegate {
                context: context(&entry.pod, &att.network),
                op: "checking",
                network: att.network.clone(),
                ifname: att.ifname.clone(),
                source: Box::new(source),
            })?;
        debug!(network = %att.network, ?outcome, "CHECK");
    }
    Ok(())
}

/// STATUS: the readiness indicator file, then STATUS of every config-known
/// delegate at 1.1.0 (its 50/51 code passed through).
pub fn status(args: &CmdArgs, conf: &PlexusConf, deps: &Deps<'_>) -> Result<(), PlexusError> {
    if !conf.readiness_indicator_file.is_empty()
        && !Path::new(&conf.readiness_indicator_file).exists()
    {
        return Err(PlexusError::NotReady(format!(
            "readiness indicator file {} does not exist",
            conf.readiness_indicator_file
        )));
    }
    let mut lists: Vec<(String, Value)> = Vec::new();
    let pod = PodIdentity::default();
    match cluster_network(conf, &pod, None, None) {
        Ok(x) => lists.push(x),
        Err(e) => debug!(error = %e, "cluster network not resolvable without the API; skipped"),
    }
    if conf.cluster_network.is_empty() {
        for d in conf.delegates.iter().skip(1) {
            let name = d
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            if let Ok(l) = to_conflist(d, &conf.cni_version, &name) {
                lists.push((name, l));
            }
        }
    }
    for (network, list) in &lists {
        let env = RunEnv {
            path: delegate_path(conf, args),
            ..RunEnv::default()
        };
        Chain::new(list)
            .status(deps.exec, &env)
            .map_err(|source| PlexusError::Delegate {
                context: "[status]".into(),
                op: "getting status of",
                network: network.clone(),
                ifname: String::new(),
                source: Box::new(source),
            })?;
    }
    Ok(())
}

/// GC: tears down cached attachments the runtime no longer lists, then
/// sends GC to every network we attached with the attachments that remain
/// (translated to each delegate's own interface names).
pub fn gc(args: &CmdArgs, conf: &PlexusConf, deps: &Deps<'_>) -> Result<(), PlexusError> {
    let stdin_conf = NetConf::parse(&args.stdin).map_err(|e| PlexusError::Decode(e.msg))?;
    let valid: Vec<GcAttachment> = stdin_conf
        .valid_attachments()
        .map_err(|e| PlexusError::Decode(e.msg))?
        .unwrap_or_default();
    let is_valid = |e: &CacheEntry| {
        valid
            .iter()
            .any(|v| v.container_id == e.container_id && v.ifname == e.ifname)
    };
    let entries = deps.cache.list()?;
    let mut errors = Vec::new();
    let mut networks: HashMap<String, Value> = HashMap::new();
    let mut remaining: HashMap<String, Vec<GcAttachment>> = HashMap::new();
    let mut default_networks = std::collections::HashSet::new();
    for e in &entries {
        for att in &e.attachments {
            if att.is_default {
                default_networks.insert(att.network.clone());
            }
            networks.insert(att.network.clone(), att.conf.clone());
            remaining.entry(att.network.clone()).or_default();
        }
        if is_valid(e) {
            for att in &e.attachments {
                remaining
                    .entry(att.network.clone())
                    .or_default()
                    .push(GcAttachment {
                        container_id: e.container_id.clone(),
                        ifname: att.ifname.clone(),
                    });
            }
            continue;
        }
        info!(container = %e.container_id, ifname = %e.ifname, "GC: removing stale attachment");
        let stale_args = CmdArgs {
            container_id: e.container_id.clone(),
            netns: e.netns.clone(),
            ifname: e.ifname.clone(),
            ..args.clone()
        };
        let errs = teardown(&stale_args, conf, deps, e);
        if errs.is_empty() {
            deps.cache.remove(&e.container_id, &e.ifname)?;
        } else {
            errors.extend(errs);
        }
    }
    let mut names: Vec<&String> = networks.keys().collect();
    names.sort();
    for network in names {
        let list = &networks[network];
        let env = RunEnv {
            path: delegate_path(conf, args),
            ..RunEnv::default()
        };
        let mut still = remaining.get(network).cloned().unwrap_or_default();
        // The cluster network uses the runtime's interface names, so the
        // runtime's list is authoritative for it too (covers attachments
        // made before this cache existed).
        if default_networks.contains(network) {
            for v in &valid {
                if !still.contains(v) {
                    still.push(v.clone());
                }
            }
        }
        if let Err(source) = Chain::new(list).gc(deps.exec, &env, &still) {
            errors.push(PlexusError::Delegate {
                context: "[gc]".into(),
                op: "garbage-collecting",
                network: network.clone(),
                ifname: String::new(),
                source: Box::new(source),
            });
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(PlexusError::Multiple(errors))
    }
}
