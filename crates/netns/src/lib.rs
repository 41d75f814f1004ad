//! Network namespace handles held by an owned fd, and [`run_in`], the one way
//! Plexus enters a namespace.
//!
//! `setns(CLONE_NEWNET)` changes the namespace of the *calling thread* only.
//! Code that enters a namespace must therefore stay on that thread until it
//! leaves again: a closure, never an `.await` (a runtime may resume the task
//! on another thread, leaving the old thread stranded in the pod namespace).
//! Better still, open a netlink socket inside the namespace once and use it
//! from anywhere: a socket stays bound to the namespace it was created in.
//!
//! This is the only crate allowed `unsafe`: one `ioctl(NS_GET_NSTYPE)` call
//! that `nix` does not wrap, and [`process::die_with_parent`] (a `pre_exec`
//! hook).
#![allow(unsafe_code)]

pub mod process;

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::sched::{setns, CloneFlags};
use nix::sys::statfs::{fstatfs, NSFS_MAGIC};

/// `_IO(0xb7, 0x3)` from `linux/nsfs.h`: asks an nsfs fd for its type.
const NS_GET_NSTYPE: libc::c_ulong = 0xb703;

/// Errors from opening or entering a namespace; each names the path involved.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The path does not exist (a namespace that was already destroyed).
    #[error("network namespace {path}: not found")]
    NotFound { path: PathBuf },
    /// The path exists but is not a network namespace file.
    #[error("{path} is not a network namespace")]
    NotNetns { path: PathBuf },
    /// Opening or inspecting the path failed.
    #[error("network namespace {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// `setns(2)` refused to enter (or to come back).
    #[error("setns into {path}: {source}")]
    Setns {
        path: PathBuf,
        #[source]
        source: nix::Error,
    },
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, Error>;

/// An open network namespace. Holding the fd keeps the namespace alive even
/// if its bind mount is removed, so an operation never races its deletion.
#[derive(Debug)]
pub struct NetNs {
    file: File,
    path: PathBuf,
}

impl NetNs {
    /// Opens the namespace at `path` (a bind mount such as
    /// `/var/run/netns/x` or `/proc/<pid>/ns/net`) and checks it is one.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        // O_NONBLOCK: a FIFO at `path` opens at once (and is then refused
        // as not nsfs) instead of blocking until a writer appears.
        let file = match std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(&path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::NotFound { path })
            }
            Err(source) => return Err(Error::Open { path, source }),
        };
        let fs = fstatfs(&file).map_err(|e| Error::Open {
            path: path.clone(),
            source: e.into(),
        })?;
        // /proc/<pid>/ns/net opens as nsfs too; a plain file or an unmounted
        // bind-mount target (left behind by a crashed runtime) does not.
        if fs.filesystem_type() != NSFS_MAGIC || ns_type(&file) != Some(libc::CLONE_NEWNET) {
            return Err(Error::NotNetns { path });
        }
        Ok(Self { file, path })
    }

    /// The namespace of the calling thread.
    pub fn current() -> Result<Self> {
        // thread-self, not self: after setns the two can differ.
        Self::open("/proc/thread-self/ns/net")
    }

    /// The namespace of process `pid`.
    pub fn from_pid(pid: u32) -> Result<Self> {
        Self::open(format!("/proc/{pid}/ns/net"))
    }

    /// The path this handle was opened from (for messages).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Raw fd, e.g. for `IFLA_NET_NS_FD`. Valid while `self` lives.
    pub fn raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }

    /// Namespace identity: the (device, inode) pair of the nsfs file.
    pub fn id(&self) -> Result<(u64, u64)> {
        let m = self.file.metadata().map_err(|source| Error::Open {
            path: self.path.clone(),
            source,
        })?;
        Ok((m.dev(), m.ino()))
    }

    /// Whether both handles refer to the same namespace.
    pub fn same_as(&self, other: &NetNs) -> Result<bool> {
        Ok(self.id()? == other.id()?)
    }
}

impl AsFd for NetNs {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

/// The namespace type of an nsfs fd (`CLONE_NEW*`), if the kernel tells.
fn ns_type(file: &File) -> Option<libc::c_int> {
    // SAFETY: NS_GET_NSTYPE takes no argument and only reads the fd, which
    // `file` keeps open for the duration of the call.
    let ty = unsafe { libc::ioctl(file.as_raw_fd(), NS_GET_NSTYPE) };
    (ty >= 0).then_some(ty)
}

/// Whether `path` still names a live network namespace. A vanished or
/// unmounted namespace (the runtime already tore the pod down) gives `false`.
pub fn is_netns(path: impl AsRef<Path>) -> bool {
    NetNs::open(path).is_ok()
}

/// Runs `f` with the calling thread inside `ns`, then returns to the thread's
/// original namespace, also when `f` panics (the guard restores during
/// unwinding). If the namespace is already the current one, `f` runs directly.
pub fn run_in<T>(ns: &NetNs, f: impl FnOnce() -> T) -> Result<T> {
    let home = NetNs::current()?;
    if home.same_as(ns)? {
        return Ok(f());
    }
    setns(ns, CloneFlags::CLONE_NEWNET).map_err(|source| Error::Setns {
        path: ns.path.clone(),
        source,
    })?;
    let mut guard = Restore { home, armed: true };
    let out = f();
    guard.armed = false;
    setns(&guard.home, CloneFlags::CLONE_NEWNET).map_err(|source| Error::Setns {
        path: guard.home.path.clone(),
        source,
    })?;
    Ok(out)
}

/// Returns the thread home when a closure unwinds.
struct Restore {
    home: NetNs,
    armed: bool,
}

impl Drop for Restore {
    fn drop(&mut self) {
        if self.armed && setns(&self.home, CloneFlags::CLONE_NEWNET).is_err() {
            // A thread left in a foreign namespace would silently configure
            // the wrong pod later; dying is the only safe outcome.
            std::process::abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_path_is_not_found() {
        let err = NetNs::open("/nonexistent/plexus/netns").unwrap_err();
        assert!(matches!(err, Error::NotFound { .. }), "{err}");
        assert!(!is_netns("/nonexistent/plexus/netns"));
    }

    #[test]
    fn plain_file_is_not_a_netns() {
        let f = tempfile::NamedTempFile::new().unwrap();
        let err = NetNs::open(f.path()).unwrap_err();
        assert!(matches!(err, Error::NotNetns { .. }), "{err}");
        assert!(err.to_string().contains(&f.path().display().to_string()));
    }

    #[test]
    fn current_is_same_as_self_pid() {
        let a = NetNs::current().unwrap();
        let b = NetNs::from_pid(std::process::id()).unwrap();
        assert!(a.same_as(&b).unwrap());
        // Entering the current namespace is a no-op that still runs f.
        assert_eq!(run_in(&a, || 7).unwrap(), 7);
    }
}
