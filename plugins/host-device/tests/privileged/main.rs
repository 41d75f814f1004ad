//! Root-only contract tests: the `host-device` binary with explicit env and
//! stdin, our `static` IPAM on `CNI_PATH`, a veth end standing in for the VF.
//! Each test makes a "host" namespace (where the binary runs, through
//! `ip netns exec`) and a pod namespace; both and their links are removed on
//! drop, whatever happens. Run after `cargo build --workspace --bins`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

mod add_del;
mod errors;
mod gc_status;
mod network;
