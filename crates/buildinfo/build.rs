//! Bakes the git commit into the crate as `PLEXUS_COMMIT`, a compile-time
//! constant: a CNI plugin must not run git (or read files) to answer
//! `--version`, and VERSION must stay as fast as it is.
//!
//! Source, first that answers: `git rev-parse` of the checkout holding this
//! crate; the `PLEXUS_COMMIT` environment variable (image builds without
//! `.git`); `unknown`. Re-runs only when HEAD moves (the HEAD file, the
//! branch's ref file, packed-refs) or `PLEXUS_COMMIT` changes, so an
//! ordinary edit never rebuilds the binaries for this.

use std::path::{Path, PathBuf};
use std::process::Command;

fn git(dir: &Path, args: &[&str]) -> Option<String> {
    // safe.directory: under sudo, root builds a checkout another user owns;
    // git would otherwise refuse to read it and the commit would be lost.
    let out = Command::new("git")
        .arg("-c")
        .arg("safe.directory=*")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .ok()?;
    let text = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && !text.is_empty()).then_some(text)
}

/// The files whose change means a new HEAD commit.
fn head_files(dir: &Path) -> Vec<PathBuf> {
    let abs =
        |what: &str| git(dir, &["rev-parse", "--path-format=absolute", what]).map(PathBuf::from);
    let mut files = Vec::new();
    if let Some(git_dir) = abs("--git-dir") {
        files.push(git_dir.join("HEAD"));
    }
    if let Some(common) = abs("--git-common-dir") {
        files.push(common.join("packed-refs"));
        if let Some(branch) = git(dir, &["symbolic-ref", "-q", "HEAD"]) {
            files.push(common.join(branch));
        }
    }
    // A missing file would make cargo re-run this script on every build.
    files.retain(|f| f.exists());
    files
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=PLEXUS_COMMIT");
    let dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    for f in head_files(&dir) {
        println!("cargo:rerun-if-changed={}", f.display());
    }
    let commit = git(&dir, &["rev-parse", "--short=12", "HEAD"])
        .or_else(|| {
            std::env::var("PLEXUS_COMMIT")
                .ok()
                .filter(|c| !c.is_empty())
        })
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=PLEXUS_COMMIT={commit}");
}
