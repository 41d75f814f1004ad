//! Which filesystem root the agent reads sysfs under.
//!
//! One convention for the whole project (`plexus_sysfs::pci::sysfs_of_root`):
//! a *root* holds `sys/`. `--host-root` (`PLEXUS_HOST_ROOT`) is that root:
//! `/` when the agent runs on the host, `/host` in the DaemonSet, which
//! mounts the host's `/sys` read-only at `/host/sys` (a container's own
//! `/sys` shows the container's network namespace, not the host's).
//!
//! `--sysfs-root` (`PLEXUS_SYSFS_ROOT`) is the deprecated older flag. It
//! meant the sysfs mount itself (default `/sys`, the DaemonSet's
//! `/host/sys`) while discovery treated it as a root, so it found no device.
//! It is still accepted when unambiguous: its last component must be `sys`
//! and the root is its parent (`/host/sys` -> `/host`).

use std::path::{Path, PathBuf};

use plexus_sysfs::pci::root_of_sysfs_mount;

/// `--host-root` default: the agent runs on the host.
pub const DEFAULT_HOST_ROOT: &str = "/";

/// Flag combinations that name no single root.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostRootError {
    /// `--sysfs-root` not ending in `sys`.
    #[error(
        "--sysfs-root {0:?} (deprecated) must be a sysfs mount point named `sys`, \
         e.g. /host/sys; use --host-root (PLEXUS_HOST_ROOT) for the directory holding sys/"
    )]
    NotASysfsMount(PathBuf),
    /// Both flags, naming different roots.
    #[error(
        "--host-root {host_root:?} and the deprecated --sysfs-root {sysfs_root:?} disagree \
         (sysfs is read at <host-root>/sys); pass only --host-root"
    )]
    Conflict {
        host_root: PathBuf,
        sysfs_root: PathBuf,
    },
}

/// Pure: the root from `--host-root` and the deprecated `--sysfs-root`
/// (each `None` when neither the flag nor its environment variable is set).
pub fn resolve(
    host_root: Option<&Path>,
    sysfs_root: Option<&Path>,
) -> Result<PathBuf, HostRootError> {
    let derived = sysfs_root
        .map(|s| root_of_sysfs_mount(s).ok_or_else(|| HostRootError::NotASysfsMount(s.into())))
        .transpose()?;
    match (host_root, derived) {
        (Some(h), Some(d)) if h != d => Err(HostRootError::Conflict {
            host_root: h.into(),
            sysfs_root: sysfs_root.map(PathBuf::from).unwrap_or_default(),
        }),
        (Some(h), _) => Ok(h.into()),
        (None, Some(d)) => Ok(d),
        (None, None) => Ok(PathBuf::from(DEFAULT_HOST_ROOT)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Option<&Path> {
        Some(Path::new(s))
    }

    #[test]
    fn default_is_the_filesystem_root() {
        assert_eq!(resolve(None, None).unwrap(), Path::new("/"));
    }

    #[test]
    fn host_root_wins_and_sysfs_root_derives() {
        assert_eq!(resolve(p("/host"), None).unwrap(), Path::new("/host"));
        assert_eq!(resolve(None, p("/host/sys")).unwrap(), Path::new("/host"));
        assert_eq!(resolve(None, p("/sys")).unwrap(), Path::new("/"));
        assert_eq!(
            resolve(p("/host"), p("/host/sys")).unwrap(),
            Path::new("/host")
        );
    }

    #[test]
    fn ambiguous_or_conflicting_flags_are_errors() {
        let e = resolve(None, p("/tmp/fixture")).unwrap_err();
        assert_eq!(e, HostRootError::NotASysfsMount("/tmp/fixture".into()));
        assert!(e.to_string().contains("--host-root"), "{e}");
        let e = resolve(p("/host"), p("/sys")).unwrap_err();
        assert!(matches!(e, HostRootError::Conflict { .. }), "{e}");
    }
}
