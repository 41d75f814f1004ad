//! `vnic` IPAM plugin binary.

fn main() {
    plexus_buildinfo::exit_if_version_flag("vnic");
    let imds = plexus_vnic::OciConnector;
    let pod = plexus_vnic::KernelPodLinks;
    let plugin = plexus_vnic::VnicIpam::new(&imds, &pod);
    std::process::exit(plexus_cni::skel::run(
        &plugin,
        plexus_vnic::ABOUT,
        plexus_cni::version::SUPPORTED,
    ));
}
