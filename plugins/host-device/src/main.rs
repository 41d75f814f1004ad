//! The `host-device` CNI plugin binary.

use plexus_cni::exec::{Builtin, BuiltinExec, ProcessExec};
use plexus_host_device::net::KernelOpener;
use plexus_host_device::HostDevice;

fn main() {
    plexus_buildinfo::exit_if_version_flag("host-device");
    // Our `static` IPAM, when it is the one installed next to this binary,
    // runs in-process: it saves a process start-up on every ADD and DEL.
    let exec = BuiltinExec::next_to_current_exe(ProcessExec).with(Builtin {
        plugin_type: "static",
        plugin: &plexus_static::StaticPlugin,
        about: plexus_static::ABOUT,
        supported: plexus_cni::version::SUPPORTED,
    });
    let plugin = HostDevice {
        opener: KernelOpener,
        exec,
        sys_root: "/".into(),
    };
    std::process::exit(plexus_cni::skel::run(
        &plugin,
        plexus_host_device::ABOUT,
        plexus_cni::version::SUPPORTED,
    ));
}
