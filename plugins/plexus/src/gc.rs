//! GC (CNI 1.1): tear down cached attachments the runtime no longer lists,
//! then send GC to every network we attached with the attachments that
//! remain, translated to each delegate's own interface names.

use std::collections::{BTreeMap, HashSet};

use plexus_cni::config::GcAttachment;
use plexus_cni::{CmdArgs, NetConf, NetConfList};
use tracing::info;

use crate::cache::CacheEntry;
use crate::chain::{Chain, RunEnv};
use crate::config::PlexusConf;
use crate::del::teardown;
use crate::error::PlexusError;
use crate::handlers::{delegate_path, network_error, Deps};

/// Per network we ever attached: its conflist and the attachments (in the
/// delegate's interface names) still valid.
#[derive(Default)]
struct Survivors {
    networks: BTreeMap<String, (NetConfList, Vec<GcAttachment>)>,
    default_networks: HashSet<String>,
}

impl Survivors {
    fn note(&mut self, e: &CacheEntry, valid: bool) {
        for att in &e.attachments {
            if att.is_default {
                self.default_networks.insert(att.network.clone());
            }
            let slot = self.networks.entry(att.network.clone()).or_default();
            slot.0 = att.conf.clone();
            if valid {
                slot.1.push(GcAttachment {
                    container_id: e.container_id.clone(),
                    ifname: att.ifname.clone(),
                });
            }
        }
    }
}

/// GC: removes stale entries, then GCs every known network.
pub fn gc(args: &CmdArgs, conf: &PlexusConf, deps: &Deps<'_>) -> Result<(), PlexusError> {
    let stdin_conf = NetConf::parse(&args.stdin).map_err(|e| PlexusError::Decode(e.msg))?;
    let valid: Vec<GcAttachment> = stdin_conf
        .valid_attachments()
        .map_err(|e| PlexusError::Decode(e.msg))?
        .unwrap_or_default();
    let mut errors = Vec::new();
    let mut survivors = Survivors::default();
    for e in &deps.cache.list()? {
        let is_valid = valid
            .iter()
            .any(|v| v.container_id == e.container_id && v.ifname == e.ifname);
        survivors.note(e, is_valid);
        if !is_valid {
            errors.extend(remove_stale(args, conf, deps, e)?);
        }
    }
    let env = RunEnv {
        path: delegate_path(conf, args),
        ..RunEnv::default()
    };
    for (network, (list, mut still)) in survivors.networks {
        // The cluster network uses the runtime's interface names, so the
        // runtime's list is authoritative for it too (covers attachments
        // made before this cache existed).
        if survivors.default_networks.contains(&network) {
            for v in &valid {
                if !still.contains(v) {
                    still.push(v.clone());
                }
            }
        }
        if let Err(source) = Chain::new(&list).gc(deps.exec, &env, &still) {
            errors.push(network_error(
                "[gc]",
                "garbage-collecting",
                &network,
                source,
            ));
        }
    }
    match errors.len() {
        0 => Ok(()),
        _ => Err(PlexusError::Multiple(errors)),
    }
}

/// Tears down one entry the runtime no longer lists; the entry goes only
/// when every delegate is clean.
fn remove_stale(
    args: &CmdArgs,
    conf: &PlexusConf,
    deps: &Deps<'_>,
    e: &CacheEntry,
) -> Result<Vec<PlexusError>, PlexusError> {
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
    }
    Ok(errs)
}
