//! CHECK and STATUS: the read-only operations. CHECK replays the cached ADD
//! with each delegate's cached result; STATUS asks every network known from
//! config alone (no API server) at 1.1.0.

use std::path::Path;

use plexus_cni::CmdArgs;
use tracing::debug;

use crate::cache::PodIdentity;
use crate::chain::{Chain, RunEnv};
use crate::config::PlexusConf;
use crate::error::PlexusError;
use crate::handlers::{delegate_error, delegate_path, network_error, run_env, Deps};
use crate::resolve::{cluster_network, inline_delegate, Network};

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
            .map_err(|source| delegate_error(&entry.pod, "checking", att, source))?;
        debug!(network = %att.network, ?outcome, "CHECK");
    }
    Ok(())
}

/// The networks STATUS can know without the API: the cluster network when
/// config alone resolves it, and the other inline delegates.
fn config_networks(conf: &PlexusConf) -> Vec<Network> {
    let mut out = Vec::new();
    match cluster_network(conf, &PodIdentity::default(), None, None) {
        Ok(n) => out.push(n),
        Err(e) => debug!(error = %e, "cluster network not resolvable without the API; skipped"),
    }
    if conf.cluster_network.is_empty() {
        out.extend(
            conf.delegates
                .iter()
                .skip(1)
                .filter_map(|d| inline_delegate(conf, d, None).ok()),
        );
    }
    out
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
    let env = RunEnv {
        path: delegate_path(conf, args),
        ..RunEnv::default()
    };
    for n in config_networks(conf) {
        Chain::new(&n.conf)
            .status(deps.exec, &env)
            .map_err(|source| network_error("[status]", "getting status of", &n.name, source))?;
    }
    Ok(())
}
