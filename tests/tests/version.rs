//! Every binary we build reports the same workspace version and the commit
//! it was built from: `<name> <version> (<commit>)` on stdout for
//! `--version`, exit 0, nothing on stderr. The CNI plugins take the flag as
//! argv[1] (a runtime never passes arguments), the others through clap.
// Test-only: a failed expectation panics.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

use plexus_testkit::net::bin_path;
use rstest::rstest;

/// The commit git reports for this checkout, when there is one.
fn git_head() -> Option<String> {
    let out = Command::new("git")
        .args(["-c", "safe.directory=*", "-C"])
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")))
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

#[rstest]
#[case::plexus("plexus")]
#[case::host_device("host-device")]
#[case::static_ipam("static")]
#[case::vnic("vnic")]
#[case::agent("plexus-agent")]
#[case::fake_imds("fake-imds")]
#[case::fake_kube_apiserver("fake-kube-apiserver")]
#[case::bench("plexus-bench")]
#[case::bench_meta("plexus-bench-meta")]
#[case::bench_move("plexus-bench-move")]
fn version_flag_prints_name_version_commit(#[case] name: &str) {
    let out = Command::new(bin_path(name))
        .arg("--version")
        .env_clear()
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "{name} --version: {:?}", out.status);
    assert_eq!(String::from_utf8_lossy(&out.stderr), "", "{name}: stderr");
    let want = format!(
        "{name} {} ({})\n",
        plexus_buildinfo::VERSION,
        plexus_buildinfo::COMMIT
    );
    assert_eq!(stdout, want);
    // The version is the workspace's one, set in the root Cargo.toml.
    assert_eq!(plexus_buildinfo::VERSION, env!("CARGO_PKG_VERSION"));
    if let Some(head) = git_head() {
        assert_eq!(plexus_buildinfo::COMMIT, head, "built from HEAD");
    }
}

/// The flag is an addition: without it the plugins still answer CNI VERSION.
#[rstest]
#[case::plexus("plexus")]
#[case::host_device("host-device")]
#[case::static_ipam("static")]
#[case::vnic("vnic")]
fn cni_version_unchanged_by_the_flag(#[case] name: &str) {
    let out = Command::new(bin_path(name))
        .env_clear()
        .env("CNI_COMMAND", "VERSION")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{name} VERSION: {:?}", out.status);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["supportedVersions"].as_array().unwrap().len() > 1, "{v}");
}
