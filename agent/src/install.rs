//! `plexus-agent install`: what the DaemonSet does on every node before pods
//! can use secondary networks.
//!
//! 1. copy our CNI binaries from the image into the host CNI bin dir, each by
//!    temp file + rename so a runtime never executes a half-written file;
//! 2. write `00-plexus.conflist`, the meta plugin's config wrapping the node's
//!    primary CNI config (the lexically first `.conf`/`.conflist` that is not
//!    ours). Our own file is recognised by name *and* by content
//!    (`"type": "plexus"`), so a restart never wraps the meta plugin into
//!    itself (Multus v4.0.2 did, issues #1130/#1162);
//! 3. write a kubeconfig whose user points at a token *file* (`tokenFile`),
//!    which [`Installer::sync`] keeps equal to the projected service-account
//!    token (Multus copies the token into the kubeconfig once and it expires,
//!    multus #852);
//! 4. write the readiness indicator once everything above is in place
//!    ([`Installer::begin`] removes it first, so a restarted agent is not
//!    Ready before it has installed).
//!
//! A binary the node already had under one of our names (`host-device` and
//! `static` ship with the reference plugins) is kept in `plexus.d/orig/`
//! before it is first replaced, and `plexus.d/installed.json` lists the
//! binaries we own; `crate::uninstall` puts the originals back.
//!
//! [`Installer::sync`] is idempotent and is re-run by the watch loop in
//! `plexus-agent run`; it rewrites a file only when its content changes.
//! Every check that can fail (missing source binaries, missing or read-only
//! dirs, no primary config) runs before the first write.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use plexus_cni::fsutil::replace_atomic;
use serde_json::json;

pub use crate::metaconf::{
    is_own_conf, render_kubeconfig, render_meta_conf, select_primary, Primary, META_NETWORK_NAME,
    META_PLUGIN_TYPE,
};
pub use crate::nodefs::write_if_changed;
use crate::nodefs::{check_dir_writable, durable, files_equal, pretty, read, BIN_DIR, CONF_DIR};

