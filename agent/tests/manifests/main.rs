//! Every YAML in `deploy/` and `examples/` parses; the RBAC rules are exactly
//! the four the meta plugin needs; NAD configs are valid JSON of the expected
//! types; pods reference NADs that exist; the agent run with the DaemonSet's
//! env and mounts finds the node's devices.

#![allow(clippy::unwrap_used, clippy::too_many_lines)]

mod support;

mod daemonset;
mod examples;
mod rbac_crd;
mod uninstall;
