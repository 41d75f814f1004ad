//! The node's own file system view, opt-in ([`NodeFs`],
//! [`super::RuntimeNode::set_node_fs`]): containerd, and so runc, the shims
//! and every CNI plugin containerd execs, run in a mount namespace of the
//! node where the test's node directories are bind-mounted on the real node
//! paths (`/opt/cni/bin`, `/etc/cni/net.d`, `/var/lib/cni`, `/run/plexus`,
//! `/sys`, ...). Configs that name absolute node paths (what the agent
//! writes) then resolve for the runtime's CNI calls exactly as on a node,
//! while the test's own process keeps the machine's view.
//!
//! Nothing reaches the machine's mount table or file system: the namespace
//! is created with slave propagation (mounts made in it never propagate
//! out); a node path missing on the machine gets its mount point inside an
//! overlay of its nearest existing ancestor whose upper dir is in the work
//! dir (so `mkdir /run/plexus` writes to the work dir, not to `/run`). The
//! namespace is pinned by a bind mount of its nsfs file in the work dir;
//! unmounting the pin (teardown) frees it with every mount in it once the
//! node's processes are gone.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use super::{run, RuntimeNode};

/// What the node's mount namespace shows where: `(node path, source dir)`
/// binds, and optionally a directory to show as `/sys`.
#[derive(Debug, Clone, Default)]
pub struct NodeFs {
    binds: Vec<(PathBuf, PathBuf)>,
    sys: Option<PathBuf>,
}

impl NodeFs {
    pub fn new() -> Self {
        Self::default()
    }

    /// Shows `source` (a directory of the test) at `node_path` on the node.
    pub fn bind(mut self, node_path: &str, source: &Path) -> Self {
        self.binds
            .push((PathBuf::from(node_path), source.to_path_buf()));
        self
    }

    /// Shows `dir` (a fake sysfs's `sys/`) as the node's `/sys`, with the
    /// machine's cgroup hierarchy at `/sys/fs/cgroup` (containerd and runc
    /// manage the pods' cgroups there).
    pub fn sys(mut self, dir: &Path) -> Self {
        self.sys = Some(dir.to_path_buf());
        self
    }
}

impl RuntimeNode {
    /// Opt-in, before [`Self::start`]: containerd (and the shims, runc and
    /// CNI plugins under it) runs in a mount namespace of the node showing
    /// `fs`'s directories at their node paths (see `nodefs.rs`). Sandbox
    /// netns paths are then given as [`Self::host_view`]s.
    pub fn set_node_fs(&mut self, fs: NodeFs) {
        self.node_fs = Some(fs);
    }

    /// Where the test reaches a path as the node's runtime sees it: through
    /// containerd's root (`/proc/<pid>/root`) when the node has its own
    /// mount namespace, the path itself otherwise. Its directory is
    /// resolved on the machine first when it exists there (an absolute
    /// symlink such as `/var/run` would otherwise resolve against the
    /// test's root, not the node's).
    pub fn host_view(&self, node_path: &Path) -> PathBuf {
        let (Some(_), Some(child)) = (&self.mntns, &self.containerd) else {
            return node_path.to_path_buf();
        };
        let resolved = match (node_path.parent(), node_path.file_name()) {
            (Some(dir), Some(name)) => dir
                .canonicalize()
                .map_or_else(|_| node_path.to_path_buf(), |d| d.join(name)),
            _ => node_path.to_path_buf(),
        };
        let rel = resolved.strip_prefix("/").unwrap_or(&resolved);
        PathBuf::from(format!("/proc/{}/root", child.id())).join(rel)
    }
}

/// The node's mount namespace, created and filled; see the module docs.
#[derive(Debug)]
pub(crate) struct MountNs {
    /// `<work>/mntns`: a private self-bind holding the pin and the overlays'
    /// upper dirs.
    dir: PathBuf,
    pinned: bool,
}

impl MountNs {
    /// The nsfs bind mount other processes enter with `nsenter --mount=`.
    pub(crate) fn pin(&self) -> PathBuf {
        self.dir.join("ns")
    }

    /// Creates the namespace under `work` and makes `fs`'s mounts in it.
    /// On error the half-made namespace is released by drop.
    pub(crate) fn create(work: &Path, fs: &NodeFs) -> Result<Self> {
        let dir = work.join("mntns");
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let d = dir.display().to_string();
        // The pin must sit on a private mount (a shared one would propagate
        // the nsfs mount, which the kernel refuses).
        run(Command::new("mount").args(["--bind", &d, &d]))?;
        let mut this = Self { dir, pinned: false };
        run(Command::new("mount").args(["--make-private", &d]))?;
        fs::write(this.pin(), b"").context("creating the pin file")?;
        run(Command::new("unshare")
            .arg(format!("--mount={}", this.pin().display()))
            .args(["--propagation", "slave", "true"]))
        .context("creating the node's mount namespace")?;
        this.pinned = true;
        this.mount_all(work, fs)?;
        Ok(this)
    }

    /// Runs `args` inside the namespace.
    fn ns(&self, args: &[&str]) -> Result<()> {
        run(Command::new("nsenter")
            .arg(format!("--mount={}", self.pin().display()))
            .arg("--")
            .args(args))
        .map(|_| ())
    }

