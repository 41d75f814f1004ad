//! The five CNI operations of the meta plugin and what they share. All side
//! effects go through [`Deps`]: delegate exec, the pod API, the kubelet's
//! device IDs, the ADD cache and default-route edits.
//!
//! ADD is three steps, each in its own module: [`crate::resolve`] (all
//! reads, into one struct), [`crate::plan`] (pure) and [`crate::add`]
//! (delegates, cache, network-status). DEL is in [`crate::del`], CHECK and
//! STATUS in [`crate::inspect`], GC in [`crate::gc`].

use std::path::PathBuf;

use plexus_cni::exec::Exec;
use plexus_cni::{CmdArgs, CniError};

use crate::cache::{Attachment, CacheStore, PodIdentity};
use crate::chain::RunEnv;
use crate::config::PlexusConf;
use crate::devices::DeviceIdSource;
use crate::error::PlexusError;
use crate::kube::{KubeConnect, Sleeper};
use crate::routes::RouteOps;

pub use crate::add::add;
pub use crate::del::del;
pub use crate::gc::gc;
pub use crate::inspect::{check, status};
pub use crate::kube::EVENT_COMPONENT;

/// Every side effect a handler may perform.
pub struct Deps<'a> {
    pub exec: &'a dyn Exec,
    pub kube: &'a dyn KubeConnect,
    pub sleeper: &'a dyn Sleeper,
    pub devices: &'a dyn DeviceIdSource,
    pub cache: &'a dyn CacheStore,
    pub routes: &'a dyn RouteOps,
}

/// Our `binDir` first, then the runtime's `CNI_PATH`.
pub(crate) fn delegate_path(conf: &PlexusConf, args: &CmdArgs) -> Vec<PathBuf> {
    let mut out = vec![conf.bin_dir.clone()];
    for p in &args.path {
        if !out.contains(p) {
            out.push(p.clone());
        }
    }
    out
}

pub(crate) fn path_string(p: &[PathBuf]) -> String {
    p.iter()
        .map(|x| x.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(":")
}

pub(crate) fn run_env(args: &CmdArgs, conf: &PlexusConf, netns: &str, att: &Attachment) -> RunEnv {
    RunEnv {
        container_id: args.container_id.clone(),
        netns: netns.to_string(),
        ifname: att.ifname.clone(),
        cni_args: att.cni_args.clone(),
        path: delegate_path(conf, args),
    }
}

/// A delegate's failure in one operation on one attachment, with the pod
/// context Multus prints (`[ns/name/uid:network]`).
pub(crate) fn delegate_error(
    pod: &PodIdentity,
    op: &'static str,
    att: &Attachment,
    source: CniError,
) -> PlexusError {
    PlexusError::Delegate {
        context: format!(
            "[{}/{}/{}:{}]",
            pod.namespace, pod.name, pod.uid, att.network
        ),
        op,
        network: att.network.clone(),
        ifname: att.ifname.clone(),
        source: Box::new(source),
    }
}

/// A node-wide operation's (STATUS, GC) failure for one network.
pub(crate) fn network_error(
    context: &str,
    op: &'static str,
    network: &str,
    source: CniError,
) -> PlexusError {
    PlexusError::Delegate {
        context: context.into(),
        op,
        network: network.to_string(),
        ifname: String::new(),
        source: Box::new(source),
    }
}
