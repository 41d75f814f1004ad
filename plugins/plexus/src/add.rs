//! The executing half of ADD: record the plan, run each delegate in order
//! (rolling back everything on failure), record the results, publish
//! network-status and events, and answer with the cluster network's result
//! in the caller's cniVersion.

use plexus_cni::{CmdArgs, CniError, CniResult};
use plexus_netattach::api::PodRef;
use plexus_netattach::{
    encode_network_status, network_statuses_from_cni_result, DeviceInfo, Event, NetworkStatus,
};
use serde_json::Value;
use tracing::{debug, info, warn};

use crate::cache::{CacheEntry, PodIdentity, CACHE_KIND};
use crate::chain::Chain;
use crate::config::PlexusConf;
use crate::del::teardown;
use crate::devices::{copy_dp_device_info, dp_device_info_path, is_pci_address, read_device_info};
use crate::error::PlexusError;
use crate::handlers::{delegate_error, delegate_path, path_string, run_env, Deps};
use crate::kube::Kube;
use crate::plan::{plan, Planned};
use crate::resolve::resolve;
use crate::routes::{add_default_route, plan_filters, strip_default_routes};

/// ADD: resolve, plan, record the plan, run the delegates in order (rolling
/// back on failure), record results, publish network-status and events.
pub fn add(args: &CmdArgs, conf: &PlexusConf, deps: &Deps<'_>) -> Result<Value, PlexusError> {
    let kube = Kube::new(deps.kube, deps.sleeper, conf);
    let resolved = resolve(args, conf, deps, &kube)?;
    let planned = plan(args, conf, &resolved)?;
    let gateways: Vec<_> = planned.iter().map(|p| p.gateways.clone()).collect();
    let filters = plan_filters(&gateways)?;
    let pod = resolved.pod;
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
        match attach(args, conf, deps, &pod, p, filters.as_ref().map(|f| f[i])) {
            Ok(result) => entry.attachments[i].result = Some(result),
            Err(e) => {
                let ran = if never_ran(args, conf, deps, p) {
                    i
                } else {
                    i + 1
                };
                rollback(args, conf, deps, &entry, ran);
                return Err(e);
            }
        }
    }
    // Everything that can still fail after the delegates ran rolls them back.
    let result = deps
        .cache
        .save(&entry)
        .and_then(|()| final_result(conf, &entry))
        .and_then(|r| publish(conf, &kube, &entry).map(|()| r));
    match &result {
        Ok(_) => {
            info!(container = %args.container_id, networks = entry.attachments.len(), "ADD done")
        }
        Err(_) => rollback(args, conf, deps, &entry, entry.attachments.len()),
    }
    result
}

/// Runs one delegate's ADD, then the default-route edits it needs.
fn attach(
    args: &CmdArgs,
    conf: &PlexusConf,
    deps: &Deps<'_>,
    pod: &PodIdentity,
    p: &Planned,
    filter: Option<(bool, bool)>,
) -> Result<CniResult, PlexusError> {
    let att = &p.attachment;
    let delegate_err = |source: CniError| delegate_error(pod, "adding", att, source);
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
    let Some((f4, f6)) = filter else {
        return Ok(result);
    };
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
    Ok(result)
}

/// True when the failed delegate cannot have run: its first plugin is not
/// on the delegate path (decided by looking the binary up, as the exec
/// would, never by the error's text). Nothing of it needs undoing, and a
/// DEL of it would fail the same way and keep the cache entry forever.
fn never_ran(args: &CmdArgs, conf: &PlexusConf, deps: &Deps<'_>, p: &Planned) -> bool {
    let first = p.attachment.conf.plugins.first();
    let plugin_type = first.and_then(|v| v.get("type")).and_then(Value::as_str);
    let paths = delegate_path(conf, args);
    plugin_type.is_some_and(|t| deps.exec.find_in_path(t, &paths).is_err())
}

/// Undoes attachments `0..upto` in reverse (the ADD error is what the
/// caller reports). The cache entry is forgotten only when every delegate is
/// clean: if a rollback DEL fails too (the delegate crashed again, a
/// transient error), the runtime's DEL after the failed ADD must still find
/// the entry to retry it, or a VF or record would be left behind.
fn rollback(args: &CmdArgs, conf: &PlexusConf, deps: &Deps<'_>, entry: &CacheEntry, upto: usize) {
    let mut done = entry.clone();
    done.attachments.truncate(upto);
    let errors = teardown(args, conf, deps, &done);
    if !errors.is_empty() {
        for e in &errors {
            warn!(error = %e, "rollback DEL failed; cache entry kept for the runtime's DEL");
        }
        return;
    }
    if let Err(e) = deps.cache.remove(&entry.container_id, &entry.ifname) {
        warn!(error = %e, "cannot remove cache entry after failed ADD");
    }
}

/// The network-status annotation and, when enabled, one event per
/// attachment; nothing without Kubernetes or a pod name.
fn publish(conf: &PlexusConf, kube: &Kube<'_>, entry: &CacheEntry) -> Result<(), PlexusError> {
    let pod = &entry.pod;
    if !conf.has_kube() || pod.name.is_empty() {
        return Ok(());
    }
    let statuses = network_status(entry)?;
    let text = encode_network_status(&statuses).map_err(|e| PlexusError::Io(e.to_string()))?;
    let pref = PodRef {
        namespace: pod.namespace.clone(),
        name: pod.name.clone(),
        uid: pod.uid.clone(),
    };
    let events = if conf.events {
        added_interface_events(entry)
    } else {
        Vec::new()
    };
    if !kube.publish(&pref, &text, &events)? {
        warn!(pod = %pod.name, "pod not found while setting network-status");
    }
    Ok(())
}

/// The cluster network's result in the caller's cniVersion.
fn final_result(conf: &PlexusConf, entry: &CacheEntry) -> Result<Value, PlexusError> {
    let master = entry
        .attachments
        .first()
        .ok_or_else(|| PlexusError::Config("no cluster network".into()))?;
    let result = master
        .result
        .as_ref()
        .ok_or_else(|| PlexusError::Config("cluster network produced no result".into()))?;
    result
        .to_json(&conf.cni_version)
        .map_err(|e| delegate_error(&entry.pod, "converting the result of", master, e))
}

/// One `AddedInterface` event per attachment.
fn added_interface_events(entry: &CacheEntry) -> Vec<Event> {
    entry
        .attachments
        .iter()
        .map(|att| {
            let ips: Vec<String> = att
                .result
                .iter()
                .flat_map(|r| &r.ips)
                .map(|ip| ip.address.to_string())
                .collect();
            Event::added_interface(&att.ifname, &ips, &att.network)
        })
        .collect()
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
            network_statuses_from_cni_result(result, &att.network, att.is_default, info.as_ref())
                .map_err(|e| PlexusError::Io(e.to_string()))?,
        );
    }
    Ok(out)
}
