//! Atomic file replacement, shared by the plugins' caches, the node state
//! file and the agent's installer: the bytes go to a temp file in the same
//! directory, which is then renamed over the target, so a reader sees the old
//! or the new content, never a torn file.
//!
//! Whether the write must also survive a node crash (fsync of the file and
//! its directory) is each caller's explicit choice ([`AtomicWrite::sync`]):
//! the agent's state and installed binaries do, the plugins' per-ADD caches
//! deliberately do not.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// How [`write_atomic`] / [`replace_atomic`] write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AtomicWrite {
    /// fsync the file before the rename and the directory after it, so the
    /// new content survives a node crash, not only the writing process.
    pub sync: bool,
    /// Permission bits of the new file (exact, not masked by the umask);
    /// `None` leaves the process default.
    pub mode: Option<u32>,
    /// Create the parent directory (recursively, with these bits before the
    /// umask) when missing; `None` expects it to exist.
    pub create_dir: Option<u32>,
}

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Replaces `path` with `bytes` atomically.
pub fn write_atomic(path: &Path, bytes: &[u8], how: AtomicWrite) -> io::Result<()> {
    replace_atomic(path, how, |f| f.write_all(bytes))
}

/// Replaces `path` atomically with what `fill` writes into the temp file.
/// On any failure the temp file is removed and `path` is left untouched.
pub fn replace_atomic(
    path: &Path,
    how: AtomicWrite,
    fill: impl FnOnce(&mut File) -> io::Result<()>,
) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if let Some(dir_mode) = how.create_dir {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(dir_mode)
            .create(&dir)?;
    }
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // Hidden and unique per process and call, so directory scanners skip it
    // and concurrent writers never share one.
    let tmp = dir.join(format!(
        ".{file_name}.{}.{}.tmp",
        std::process::id(),
        TMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut opts = OpenOptions::new();
        opts.write(true).create_new(true);
        if let Some(mode) = how.mode {
            opts.mode(mode & 0o7777);
        }
        let mut f = opts.open(&tmp)?;
        fill(&mut f)?;
        if let Some(mode) = how.mode {
            f.set_permissions(fs::Permissions::from_mode(mode & 0o7777))?;
        }
        if how.sync {
            f.sync_all()?;
        }
        drop(f);
        fs::rename(&tmp, path)?;
        if how.sync {
            File::open(&dir)?.sync_all()?;
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Removes only the temp files that killed writers left for the record at
/// `path` (see [`remove_record`]), never the record itself: for a DEL that
/// found no record, whose container's ADD may be saving one right now.
pub fn remove_stale_temps(path: &Path) -> io::Result<()> {
    if let (Some(dir), Some(name)) = (path.parent(), path.file_name()) {
        let prefix = format!(".{}.", name.to_string_lossy());
        for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
            let file = entry.file_name();
            let file = file.to_string_lossy();
            let Some(rest) = file
                .strip_prefix(&prefix)
                .and_then(|r| r.strip_suffix(".tmp"))
            else {
                continue;
            };
            let writer = rest.split('.').next().unwrap_or_default();
            if !writer.is_empty() && !writer_running(writer) {
                match fs::remove_file(entry.path()) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                    _ => {}
                }
            }
        }
    }
    Ok(())
}

/// Removes a record written with [`write_atomic`], and the temp files that
/// writers killed between write and rename left for it
/// (`.<name>.<pid>.<n>.tmp` of a PID no longer running): nothing else ever
/// removes them, and the record's DEL is the one moment its owner is done.
/// A record that is not there is success, also on a read-only filesystem,
/// where unlink answers EROFS before it looks the name up: DEL of an
/// attachment that never got a record must not fail.
pub fn remove_record(path: &Path) -> io::Result<()> {
    remove_stale_temps(path)?;
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        _ => match fs::remove_file(path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        },
    }
}

/// Whether PID `pid` names a process that can still write: a killed writer
/// stays in /proc as a zombie until its (new) parent reaps it, which a
/// slow init may take its time over.
fn writer_running(pid: &str) -> bool {
    match fs::read_to_string(Path::new("/proc").join(pid).join("stat")) {
        // `pid (comm) STATE ...`; comm may hold ')' itself.
        Ok(stat) => !matches!(
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.trim_start().chars().next()),
            Some('Z' | 'X')
        ),
        Err(e) => e.kind() != io::ErrorKind::NotFound && e.raw_os_error() != Some(libc::ESRCH),
    }
}

/// The `*.json` files of a record directory (a cache or state dir written
/// with [`write_atomic`]), sorted, without hidden names so a temp file
/// being written is never read as a record. A missing directory has none.
pub fn json_files(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut files: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension().is_some_and(|x| x == "json")
                && !p
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect();
    files.sort();
    Ok(files)
}

