//! The OCI control-plane client Plexus needs for its operator: request
//! signing (Signature Version 1, [`sign`]), credentials (instance principals
//! and API-key config, [`auth`]), and the few Core Services calls on VNIC
//! attachments and instances ([`client`], [`model`]) with retries, a rate
//! limit and pagination. Signing and the wire types are pure and shared with
//! the fake OCI API in the test kit; only [`client`] and the credential
//! fetchers do I/O.

pub mod keys;
pub mod sign;

pub use keys::{Credentials, KeyError};
pub use sign::{SignError, SignedHeaders};
