//! This node's cloud metadata, for the node agent and the `vnic` IPAM plugin.
//!
//! Consumers see our own types ([`NodeNic`], [`node`]) through the
//! [`MetadataSource`] seam; a cloud is a provider behind it, chosen in one
//! place, [`connect`]. The OCI provider is [`OciImds`], a blocking IMDS v2
//! client (`Authorization: Bearer Oracle`, retries with backoff and jitter on
//! 404/429/5xx and transport errors, bounded timeouts, HTML-safe errors) —
//! see OCI "Getting Instance Metadata"; its wire types are [`types`].
//! [`node_state`] is the state file the agent writes and the plugin reads; it
//! lives here so the plugin stays lean.

pub mod client;
pub mod error;
pub mod node;
pub mod node_state;
pub mod testing;
pub mod types;

use std::sync::Arc;

pub use client::{
    ClientConfig, NoopObserver, OciImds, RequestObserver, RequestOutcome, RetryPolicy,
    DEFAULT_BASE_URL,
};
pub use error::{ImdsError, StateError};
pub use node::{NicAddress, NodeNic};
pub use types::{is_bare_metal, normalize_mac, primary_vnic, Instance, Vnic};

/// Source of this node's NICs, whatever the cloud.
pub trait MetadataSource {
    /// NICs attached to this node, primary first.
    fn nics(&self) -> Result<Vec<NodeNic>, ImdsError>;
}

/// The metadata source of this node: the one place a provider is chosen.
/// `observer` sees every HTTP attempt (the agent's metrics).
pub fn connect(
    config: ClientConfig,
    observer: Arc<dyn RequestObserver>,
) -> Box<dyn MetadataSource> {
    Box::new(OciImds::with_observer(config, observer))
}
