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
//! 4. write the readiness indicator once everything above is in place.
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

use plexus_cni::fsutil::{replace_atomic, write_atomic, AtomicWrite};
use serde_json::{json, Map, Value};

/// The binaries the image ships and the host runtime executes.
pub const DEFAULT_BINARIES: [&str; 4] = ["plexus", "host-device", "static", "vnic"];
/// Sorts before every other config so the runtime picks the meta plugin.
pub const DEFAULT_CONF_NAME: &str = "00-plexus.conflist";
/// The `type` of the meta plugin; used to recognise our own output.
pub const META_PLUGIN_TYPE: &str = "plexus";
/// The network name the runtime sees for the wrapped default network.
pub const META_NETWORK_NAME: &str = "plexus-cni-network";

/// Errors of the install step; each names the path involved.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("{what} {path} does not exist or is not a directory")]
    MissingDir { what: &'static str, path: PathBuf },
    #[error("{what} {path} is not writable: {source}")]
    NotWritable {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("binary {path} to install is missing: {source}")]
    MissingBinary {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no primary CNI config (.conf/.conflist other than ours) in {dir}")]
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
}

impl InstallConfig {
    /// `<conf dir>/plexus.d`, holding the kubeconfig, token and CA.
    pub fn aux_dir(&self) -> PathBuf {
        self.cni_conf_dir.join("plexus.d")
    }
    fn host_aux_dir(&self) -> PathBuf {
        self.host_cni_conf_dir.join("plexus.d")
    }
}

/// The config chosen as the node's default network.
#[derive(Debug, Clone, PartialEq)]
pub struct Primary {
    pub file_name: String,
    pub conf: Value,
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

/// True when `conf` is a config of the meta plugin itself, single or list.
pub fn is_own_conf(conf: &Value) -> bool {
    let is_meta = |v: &Value| v.get("type").and_then(Value::as_str) == Some(META_PLUGIN_TYPE);
    is_meta(conf)
        || conf
            .get("plugins")
            .and_then(Value::as_array)
            .is_some_and(|ps| ps.iter().any(is_meta))
}

/// Pure: choose the primary among `(file name, content)` pairs of the conf
/// dir. Lexical order like libcni; ours is skipped by name and by content;
/// files that are not JSON are skipped (the runtime would skip them too).
pub fn select_primary(entries: &[(String, Vec<u8>)], own_name: &str) -> Option<Primary> {
    let mut sorted: Vec<&(String, Vec<u8>)> = entries
        .iter()
        .filter(|(name, _)| name.ends_with(".conf") || name.ends_with(".conflist"))
        .filter(|(name, _)| name != own_name && !name.starts_with("00-plexus"))
        .collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    sorted.into_iter().find_map(|(name, bytes)| {
        let conf: Value = serde_json::from_slice(bytes).ok()?;
        if !conf.is_object() || is_own_conf(&conf) {
            return None;
        }
        Some(Primary {
            file_name: name.clone(),
            conf,
        })
    })
}

/// Capabilities the runtime must pass to the meta plugin: the union of those
/// the primary's plugins declare, so e.g. `portMappings` still reaches Flannel's
/// portmap through us.
fn union_capabilities(primary: &Value) -> Map<String, Value> {
    let mut caps = Map::new();
    let plugins: Vec<&Value> = match primary.get("plugins").and_then(Value::as_array) {
        Some(ps) => ps.iter().collect(),
        None => vec![primary],
    };
    for p in plugins {
        if let Some(c) = p.get("capabilities").and_then(Value::as_object) {
            for (k, v) in c {
                if v.as_bool() == Some(true) {
                    caps.insert(k.clone(), Value::Bool(true));
                }
            }
        }
    }
    caps
}

/// Pure: the meta plugin's conflist wrapping `primary`.
pub fn render_meta_conf(
    primary: &Primary,
    kubeconfig_host_path: &Path,
    readiness: Option<&Path>,
) -> Result<Value, InstallError> {
    let version = primary
        .conf
        .get("cniVersion")
        .and_then(Value::as_str)
        .ok_or_else(|| InstallError::NoCniVersion {
            path: PathBuf::from(&primary.file_name),
        })?;
    let mut plugin = Map::new();
    plugin.insert("type".into(), json!(META_PLUGIN_TYPE));
    let caps = union_capabilities(&primary.conf);
    if !caps.is_empty() {
        plugin.insert("capabilities".into(), Value::Object(caps));
    }
    plugin.insert(
        "kubeconfig".into(),
        json!(kubeconfig_host_path.to_string_lossy()),
    );
    if let Some(r) = readiness {
        plugin.insert("readinessindicatorfile".into(), json!(r.to_string_lossy()));
    }
    plugin.insert("delegates".into(), json!([primary.conf.clone()]));
    Ok(json!({
        "cniVersion": version,
        "name": META_NETWORK_NAME,
        "plugins": [Value::Object(plugin)],
    }))
}

/// Pure: a kubeconfig naming the token by file, so the plugin always reads
/// the current token instead of a copy frozen at install time.
pub fn render_kubeconfig(api_server: &str, ca_host_path: &Path, token_host_path: &Path) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "local", "cluster": {
            "server": api_server,
            "certificate-authority": ca_host_path.to_string_lossy(),
        }}],
        "users": [{"name": "plexus", "user": {"tokenFile": token_host_path.to_string_lossy()}}],
        "contexts": [{"name": "plexus", "context": {"cluster": "local", "user": "plexus"}}],
        "current-context": "plexus",
    })
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

    pub fn config(&self) -> &InstallConfig {
        &self.cfg
    }

    /// Brings the node to the desired state; see the module docs.
    pub fn sync(&self) -> Result<SyncReport, InstallError> {
        let cfg = &self.cfg;
        // Preflight: everything that can fail before anything is written.
        check_dir_writable("CNI bin dir", &cfg.cni_bin_dir)?;
        check_dir_writable("CNI conf dir", &cfg.cni_conf_dir)?;
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
        let primary = self.read_primary()?;
        let token = read(&cfg.token_source)?;
        let ca = read(&cfg.ca_source)?;
        let aux = cfg.aux_dir();
        let host_aux = cfg.host_aux_dir();
        let conf = render_meta_conf(
            &primary,
            &host_aux.join("plexus.kubeconfig"),
            cfg.primary_readiness_file.as_deref(),
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
        fs::create_dir_all(&aux).map_err(|source| InstallError::Write {
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

/// Compares two files in 64 KiB chunks.
fn files_equal(a: &Path, b: &Path) -> bool {
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

fn pretty(v: &Value) -> Vec<u8> {
    let mut s = serde_json::to_vec_pretty(v).unwrap_or_default();
    s.push(b'\n');
    s
}

fn read(path: &Path) -> Result<Vec<u8>, InstallError> {
    fs::read(path).map_err(|source| InstallError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn check_dir_writable(what: &'static str, dir: &Path) -> Result<(), InstallError> {
    if !dir.is_dir() {
        return Err(InstallError::MissingDir {
            what,
            path: dir.to_path_buf(),
        });
    }
    // Permission bits do not stop root; only an actual write tells.
    let probe = dir.join(format!(".plexus-probe-{}", std::process::id()));
    let res = fs::File::create(&probe);
    let _ = fs::remove_file(&probe);
    res.map(|_| ()).map_err(|source| InstallError::NotWritable {
        what,
        path: dir.to_path_buf(),
        source,
    })
}

/// How the installer replaces files: in place (the directory exists), with
/// exact permissions, fsynced so a node crash never leaves a torn binary or
/// config for the kubelet to run.
fn durable(mode: u32) -> AtomicWrite {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, v: Value) -> (String, Vec<u8>) {
        (name.to_string(), serde_json::to_vec(&v).unwrap())
    }

    #[test]
    fn select_skips_own_by_name_and_content_and_sorts() {
        let entries = vec![
            entry(
                "10-flannel.conflist",
                json!({"cniVersion":"0.3.1","plugins":[{"type":"flannel"}]}),
            ),
            entry(
                "00-plexus.conflist",
                json!({"cniVersion":"0.3.1","plugins":[{"type":"plexus"}]}),
            ),
            entry(
                "01-renamed.conf",
                json!({"cniVersion":"0.3.1","type":"plexus"}),
            ),
            entry("05-broken.conf", json!("not an object")),
            entry(
                "99-bridge.conf",
                json!({"cniVersion":"1.0.0","type":"bridge"}),
            ),
            ("03-junk.conf".into(), b"{not json".to_vec()),
            entry("02-readme.txt", json!({"cniVersion":"0.3.1","type":"x"})),
        ];
        let p = select_primary(&entries, DEFAULT_CONF_NAME).unwrap();
        assert_eq!(p.file_name, "10-flannel.conflist");
    }

    #[test]
    fn capabilities_are_the_union_of_true_ones() {
        let conf = json!({"cniVersion":"0.3.1","plugins":[
            {"type":"flannel"},
            {"type":"portmap","capabilities":{"portMappings":true}},
            {"type":"bandwidth","capabilities":{"bandwidth":true,"x":false}}]});
        let caps = union_capabilities(&conf);
        assert_eq!(
            Value::Object(caps),
            json!({"portMappings":true,"bandwidth":true})
        );
    }

    #[test]
    fn missing_cni_version_is_an_error() {
        let p = Primary {
            file_name: "10-x.conf".into(),
            conf: json!({"type":"bridge"}),
        };
        assert!(matches!(
            render_meta_conf(&p, Path::new("/k"), None),
            Err(InstallError::NoCniVersion { .. })
        ));
    }
}