/// The binaries the image ships and the host runtime executes.
pub const DEFAULT_BINARIES: [&str; 4] = ["plexus", "host-device", "static", "vnic"];
/// Sorts before every other config so the runtime picks the meta plugin.
pub const DEFAULT_CONF_NAME: &str = "00-plexus.conflist";
/// Errors of the install step; each names the path involved.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("{what} {path} ({setting}) does not exist or is not a directory: is the host directory mounted there?")]
    MissingDir {
        what: &'static str,
        setting: &'static str,
        path: PathBuf,
    },
    #[error("{what} {path} ({setting}) is not writable: {source}")]
    NotWritable {
        what: &'static str,
        setting: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "binary {path} to install is missing (--source-bin-dir, PLEXUS_SOURCE_BIN_DIR): {source}"
    )]
    MissingBinary {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no primary CNI config (.conf/.conflist other than ours) in {dir}: install the cluster network first")]
    NoPrimary { dir: PathBuf },
    #[error("primary CNI config {path} has no cniVersion")]
    NoCniVersion { path: PathBuf },
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Where things are. Paths named `host_*` are how the host (the runtime
/// running our plugin) sees the files the agent writes through its mounts.
#[derive(Debug, Clone)]
pub struct InstallConfig {
    /// Directory in the image holding the binaries to copy.
    pub source_bin_dir: PathBuf,
    /// Host CNI bin dir as mounted in the agent container.
    pub cni_bin_dir: PathBuf,
    /// Host CNI conf dir as mounted in the agent container.
    pub cni_conf_dir: PathBuf,
    /// The same conf dir as the host sees it (written into our configs).
    pub host_cni_conf_dir: PathBuf,
    pub binaries: Vec<String>,
    pub conf_name: String,
    /// Projected service-account token (rotated by the kubelet).
    pub token_source: PathBuf,
    /// Cluster CA of the service account.
    pub ca_source: PathBuf,
    /// `https://host:port` of the API server.
    pub api_server: String,
    /// Readiness file of the *primary* network the meta plugin waits for
    /// before ADD (Multus `readinessindicatorfile`), if any.
    pub primary_readiness_file: Option<PathBuf>,
    /// Written by the agent once install finished (DaemonSet readiness probe).
    pub ready_file: PathBuf,
    /// The kubelet's PodResources socket as the host sees it (follows the
    /// kubelet root), written into our conflist for the meta plugin.
    pub pod_resources_socket: PathBuf,
}

impl InstallConfig {
    /// `<conf dir>/plexus.d`, holding the kubeconfig, token and CA.
    pub fn aux_dir(&self) -> PathBuf {
        self.cni_conf_dir.join("plexus.d")
    }
    fn host_aux_dir(&self) -> PathBuf {
        self.host_cni_conf_dir.join("plexus.d")
    }
    /// Where the node's own binary of a name we replaced is kept.
    pub fn orig_dir(&self) -> PathBuf {
        self.aux_dir().join("orig")
    }
    /// The list of binaries we own (JSON array of names).
    pub fn record_path(&self) -> PathBuf {
        self.aux_dir().join("installed.json")
    }
    /// Our conflist.
    pub fn conf_path(&self) -> PathBuf {
        self.cni_conf_dir.join(&self.conf_name)
    }
}

/// Names listed in `installed.json`; empty when it is missing or unreadable.
pub fn read_record(cfg: &InstallConfig) -> Vec<String> {
    fs::read(cfg.record_path())
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// What one [`Installer::sync`] changed; empty when the node was already up to date.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SyncReport {
    pub binaries_copied: Vec<String>,
    pub conf_written: bool,
    pub kubeconfig_written: bool,
    pub token_refreshed: bool,
    pub primary: Option<String>,
}

impl SyncReport {
    pub fn changed(&self) -> bool {
        !self.binaries_copied.is_empty()
            || self.conf_written
            || self.kubeconfig_written
            || self.token_refreshed
    }
}

/// Size and mtime of a source and its installed copy, as last verified equal.
type Stamp = (u64, Option<SystemTime>, u64, Option<SystemTime>);

fn stamp(src: &fs::Metadata, dst: &fs::Metadata) -> Stamp {
    (
        src.len(),
        src.modified().ok(),
        dst.len(),
        dst.modified().ok(),
    )
}

/// Applies [`InstallConfig`] to the file system.
#[derive(Debug, Clone)]
pub struct Installer {
    cfg: InstallConfig,
    /// Binaries verified equal, by metadata: the watch loop runs every few
    /// seconds and must not re-read megabytes of binaries each time.
    verified: Arc<Mutex<BTreeMap<String, Stamp>>>,
}

impl Installer {
    pub fn new(cfg: InstallConfig) -> Self {
        Self {
            cfg,
            verified: Arc::default(),
        }
    }

    /// Installs one binary unless it is already there: streamed compare
    /// (bounded memory), then `fs::copy` to a temp file + rename.
    fn install_binary(&self, name: &str, src: &Path, mode: u32) -> Result<bool, InstallError> {
        let dst = self.cfg.cni_bin_dir.join(name);
        let src_meta = fs::metadata(src).map_err(|source| InstallError::MissingBinary {
            path: src.to_path_buf(),
            source,
        })?;
        if let Ok(dst_meta) = fs::metadata(&dst) {
            let now = stamp(&src_meta, &dst_meta);
            let known = self.verified.lock().ok().and_then(|v| v.get(name).copied());
            let same_mode = dst_meta.permissions().mode() & 0o7777 == mode & 0o7777;
            if same_mode && (known == Some(now) || files_equal(src, &dst)) {
                if let Ok(mut v) = self.verified.lock() {
                    v.insert(name.to_string(), now);
                }
                return Ok(false);
            }
        }
        self.own_binary(name, &dst)?;
        let mut from = fs::File::open(src).map_err(|source| InstallError::Write {
            path: src.to_path_buf(),
            source,
        })?;
        // io::copy between files is copy_file_range, as fs::copy.
        replace_atomic(&dst, durable(mode), |f| io::copy(&mut from, f).map(drop)).map_err(
            |source| InstallError::Write {
                path: dst.clone(),
                source,
            },
        )?;
        if let (Ok(m), Ok(v)) = (fs::metadata(&dst), self.verified.lock()) {
            let mut v = v;
            v.insert(name.to_string(), stamp(&src_meta, &m));
        }
        Ok(true)
    }

    /// Before we first replace `dst`: keep the node's own file of that name
    /// (unless kept already), then list the name as ours. In that order, so
    /// a crash in between never loses the original nor claims it as ours.
    fn own_binary(&self, name: &str, dst: &Path) -> Result<(), InstallError> {
        let mut owned = read_record(&self.cfg);
        if owned.iter().any(|n| n == name) {
            return Ok(());
        }
        let write_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| InstallError::Write { path, source }
        };
        let keep = self.cfg.orig_dir().join(name);
        if dst.exists() && !keep.exists() {
            let orig = self.cfg.orig_dir();
            fs::create_dir_all(&orig).map_err(write_err(&orig))?;
            let mode = fs::metadata(dst)
                .map_err(write_err(dst))?
                .permissions()
                .mode();
            let mut from = fs::File::open(dst).map_err(write_err(dst))?;
            replace_atomic(&keep, durable(mode), |f| io::copy(&mut from, f).map(drop))
                .map_err(write_err(&keep))?;
        }
        owned.push(name.to_string());
        owned.sort();
        let aux = self.cfg.aux_dir();
        fs::create_dir_all(&aux).map_err(write_err(&aux))?;
        write_if_changed(&self.cfg.record_path(), &pretty(&json!(owned)), 0o644)?;
        Ok(())
    }

    pub fn config(&self) -> &InstallConfig {
        &self.cfg
    }

    /// Start of an agent: the readiness file goes first, so the DaemonSet
    /// pod is not Ready until this agent has installed (a leftover file of a
    /// previous agent would make it look Ready at once).
    pub fn begin(&self) -> Result<(), InstallError> {
        match fs::remove_file(&self.cfg.ready_file) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(InstallError::Write {
                path: self.cfg.ready_file.clone(),
                source,
            }),
        }
    }

    /// Every check of [`Installer::sync`] that does not depend on the
    /// primary config: mounted, writable dirs and readable source binaries,
    /// token and CA. `run` calls it before changing anything.
    pub fn preflight(&self) -> Result<Vec<(String, PathBuf, u32)>, InstallError> {
        let cfg = &self.cfg;
        check_dir_writable(BIN_DIR, &cfg.cni_bin_dir)?;
        check_dir_writable(CONF_DIR, &cfg.cni_conf_dir)?;
        let mut binaries = Vec::new();
        for name in &cfg.binaries {
            let src = cfg.source_bin_dir.join(name);
            // Open, not just stat: an unreadable binary must fail here too.
            let meta = fs::File::open(&src)
                .and_then(|f| f.metadata())
                .map_err(|source| InstallError::MissingBinary {
                    path: src.clone(),
                    source,
                })?;
            binaries.push((name.clone(), src, meta.permissions().mode()));
        }
        read(&cfg.token_source)?;
        read(&cfg.ca_source)?;
        Ok(binaries)
    }

    /// Brings the node to the desired state; see the module docs.
    pub fn sync(&self) -> Result<SyncReport, InstallError> {
        let cfg = &self.cfg;
        // Preflight: everything that can fail before anything is written.
        let binaries = self.preflight()?;
        let primary = self.read_primary()?;
        let token = read(&cfg.token_source)?;
        let ca = read(&cfg.ca_source)?;
        let aux = cfg.aux_dir();
        let host_aux = cfg.host_aux_dir();
        let conf = render_meta_conf(
            &primary,
            &host_aux.join("plexus.kubeconfig"),
            cfg.primary_readiness_file.as_deref(),
            &cfg.pod_resources_socket,
        )?;
        let kubeconfig = render_kubeconfig(
            &cfg.api_server,
            &host_aux.join("ca.crt"),
            &host_aux.join("token"),
        );

        let mut report = SyncReport {
            primary: Some(primary.file_name.clone()),
            ..SyncReport::default()
        };
        for (name, src, mode) in binaries {
            if self.install_binary(&name, &src, mode)? {
                report.binaries_copied.push(name);
            }
        }
        // The token and kubeconfig are 0600 in a 0700 dir: only root on the
        // node reads the plugin's API credentials.
        fs::create_dir_all(&aux)
            .and_then(|()| fs::set_permissions(&aux, fs::Permissions::from_mode(0o700)))
            .map_err(|source| InstallError::Write {
                path: aux.clone(),
                source,
            })?;
        report.token_refreshed = write_if_changed(&aux.join("token"), &token, 0o600)?;
        write_if_changed(&aux.join("ca.crt"), &ca, 0o644)?;
        report.kubeconfig_written =
            write_if_changed(&aux.join("plexus.kubeconfig"), &pretty(&kubeconfig), 0o600)?;
        report.conf_written = write_if_changed(
            &cfg.cni_conf_dir.join(&cfg.conf_name),
            &pretty(&conf),
            0o644,
        )?;
        write_if_changed(&cfg.ready_file, b"ready\n", 0o644)?;
        Ok(report)
    }

    /// Re-copies the token only; cheap enough to run every few seconds.
    pub fn refresh_token(&self) -> Result<bool, InstallError> {
        let token = read(&self.cfg.token_source)?;
        write_if_changed(&self.cfg.aux_dir().join("token"), &token, 0o600)
    }

    /// Removes our conf (e.g. when the primary went away): a meta config
    /// wrapping nothing would fail every pod, a missing one makes the runtime
    /// report the network as not ready, which is the truth.
    pub fn remove_conf(&self) -> Result<bool, InstallError> {
        let path = self.cfg.cni_conf_dir.join(&self.cfg.conf_name);
        let _ = fs::remove_file(&self.cfg.ready_file);
        match fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(source) => Err(InstallError::Write { path, source }),
        }
    }

    fn read_primary(&self) -> Result<Primary, InstallError> {
        let dir = &self.cfg.cni_conf_dir;
        let rd = fs::read_dir(dir).map_err(|source| InstallError::Read {
            path: dir.clone(),
            source,
        })?;
        let mut entries = Vec::new();
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if e.path().is_file() {
                if let Ok(bytes) = fs::read(e.path()) {
                    entries.push((name, bytes));
                }
            }
        }
        select_primary(&entries, &self.cfg.conf_name)
            .ok_or_else(|| InstallError::NoPrimary { dir: dir.clone() })
    }
}