    fn mount_all(&self, work: &Path, fs: &NodeFs) -> Result<()> {
        let mut binds = fs.binds.clone();
        binds.sort_by_key(|(p, _)| p.components().count());
        let mut overlays: Vec<PathBuf> = Vec::new();
        for (node_path, _) in &binds {
            let (target, existing) = split_existing(node_path)?;
            if target != existing && !overlays.iter().any(|o| existing.starts_with(o)) {
                if existing == Path::new("/") || work.starts_with(&existing) {
                    bail!(
                        "{}: would overlay {} (the root or the work dir's ancestor)",
                        node_path.display(),
                        existing.display()
                    );
                }
                self.overlay(&existing, overlays.len())?;
                overlays.push(existing);
            }
        }
        // A source under an overlay would be written to its upper dir, out
        // of the test's sight.
        if let Some((_, s)) = binds
            .iter()
            .find(|(_, s)| overlays.iter().any(|o| s.starts_with(o)))
        {
            bail!("{} is under an overlaid node directory", s.display());
        }
        if let Some(sys) = &fs.sys {
            self.sysfs(sys)?;
        }
        for (node_path, source) in &binds {
            let (target, _) = split_existing(node_path)?;
            let (t, s) = (target.display().to_string(), source.display().to_string());
            self.ns(&["mkdir", "-p", &t])?;
            // A source that is itself a mount (a shared netns dir) is made
            // a peer of the bind, so mounts made under the node path (pod
            // netns) show through the source too, as for the agent's
            // `HostToContainer` volume of the same directory.
            if self.ns(&["mountpoint", "-q", &s]).is_ok() {
                self.ns(&["mount", "--make-shared", &s])?;
            }
            self.ns(&["mount", "--bind", &s, &t])
                .with_context(|| format!("binding {s} on the node's {t}"))?;
        }
        Ok(())
    }

    /// An overlay of `lower` on itself, its upper dir in the work dir.
    fn overlay(&self, lower: &Path, n: usize) -> Result<()> {
        let (upper, scratch) = (
            self.dir.join(format!("up{n}")),
            self.dir.join(format!("wk{n}")),
        );
        for d in [&upper, &scratch] {
            fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
        }
        let l = lower.display().to_string();
        let opts = format!(
            "lowerdir={l},upperdir={},workdir={}",
            upper.display(),
            scratch.display()
        );
        self.ns(&["mount", "-t", "overlay", "plexus-node", "-o", &opts, &l])
            .with_context(|| format!("overlaying the node's {l}"))
    }

    /// `sys` on `/sys`, the machine's cgroup mounts moved inside it.
    fn sysfs(&self, sys: &Path) -> Result<()> {
        let stage = self.dir.join("cgroup");
        fs::create_dir_all(&stage)?;
        fs::create_dir_all(sys.join("fs/cgroup"))?;
        let (stage, sys) = (stage.display().to_string(), sys.display().to_string());
        self.ns(&["mount", "--rbind", "/sys/fs/cgroup", &stage])?;
        self.ns(&["mount", "--bind", &sys, "/sys"])?;
        self.ns(&["mount", "--move", &stage, "/sys/fs/cgroup"])
            .context("moving the cgroup hierarchy into the node's /sys")
    }

    /// Unmounts the pin and its directory. The namespace, with every mount
    /// in it, goes away once no process of the node is left in it.
    pub(crate) fn release(&mut self, errors: &mut Vec<String>) {
        let mut umount = |p: &Path| {
            let out = Command::new("umount").arg(p).output();
            if !out.is_ok_and(|o| o.status.success()) {
                errors.push(format!("unmounting {}", p.display()));
                let _ = Command::new("umount").arg("-l").arg(p).status();
            }
        };
        if std::mem::replace(&mut self.pinned, false) {
            umount(&self.pin());
        }
        if self.dir.as_os_str().is_empty() {
            return;
        }
        umount(&self.dir);
        self.dir = PathBuf::new();
    }
}

impl Drop for MountNs {
    fn drop(&mut self) {
        let mut errors = Vec::new();
        self.release(&mut errors);
    }
}

/// `path` with its existing prefix resolved (`/var/run/x` -> `/run/x`), and
/// that existing prefix (the whole path when it exists).
fn split_existing(path: &Path) -> Result<(PathBuf, PathBuf)> {
    let mut existing = path.to_path_buf();
    let mut rest = Vec::new();
    while !existing.exists() {
        let Some(name) = existing.file_name().map(ToOwned::to_owned) else {
            bail!("{}: no existing ancestor", path.display());
        };
        rest.push(name);
        existing.pop();
    }
    let existing = existing
        .canonicalize()
        .with_context(|| format!("resolving {}", existing.display()))?;
    let mut target = existing.clone();
    target.extend(rest.iter().rev());
    Ok((target, existing))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_existing_resolves_the_existing_prefix_only() {
        let tmp = tempfile::tempdir().unwrap();
        let real = tmp.path().join("real");
        fs::create_dir(&real).unwrap();
        std::os::unix::fs::symlink(&real, tmp.path().join("link")).unwrap();
        let real = real.canonicalize().unwrap();
        let (target, existing) = split_existing(&tmp.path().join("link/a/b")).unwrap();
        assert_eq!((target, existing.clone()), (real.join("a/b"), real.clone()));
        let (target, existing) = split_existing(&tmp.path().join("link")).unwrap();
        assert_eq!(target, existing);
        assert_eq!(existing, real);
    }
}
