//! `plexus-image`: builds the Plexus container image (what
//! `deploy/plexus.yaml` runs) as an OCI image archive, without a registry,
//! a base image or a container engine.
//!
//! The image is one layer holding our static-pie binaries in
//! `/usr/local/bin` and nothing else: no shell, no libc (the binaries carry
//! their own), so every probe and command in the manifest execs one of them.
//! The archive is an OCI image layout tar (`oci-layout`, `index.json`,
//! `blobs/sha256/…`) that also carries Docker's `manifest.json`, so
//! `ctr images import`, `skopeo copy oci-archive:…`, `podman load` and
//! `docker load` all accept the same file.
//!
//! Reproducible by construction: entries sorted, mode from a fixed table,
//! uid/gid 0 without names, every timestamp = `SOURCE_DATE_EPOCH` (the
//! commit time), gzip without name or time, JSON in a fixed key order. Two
//! builds from the same commit give the same image digest.
//!
//! Why Rust and not a Python script like the test pause image: the binary
//! list below is a constant the agent's tests import (every binary the
//! agent installs must be in the image), and the ELF check that refuses a
//! dynamically linked binary is shared with the image tests.

pub mod elf;
pub mod inspect;
pub mod oci;

/// Where the image is published; the tag is the workspace version.
pub const REPOSITORY: &str = "ghcr.io/plexus/plexus";

/// The image's version: the workspace `version` in Cargo.toml, the one
/// place it is set (`deploy/plexus.yaml` must name the same tag; a test
/// checks).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Every binary the image ships, installed under [`BIN_DIR`]. The agent
/// copies the CNI plugins among them onto the node; adding a binary to the
/// image is adding its name here.
pub const BINARIES: &[&str] = &["plexus-agent", "plexus", "host-device", "static", "vnic"];

/// Directory of [`BINARIES`] in the image (the agent's `--source-bin-dir`).
pub const BIN_DIR: &str = "/usr/local/bin";

/// What the container runs when the manifest names no command.
pub const ENTRYPOINT: &str = "/usr/local/bin/plexus-agent";
/// Default arguments of [`ENTRYPOINT`].
pub const CMD: &[&str] = &["run"];

/// `REPOSITORY:VERSION`, the reference the archive is named by.
pub fn image_ref() -> String {
    format!("{REPOSITORY}:{VERSION}")
}
