//! `plexus`: builds the real side effects and hands the call to the skeleton.

use plexus::devices::KubeletDevices;
use plexus::kube::{HttpKube, ThreadSleeper};
use plexus::routes::NetlinkRoutes;
use plexus::{PlexusPlugin, ABOUT};
use plexus_cni::exec::ProcessExec;

fn main() {
    plexus_buildinfo::exit_if_version_flag("plexus");
    let plugin = PlexusPlugin {
        exec: &ProcessExec,
        kube: &HttpKube,
        sleeper: &ThreadSleeper,
        devices: &KubeletDevices,
        routes: &NetlinkRoutes,
    };
    std::process::exit(plexus_cni::skel::run(
        &plugin,
        ABOUT,
        plexus_cni::version::SUPPORTED,
    ));
}
