//! The OCI control-plane client Plexus needs for its operator: request
//! signing (Signature Version 1, [`sign`]), credentials (instance principals
//! and API-key config, [`auth`], [`config`]), and the few Core Services calls
//! on VNIC attachments and instances ([`client`], [`model`]) with retries, a
//! rate limit and pagination. Signing and the wire types are pure and shared
//! with the fake OCI API in the test kit; only [`http`], [`client`] and the
//! credential fetchers do I/O.

pub mod auth;
pub mod client;
pub mod config;
pub mod http;
pub mod keys;
pub mod model;
pub mod sign;

pub use auth::{AuthError, CredentialSource, InstancePrincipal, PrincipalConfig};
pub use client::{Compute, OciClient, OciError, Policy};
pub use config::ApiKeySource;
pub use keys::{Credentials, KeyError};
pub use sign::{SignError, SignedHeaders};