/// Cap for [`read_regular`] on the node's small JSON/PEM files (caches,
/// device-info, state, delegate configs, kubeconfigs).
pub const MAX_NODE_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// Reads a node file whose path may come from a config a tenant wrote:
/// opened with `O_NONBLOCK` (a FIFO opens without waiting for a writer),
/// refused unless `fstat` says it is a regular file (no FIFO, socket or
/// device such as `/dev/zero`), and refused when larger than `max` bytes, so
/// the caller's time and memory stay bounded whatever the path names.
pub fn read_regular(path: &Path, max: u64) -> io::Result<Vec<u8>> {
    use std::io::Read;
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.file_type().is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not a regular file", path.display()),
        ));
    }
    if meta.len() > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} is larger than {max} bytes", path.display()),
        ));
    }
    let mut bytes = Vec::new();
    // A file that grows after fstat is still cut at max + 1 and refused.
    file.take(max + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} is larger than {max} bytes", path.display()),
        ));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    #[test]
    fn read_regular_refuses_fifos_devices_and_big_files() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let started = std::time::Instant::now();
        let err = super::read_regular(&fifo, 1024).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        let err = super::read_regular(Path::new("/dev/zero"), 1024).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
        let big = dir.path().join("big");
        std::fs::write(&big, vec![b'x'; 2048]).unwrap();
        let err = super::read_regular(&big, 1024).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
        assert_eq!(super::read_regular(&big, 2048).unwrap().len(), 2048);
        let missing = super::read_regular(&dir.path().join("none"), 1).unwrap_err();
        assert_eq!(missing.kind(), std::io::ErrorKind::NotFound);
    }

    use super::*;

    const FAST: AtomicWrite = AtomicWrite {
        sync: false,
        mode: None,
        create_dir: Some(0o755),
    };

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn replaces_and_leaves_no_temp_file() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("sub/a.json");
        write_atomic(&p, b"one", FAST).unwrap();
        write_atomic(&p, b"two", AtomicWrite { sync: true, ..FAST }).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(names(&d.path().join("sub")), ["a.json"]);
    }

    #[test]
    fn remove_record_takes_dead_writers_temp_files_and_spares_live_ones() {
        let d = tempfile::tempdir().unwrap();
        let rec = d.path().join("c1-net1.json");
        write_atomic(&rec, b"{}", FAST).unwrap();
        // PID 0 never names a process in /proc; our own PID is alive.
        let dead = d.path().join(".c1-net1.json.0.0.tmp");
        let live = d
            .path()
            .join(format!(".c1-net1.json.{}.7.tmp", std::process::id()));
        let other = d.path().join(".c2-net1.json.0.0.tmp");
        for f in [&dead, &live, &other] {
            fs::write(f, b"x").unwrap();
        }
        remove_record(&rec).unwrap();
        assert!(!rec.exists() && !dead.exists());
        assert!(live.exists() && other.exists());
        // Gone already: still success.
        remove_record(&rec).unwrap();
        remove_record(&d.path().join("missing/x.json")).unwrap();
    }

    #[test]
    fn remove_record_takes_a_killed_writers_temp_file_while_it_is_a_zombie() {
        let d = tempfile::tempdir().unwrap();
        let rec = d.path().join("c1-net1.json");
        // A child that exits and is not reaped yet: a zombie in /proc, the
        // state of a delegate killed with its caller until init reaps it.
        let mut child = std::process::Command::new("/bin/true").spawn().unwrap();
        let pid = child.id();
        let stat = format!("/proc/{pid}/stat");
        let start = std::time::Instant::now();
        while !fs::read_to_string(&stat).unwrap().contains(") Z") {
            assert!(
                start.elapsed().as_secs() < 10,
                "child never became a zombie"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let zombie = d.path().join(format!(".c1-net1.json.{pid}.0.tmp"));
        fs::write(&zombie, b"x").unwrap();
        remove_record(&rec).unwrap();
        child.wait().unwrap();
        assert!(!zombie.exists(), "a zombie writer's temp file was kept");
    }

    #[test]
    fn json_files_skip_temp_and_other_files() {
        let d = tempfile::tempdir().unwrap();
        assert!(json_files(&d.path().join("missing")).unwrap().is_empty());
        for name in [
            "b.json",
            "a.json",
            ".a.json.1.0.tmp",
            ".hidden.json",
            "lock",
        ] {
            fs::write(d.path().join(name), b"{}").unwrap();
        }
        let found = json_files(d.path()).unwrap();
        assert_eq!(found, [d.path().join("a.json"), d.path().join("b.json")]);
    }

    #[test]
    fn mode_is_exact_regardless_of_umask() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("bin");
        let how = AtomicWrite {
            mode: Some(0o755),
            ..FAST
        };
        write_atomic(&p, b"x", how).unwrap();
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o7777,
            0o755
        );
    }

    #[test]
    fn missing_dir_without_create_fails_and_cleans_up() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("missing/a");
        let how = AtomicWrite {
            create_dir: None,
            ..FAST
        };
        assert!(write_atomic(&p, b"x", how).is_err());
        let failed = replace_atomic(&d.path().join("b"), FAST, |_| Err(io::Error::other("boom")));
        assert!(failed.is_err());
        assert!(names(d.path()).is_empty());
    }
}
