//! Errors of the metadata client and of the node state file.

use std::path::PathBuf;

/// Why a metadata request failed. Every variant names the URL and how many
/// attempts were made, so a CNI error or an agent log line is actionable.
#[derive(Debug, thiserror::Error)]
pub enum ImdsError {
    /// The service answered with a non-2xx status on the last attempt.
    #[error("metadata {url}: HTTP {status} after {attempts} attempt(s): {excerpt}")]
    Status {
        /// Requested URL.
        url: String,
        /// HTTP status of the last answer.
        status: u16,
        /// Short plain-text excerpt of the body (HTML tags stripped).
        excerpt: String,
        /// Attempts made.
        attempts: u32,
    },
    /// No HTTP answer at all (refused, timeout, reset).
    #[error("metadata {url}: unreachable after {attempts} attempt(s): {reason}")]
    Transport {
        /// Requested URL.
        url: String,
        /// Transport error of the last attempt.
        reason: String,
        /// Attempts made.
        attempts: u32,
    },
    /// A 2xx answer whose body is not the expected JSON.
    #[error("metadata {url}: invalid JSON ({source}); body starts with: {excerpt}")]
    Decode {
        /// Requested URL.
        url: String,
        /// Short excerpt of the body.
        excerpt: String,
        /// Parser error.
        #[source]
        source: serde_json::Error,
    },
    /// The answer parsed but describes an impossible VNIC (an IPv6 address
    /// outside its subnet, a gateway that cannot be one): nothing of it is used.
    #[error("metadata: VNIC {vnic_id}: {reason}")]
    InvalidVnic {
        /// OCID of the VNIC.
        vnic_id: String,
        /// What is wrong, naming the field.
        reason: String,
    },
    /// Reading the 2xx body failed midway.
    #[error("metadata {url}: reading body: {source}")]
    Body {
        /// Requested URL.
        url: String,
        /// I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// Errors reading or writing the node state file.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Filesystem error on `path`.
    #[error("state file {path}: {source}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid JSON of the expected schema.
    #[error("state file {path}: invalid content: {source}")]
    Parse {
        /// The state file.
        path: PathBuf,
        /// Parser error.
        #[source]
        source: serde_json::Error,
    },
    /// Written by a newer (or unknown) agent; refusing to guess its meaning.
    #[error(
        "state file {path}: unsupported schema version {found} (this build reads {supported})"
    )]
    Version {
        /// The state file.
        path: PathBuf,
        /// Version found in the file.
        found: u32,
        /// Version this build understands.
        supported: u32,
    },
}
