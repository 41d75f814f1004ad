//! File operations on the node's CNI dirs shared by install and uninstall:
//! every replacement is a temp file + fsync + rename in the same directory,
//! so the runtime never reads a torn binary or config.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use plexus_cni::fsutil::{write_atomic, AtomicWrite};
use serde_json::Value;

use crate::install::InstallError;

/// Compares two files in 64 KiB chunks.
pub(crate) fn files_equal(a: &Path, b: &Path) -> bool {
    use std::io::Read;
    let (Ok(mut fa), Ok(mut fb)) = (fs::File::open(a), fs::File::open(b)) else {
        return false;
    };
    match (fa.metadata(), fb.metadata()) {
        (Ok(ma), Ok(mb)) if ma.len() == mb.len() => {}
        _ => return false,
    }
    let mut ba = vec![0u8; 64 * 1024];
    let mut bb = vec![0u8; 64 * 1024];
    loop {
        let Ok(n) = fa.read(&mut ba) else {
            return false;
        };
        if n == 0 {
            return true;
        }
        if fb.read_exact(&mut bb[..n]).is_err() || ba[..n] != bb[..n] {
            return false;
        }
    }
}

pub(crate) fn pretty(v: &Value) -> Vec<u8> {
    let mut s = serde_json::to_vec_pretty(v).unwrap_or_default();
    s.push(b'\n');
    s
}

pub(crate) fn read(path: &Path) -> Result<Vec<u8>, InstallError> {
    fs::read(path).map_err(|source| InstallError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// The host CNI bin dir: what it is called, and where it is set.
pub(crate) const BIN_DIR: (&str, &str) = ("CNI bin dir", "--cni-bin-dir, PLEXUS_CNI_BIN_DIR");
/// The host CNI conf dir: what it is called, and where it is set.
pub(crate) const CONF_DIR: (&str, &str) = ("CNI conf dir", "--cni-conf-dir, PLEXUS_CNI_CONF_DIR");

pub(crate) fn check_dir_writable(
    (what, setting): (&'static str, &'static str),
    dir: &Path,
) -> Result<(), InstallError> {
    if !dir.is_dir() {
        return Err(InstallError::MissingDir {
            what,
            setting,
            path: dir.to_path_buf(),
        });
    }
    // Permission bits do not stop root; only an actual write tells.
    let probe = dir.join(format!(".plexus-probe-{}", std::process::id()));
    let res = fs::File::create(&probe);
    let _ = fs::remove_file(&probe);
    res.map(|_| ()).map_err(|source| InstallError::NotWritable {
        what,
        setting,
        path: dir.to_path_buf(),
        source,
    })
}

/// How the installer replaces files: in place (the directory exists), with
/// exact permissions, fsynced so a node crash never leaves a torn binary or
/// config for the kubelet to run.
pub(crate) fn durable(mode: u32) -> AtomicWrite {
    AtomicWrite {
        sync: true,
        mode: Some(mode & 0o7777),
        create_dir: None,
    }
}

/// Atomically replaces `path` with `bytes` (temp file in the same dir, fsync,
/// rename) unless it already holds exactly those bytes and that mode.
/// Returns whether it wrote.
pub fn write_if_changed(path: &Path, bytes: &[u8], mode: u32) -> Result<bool, InstallError> {
    let mode = mode & 0o7777;
    if let (Ok(old), Ok(meta)) = (fs::read(path), fs::metadata(path)) {
        if old == bytes && meta.permissions().mode() & 0o7777 == mode {
            return Ok(false);
        }
    }
    write_atomic(path, bytes, durable(mode)).map_err(|source| InstallError::Write {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(true)
}
