//! Typed errors: every kernel refusal names the operation, its target
//! (interface name or index, address, route) and the errno.

use std::io;

/// What went wrong, with the operation and target it happened to.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// ENODEV / ENOENT / ESRCH / EADDRNOTAVAIL: the object is not there.
    #[error("{op} {target}: not found (errno {errno})")]
    NotFound {
        op: &'static str,
        target: String,
        errno: i32,
    },
    /// EEXIST: a link name, address or route already exists.
    #[error("{op} {target}: already exists")]
    Exists { op: &'static str, target: String },
    /// EBUSY: e.g. a device that is in use cannot be changed.
    #[error("{op} {target}: device or resource busy")]
    Busy { op: &'static str, target: String },
    /// Any other errno from the kernel.
    #[error("{op} {target}: {source}")]
    Kernel {
        op: &'static str,
        target: String,
        #[source]
        source: io::Error,
    },
    /// The netlink socket itself failed (open, send, receive).
    #[error("netlink socket: {0}")]
    Socket(#[source] io::Error),
    /// A reply could not be decoded.
    #[error("netlink decode: {0}")]
    Decode(String),
    /// Entering the namespace to open the socket failed.
    #[error(transparent)]
    Netns(#[from] plexus_netns::Error),
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// Maps a kernel errno (positive) to a variant.
    pub(crate) fn from_errno(errno: i32, op: &'static str, target: String) -> Self {
        match errno {
            libc::ENODEV | libc::ENOENT | libc::ESRCH | libc::EADDRNOTAVAIL => {
                Error::NotFound { op, target, errno }
            }
            libc::EEXIST => Error::Exists { op, target },
            libc::EBUSY => Error::Busy { op, target },
            _ => Error::Kernel {
                op,
                target,
                source: io::Error::from_raw_os_error(errno),
            },
        }
    }

    /// The errno behind this error, if it came from the kernel.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Error::NotFound { errno, .. } => Some(*errno),
            Error::Exists { .. } => Some(libc::EEXIST),
            Error::Busy { .. } => Some(libc::EBUSY),
            Error::Kernel { source, .. } | Error::Socket(source) => source.raw_os_error(),
            Error::Decode(_) | Error::Netns(_) => None,
        }
    }

    /// Whether the object of the operation does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::NotFound { .. })
    }

    /// Whether the operation clashed with an existing object.
    pub fn is_exists(&self) -> bool {
        matches!(self, Error::Exists { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_mapping() {
        let t = || "link \"net1\"".to_string();
        assert!(Error::from_errno(libc::ENODEV, "get", t()).is_not_found());
        assert!(Error::from_errno(libc::ESRCH, "del route", t()).is_not_found());
        assert!(Error::from_errno(libc::EEXIST, "rename", t()).is_exists());
        let e = Error::from_errno(libc::EBUSY, "set mtu", t());
        assert_eq!(e.errno(), Some(libc::EBUSY));
        let e = Error::from_errno(libc::EPERM, "set up", t());
        assert_eq!(e.errno(), Some(libc::EPERM));
        assert!(e.to_string().starts_with("set up link \"net1\": "), "{e}");
    }
}
