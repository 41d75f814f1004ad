//! The whole OCI loop without a console step, as `scripts/demo-oci.sh` runs
//! it: a VnicPool -> plexus-operator (instance principals, signed requests)
//! -> the fake OCI API attaches -> the node's fake IMDS lists the VNIC ->
//! the running plexus-agent configures it -> host-device + vnic IPAM give
//! the pod the VF with the VNIC's IP; ping between pods. Everything lives
//! in namespaces the script creates and removes (its EXIT trap cleans up on
//! failure too). Needs the workspace binaries built (`scripts/test.sh`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

use plexus_testkit::net::{bin_dir, require_root};

#[test]
fn vnic_pool_to_pod_without_a_console_step() {
    require_root();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let out = Command::new(repo.join("scripts/demo-oci.sh"))
        .env("PLEXUS_DEMO_BIN_DIR", bin_dir())
        .env("RUST_LOG", "info")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains(" passed, 0 failed"), "{stdout}");
    assert!(stdout.contains("pod2: net1 is the VF"), "{stdout}");
}
