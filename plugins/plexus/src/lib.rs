//! Plexus, the Multus-compatible meta plugin (`type: "plexus"`): one process
//! per CNI call, no daemon. ADD attaches the cluster network as `CNI_IFNAME`
//! and every network the pod asks for (`k8s.v1.cni.cncf.io/networks`) as
//! `net1`, `net2`, … through their delegate plugins, writes the
//! `network-status` annotation and records what it did on the node, so DEL,
//! CHECK and GC replay that record without the API server.
//!
//! Seams: [`plexus_cni::exec::Exec`] (delegates), [`kube::KubeConnect`] →
//! [`plexus_netattach::PodApi`] (pods, NADs, status, events),
//! [`devices::DeviceIdSource`] (kubelet PodResources), [`cache::CacheStore`]
//! (the ADD record) and [`routes::RouteOps`] (default-route edits). The
//! handlers in [`handlers`] take them all through [`handlers::Deps`].
//! Behaviour reference: Multus thin plugin `pkg/multus/multus.go`.

pub mod add;
pub mod cache;
pub mod chain;
pub mod config;
pub mod del;
pub mod delegates;
pub mod devices;
pub mod error;
pub mod gc;
pub mod handlers;
pub mod inspect;
pub mod kube;
pub mod logging;
pub mod plan;
pub mod resolve;
pub mod routes;

use plexus_cni::exec::Exec;
use plexus_cni::{CmdArgs, CniError, Plugin};
use serde_json::Value;

use crate::cache::FsCacheStore;
use crate::config::PlexusConf;
use crate::devices::DeviceIdSource;
use crate::handlers::Deps;
use crate::kube::{KubeConnect, Sleeper};
use crate::routes::RouteOps;

/// Text printed when the binary runs without `CNI_COMMAND`.
pub const ABOUT: &str = concat!(
    "plexus ",
    env!("CARGO_PKG_VERSION"),
    ": Multus-compatible meta CNI plugin"
);

/// The plugin as the skeleton sees it: parses the config, sets up logging,
/// opens the cache under `cniDir` and runs a handler.
pub struct PlexusPlugin<'a> {
    pub exec: &'a dyn Exec,
    pub kube: &'a dyn KubeConnect,
    pub sleeper: &'a dyn Sleeper,
    pub devices: &'a dyn DeviceIdSource,
    pub routes: &'a dyn RouteOps,
}

impl PlexusPlugin<'_> {
    fn with_deps<T>(
        &self,
        args: &CmdArgs,
        f: impl FnOnce(&CmdArgs, &PlexusConf, &Deps<'_>) -> Result<T, error::PlexusError>,
    ) -> Result<T, CniError> {
        let conf = PlexusConf::parse(&args.stdin)?;
        logging::init(&conf);
        let cache = FsCacheStore::new(&conf.cni_dir);
        let deps = Deps {
            exec: self.exec,
            kube: self.kube,
            sleeper: self.sleeper,
            devices: self.devices,
            cache: &cache,
            routes: self.routes,
        };
        f(args, &conf, &deps).map_err(|e| {
            tracing::error!(command = %args.command, container = %args.container_id, error = %e, "failed");
            e.to_cni()
        })
    }
}

impl Plugin for PlexusPlugin<'_> {
    fn add(&self, args: &CmdArgs) -> Result<Value, CniError> {
        self.with_deps(args, handlers::add)
    }

    fn del(&self, args: &CmdArgs) -> Result<(), CniError> {
        self.with_deps(args, handlers::del)
    }

    fn check(&self, args: &CmdArgs) -> Result<(), CniError> {
        self.with_deps(args, handlers::check)
    }

    fn status(&self, args: &CmdArgs) -> Result<(), CniError> {
        self.with_deps(args, handlers::status)
    }

    fn gc(&self, args: &CmdArgs) -> Result<(), CniError> {
        self.with_deps(args, handlers::gc)
    }
}
