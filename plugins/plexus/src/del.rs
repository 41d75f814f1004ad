//! DEL: replay the cached ADD in reverse without the API server. What counts
//! as "already gone" is decided by identities, never by message text: the
//! netns by its filesystem type (nsfs), a delegate by CNI error code 3
//! (`UNKNOWN_CONTAINER`, "no cleanup needed" in the spec). Any other
//! delegate failure is real: it is reported and the cache entry, which the
//! retried DEL needs to find the VF or address, is kept.

use plexus_cni::{CmdArgs, CniError};
use tracing::{debug, info, warn};

use crate::cache::{Attachment, CacheEntry, CACHE_KIND};
use crate::chain::Chain;
use crate::config::PlexusConf;
use crate::delegates::{delegate_cni_args, pod_identity};
use crate::error::PlexusError;
use crate::handlers::{delegate_error, run_env, Deps};
use crate::resolve::{cluster_network, parse_cni_args};

/// The netns to hand delegates on teardown: empty unless `netns` is a live
/// network namespace (nsfs, type net), so delegates treat a vanished or
/// bogus path as "already gone" instead of failing to open it.
pub(crate) fn live_netns(netns: &str) -> String {
    if !netns.is_empty() && plexus_netns::is_netns(netns) {
        netns.to_string()
    } else {
        String::new()
    }
}

/// A delegate error that means "nothing left to clean up": code 3 only.
pub(crate) fn is_gone(e: &CniError) -> bool {
    e.code == CniError::UNKNOWN_CONTAINER
}

pub(crate) fn remove_device_info(att: &Attachment) {
    if let Some(f) = &att.device_info_file {
        match std::fs::remove_file(f) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => warn!(file = %f.display(), error = %e, "cannot remove device-info"),
        }
    }
}

/// DELs every attachment of `entry` in reverse; returns the real failures.
pub(crate) fn teardown(
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
            Ok(()) => remove_device_info(att),
            Err(e) if is_gone(&e) => {
                info!(network = %att.network, error = %e, "already gone");
                remove_device_info(att);
            }
            Err(e) => errors.push(delegate_error(&entry.pod, "deleting", att, e)),
        }
    }
    errors
}

/// DEL: replays the cached ADD in reverse, no API server needed. Without a
/// cache entry, DELs the cluster network resolved from config alone. The
/// entry is forgotten only when every delegate is clean.
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
        del_without_cache(args, conf, deps)?;
        // An ADD killed while writing the entry leaves its temp file; an
        // entry saved since the look is a racing ADD's, not ours.
        return deps
            .cache
            .remove_stale_temps(&args.container_id, &args.ifname);
    };
    let errors = teardown(args, conf, deps, &entry);
    if !errors.is_empty() {
        return Err(PlexusError::Multiple(errors));
    }
    deps.cache.remove(&args.container_id, &args.ifname)
}

fn del_without_cache(
    args: &CmdArgs,
    conf: &PlexusConf,
    deps: &Deps<'_>,
) -> Result<(), PlexusError> {
    let cni_args = parse_cni_args(args)?;
    let pod = pod_identity(&cni_args, &args.container_id);
    let network = match cluster_network(conf, &pod, None, None) {
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
            network: network.name,
            ifname: args.ifname.clone(),
            is_default: true,
            conf: network.conf,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_code_3_means_gone() {
        assert!(is_gone(&CniError::new(
            CniError::UNKNOWN_CONTAINER,
            "gone",
            ""
        )));
        // Message text decides nothing: a third-party delegate's failure or
        // a missing binary that happens to say "not found" is real.
        for msg in [
            "Link not found",
            "no such file or directory",
            "netns does not exist",
        ] {
            assert!(!is_gone(&CniError::generic(msg)), "{msg}");
        }
    }

    #[test]
    fn live_netns_needs_a_network_namespace() {
        assert_eq!(live_netns(""), "");
        assert_eq!(live_netns("/nonexistent/netns"), "");
        // A path that exists but is no namespace (a bind mount gone stale
        // leaves a plain file) is not live either.
        let f = tempfile::NamedTempFile::new().unwrap();
        assert_eq!(live_netns(&f.path().to_string_lossy()), "");
        assert_eq!(live_netns("/proc/self/ns/net"), "/proc/self/ns/net");
    }
}
