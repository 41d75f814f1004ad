//! Handler tests: the plugin against the in-memory kernel (`testing::FakeNet`),
//! a scripted IPAM (`plexus_cni::testing::FakeExec`) and sysfs fixture trees.
//! No root needed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

mod add_del;
mod check_gc;
mod devices;
mod errors;
mod routes;
