//! Cloud instance metadata for the node agent and the `vnic` IPAM plugin.
//!
//! Seam: [`MetadataSource`] (`vnics()`, `instance()`), so other clouds can
//! follow. The OCI implementation is [`OciImds`], a blocking IMDS v2 client
//! (`Authorization: Bearer Oracle`, retries with backoff and jitter on
//! 404/429/5xx and transport errors, bounded timeouts, HTML-safe errors) —
//! see OCI "Getting Instance Metadata". [`node_state`] is the state file the
//! agent writes and the plugin reads; it lives here so the plugin stays lean.

pub mod client;
pub mod error;
pub mod node_state;
pub mod testing;
pub mod types;

pub use client::{
    ClientConfig, NoopObserver, OciImds, RequestObserver, RequestOutcome, RetryPolicy,
    DEFAULT_BASE_URL,
};
pub use error::{ImdsError, StateError};
pub use types::{is_bare_metal, normalize_mac, primary_vnic, Instance, Vnic};

/// Source of this node's cloud metadata.
pub trait MetadataSource {
    /// VNICs attached to this instance, primary first (see [`primary_vnic`]).
    fn vnics(&self) -> Result<Vec<Vnic>, ImdsError>;
    /// The instance document.
    fn instance(&self) -> Result<Instance, ImdsError>;
}
