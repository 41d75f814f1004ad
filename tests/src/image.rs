//! The Plexus image as the tests use it: `scripts/build-image.sh --profile
//! image-test`, i.e. the shipped build path (static-pie binaries packed by
//! `plexus-image`) with a dev-speed cargo profile instead of release's LTO.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

/// The cargo profile test images are built with.
pub const TEST_PROFILE: &str = "image-test";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Builds the image archive at `out` (cargo is a no-op when the binaries are
/// current). `source_date_epoch` overrides the commit time when given.
pub fn build(out: &Path, source_date_epoch: Option<u64>) -> Result<()> {
    let mut cmd = Command::new(repo_root().join("scripts/build-image.sh"));
    cmd.args(["--profile", TEST_PROFILE, "--out"])
        .arg(out)
        .current_dir(repo_root())
        .stdin(Stdio::null());
    // Build scripts (ring's, through cc) watch variables the test runner
    // sets, such as CARGO_MANIFEST_DIR: passing them on would make cargo
    // rebuild what a shell-run build-image.sh just built, and back.
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy();
        if (k.starts_with("CARGO") && k != "CARGO_HOME") || k.starts_with("NEXTEST") {
            cmd.env_remove(k.as_ref());
        }
    }
    if let Some(t) = source_date_epoch {
        cmd.env("SOURCE_DATE_EPOCH", t.to_string());
    }
    let res = cmd.output().context("running scripts/build-image.sh")?;
    if !res.status.success() {
        bail!(
            "scripts/build-image.sh failed ({}): {}",
            res.status,
            String::from_utf8_lossy(&res.stderr)
        );
    }
    Ok(())
}
