//! The CNI specification for Plexus plugins: network configuration and
//! runtimeConfig types, `CNI_ARGS`, results for every spec version (0.1.0 to
//! 1.1.0) with conversion both ways, error codes, VERSION negotiation, the
//! plugin skeleton (env + stdin → command → stdout), delegate execution, and
//! the atomic file write and RFC 3339 timestamps every plugin and the agent
//! share ([`fsutil`], [`timefmt`]).
//!
//! Everything is pure data and functions except [`skel::run`] (process
//! env/stdio), [`exec::ProcessExec`] (spawns plugins) and [`fsutil`] (writes
//! files); handlers take an
//! [`exec::Exec`] so tests use [`testing::FakeExec`].
//! Spec: containernetworking/cni SPEC.md 1.1.0 and CONVENTIONS.md.

pub mod args;
pub mod config;
pub mod error;
pub mod exec;
pub mod fsutil;
mod nullable;
pub mod result;
pub mod retry;
pub mod skel;
pub mod testing;
pub mod timefmt;
pub mod version;

pub use config::{NetConf, NetConfList, RuntimeConfig};
pub use error::CniError;
pub use result::CniResult;
pub use skel::{CmdArgs, Command, Plugin};
