//! The plugin's errors, mapped to CNI error codes in one place
//! ([`From<Error> for CniError`]).

use std::path::PathBuf;

use plexus_cni::CniError;
use plexus_sysfs::pci::PciError;

/// Everything that can fail in host-device; variants carry the device,
/// field or path involved.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A configuration key is invalid (code 7); the message names it.
    #[error("invalid config field {field:?}: {msg}")]
    Config { field: &'static str, msg: String },
    /// An error already in CNI form (parsing, IPAM delegate).
    #[error("{0}")]
    Cni(CniError),
    /// The selected device does not exist on the host.
    #[error("{selector}: device not found on the host")]
    DeviceNotFound { selector: String },
    /// Another attachment holds the device.
    #[error("device {device} is in use by container {container} ({ifname})")]
    InUse {
        device: String,
        container: String,
        ifname: String,
    },
    /// The target interface name is taken in the pod.
    #[error("interface {ifname:?} already exists in the pod network namespace")]
    IfnameTaken { ifname: String },
    /// The pod namespace cannot be opened.
    #[error("failed to open netns {path:?}: {msg}")]
    Netns { path: String, msg: String },
    /// A netlink operation failed; `during` says which step.
    #[error("{during}: {source}")]
    Netlink {
        during: String,
        #[source]
        source: plexus_netlink::Error,
    },
    /// A configured route clashes with a different one already in the pod.
    #[error("add route {route}: the pod already has a different route for it")]
    RouteConflict { route: String },
    /// sysfs lookup failed.
    #[error(transparent)]
    Pci(#[from] PciError),
    /// IPAM gave no address to configure.
    #[error("IPAM plugin returned missing IP config")]
    NoIpConfig,
    /// CHECK found the pod differs from the previous result.
    #[error("{0}")]
    Check(String),
    /// State file or lock I/O failed.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// A config error for `field`.
    pub fn config(field: &'static str, msg: impl std::fmt::Display) -> Self {
        Error::Config {
            field,
            msg: msg.to_string(),
        }
    }

    /// Wraps a netlink error with the step it happened in.
    pub fn netlink(during: impl Into<String>) -> impl FnOnce(plexus_netlink::Error) -> Self {
        let during = during.into();
        move |source| Error::Netlink { during, source }
    }

    /// Wraps an I/O error with its path.
    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Error::Io { path, source }
    }
}

impl From<CniError> for Error {
    fn from(e: CniError) -> Self {
        Error::Cni(e)
    }
}

impl From<Error> for CniError {
    fn from(e: Error) -> Self {
        match e {
            Error::Cni(c) => c,
            Error::Config { .. } => CniError::invalid_config(e.to_string()),
            Error::Io { .. } => CniError::io(e.to_string()),
            Error::Netlink { ref source, .. } if source.errno() == Some(libc::EBUSY) => {
                CniError::try_again(e.to_string())
            }
            _ => CniError::generic(e.to_string()),
        }
    }
}
