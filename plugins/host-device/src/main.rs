//! The `host-device` CNI plugin binary.

use plexus_cni::exec::ProcessExec;
use plexus_host_device::net::KernelOpener;
use plexus_host_device::HostDevice;

fn main() {
    let plugin = HostDevice {
        opener: KernelOpener,
        exec: ProcessExec,
        sys_root: "/".into(),
    };
    std::process::exit(plexus_cni::skel::run(
        &plugin,
        plexus_host_device::ABOUT,
        plexus_cni::version::SUPPORTED,
    ));
}
