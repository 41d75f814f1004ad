//! `plexus`: builds the real side effects and hands the call to the skeleton.
//!
//! Our own delegates run in-process when the binary `CNI_PATH` resolves to is
//! the one installed next to this one (`BuiltinExec`'s test, shared with
//! host-device): a tutorial pod's whole attach (plexus → host-device →
//! static/vnic) is then one process instead of three per network. Any other
//! plugin, or another copy of ours elsewhere in `CNI_PATH`, is exec'd as the
//! CNI spec says.

use plexus::devices::KubeletDevices;
use plexus::kube::{HttpKube, ThreadSleeper};
use plexus::routes::NetlinkRoutes;
use plexus::{PlexusPlugin, ABOUT};
use plexus_cni::exec::{Builtin, BuiltinExec, ProcessExec};
use plexus_cni::version::SUPPORTED;
use plexus_host_device::net::KernelOpener;
use plexus_host_device::HostDevice;

fn main() {
    plexus_buildinfo::exit_if_version_flag("plexus");
    let (imds, pod_links) = (plexus_vnic::OciConnector, plexus_vnic::KernelPodLinks);
    let vnic = plexus_vnic::VnicIpam::new(&imds, &pod_links);
    let ipam = || {
        BuiltinExec::next_to_current_exe(ProcessExec)
            .with(Builtin {
                plugin_type: "static",
                plugin: &plexus_static::StaticPlugin,
                about: plexus_static::ABOUT,
                supported: SUPPORTED,
            })
            .with(Builtin {
                plugin_type: "vnic",
                plugin: &vnic,
                about: plexus_vnic::ABOUT,
                supported: SUPPORTED,
            })
    };
    // host-device's own IPAM call goes through the same test.
    let host_device = HostDevice {
        opener: KernelOpener,
        exec: ipam(),
        sys_root: "/".into(),
    };
    let exec = ipam().with(Builtin {
        plugin_type: "host-device",
        plugin: &host_device,
        about: plexus_host_device::ABOUT,
        supported: SUPPORTED,
    });
    let plugin = PlexusPlugin {
        exec: &exec,
        kube: &HttpKube,
        sleeper: &ThreadSleeper,
        devices: &KubeletDevices,
        routes: &NetlinkRoutes,
    };
    std::process::exit(plexus_cni::skel::run(&plugin, ABOUT, SUPPORTED));
}
