//! The `static` CNI IPAM plugin binary.

fn main() {
    plexus_buildinfo::exit_if_version_flag("static");
    std::process::exit(plexus_cni::skel::run(
        &plexus_static::StaticPlugin,
        plexus_static::ABOUT,
        plexus_cni::version::SUPPORTED,
    ));
}
