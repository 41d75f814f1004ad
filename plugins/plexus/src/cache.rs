//! What an ADD did, kept on the node so DEL, CHECK and GC need no API server
//! and no NAD that may have changed since: one JSON file per container ID and
//! interface under `cniDir`, written atomically (temp file + rename).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use plexus_cni::fsutil::{self, AtomicWrite};
use plexus_cni::{CniResult, NetConfList};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::PlexusError;

/// Format marker of a cache file.
pub const CACHE_KIND: &str = "plexusCacheV1";

/// The pod a sandbox belongs to, from `CNI_ARGS`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodIdentity {
    #[serde(default)]
    pub namespace: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub uid: String,
    #[serde(default)]
    pub infra_container_id: String,
}

/// One delegate network attached to the pod.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Attachment {
    /// `ns/nad` for NAD networks, the config name for the cluster network.
    pub network: String,
    /// Interface name inside the pod.
    pub ifname: String,
    /// The cluster (default) network: its result is the ADD result.
    #[serde(default)]
    pub is_default: bool,
    /// The delegate conflist exactly as run (deviceID, args.cni injected).
    pub conf: NetConfList,
    /// `CNI_ARGS` given to the delegate.
    #[serde(default)]
    pub cni_args: String,
    /// Capability args offered to the delegate (filtered per plugin).
    #[serde(default)]
    pub capability_args: Map<String, Value>,
    /// The chain's final result, decoded once at the delegate boundary
    /// (stored in the canonical 1.1.0 form; older entries in the delegate's
    /// version still load). `None` until ADD finished (DEL still runs the
    /// delegate: it may have done part of it).
    #[serde(default)]
    pub result: Option<CniResult>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_name: Option<String>,
    /// The CNI device-info file we created for this attachment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_info_file: Option<PathBuf>,
}

/// The cache record of one plexus ADD.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CacheEntry {
    pub kind: String,
    pub container_id: String,
    /// `CNI_IFNAME` of the plexus call (the cluster network's interface).
    pub ifname: String,
    #[serde(default)]
    pub netns: String,
    /// Version of the plexus config at ADD.
    #[serde(default)]
    pub cni_version: String,
    #[serde(default)]
    pub pod: PodIdentity,
    /// `CNI_PATH` used at ADD, so DEL finds the same delegates.
    #[serde(default)]
    pub cni_path: String,
    /// In ADD order; DEL walks them in reverse.
    pub attachments: Vec<Attachment>,
    /// Free-form extras (kept for forward compatibility).
    #[serde(default, flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// Where cache entries live. The real one is [`FsCacheStore`].
pub trait CacheStore {
    fn load(&self, container_id: &str, ifname: &str) -> Result<Option<CacheEntry>, PlexusError>;
    fn save(&self, entry: &CacheEntry) -> Result<(), PlexusError>;
    /// Succeeds when the entry is already gone.
    fn remove(&self, container_id: &str, ifname: &str) -> Result<(), PlexusError>;
    /// Removes only what writers killed mid-save left for the entry, never
    /// the entry: a DEL that found none must not remove the one a racing
    /// ADD of the same container saved meanwhile.
    fn remove_stale_temps(&self, container_id: &str, ifname: &str) -> Result<(), PlexusError>;
    /// Every entry (for GC); unreadable files are skipped.
    fn list(&self) -> Result<Vec<CacheEntry>, PlexusError>;
}

/// Container IDs and interface names become file names: refuse anything that
/// could escape the cache directory.
fn check_component(what: &str, s: &str) -> Result<(), PlexusError> {
    let ok = !s.is_empty() && s != "." && s != ".." && !s.contains('/') && !s.contains('\0');
    if ok {
        Ok(())
    } else {
        Err(PlexusError::Env(format!("invalid {what} {s:?}")))
    }
}

/// Cache files in a directory: `<dir>/<containerID>-<ifname>.json`, directory
/// 0700 and files 0600 (they hold configs that may carry secrets).
#[derive(Debug, Clone)]
pub struct FsCacheStore {
    dir: PathBuf,
}

impl FsCacheStore {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    fn path(&self, container_id: &str, ifname: &str) -> Result<PathBuf, PlexusError> {
        check_component("container ID", container_id)?;
        check_component("interface name", ifname)?;
        Ok(self.dir.join(format!("{container_id}-{ifname}.json")))
    }
}

/// Writes `bytes` to `path` atomically: a reader sees the old or the new
/// content, never a torn file.
///
/// Not fsynced, as libcni's and Multus' caches are not: the entry has to
/// outlive this process, not the node. A node crash destroys every pod
/// namespace anyway, and DEL treats an entry lost or emptied by the crash
/// like a missing one (config-only fallback). An fsync here cost 0.4 ms on an
/// idle disk and 35 ms behind a busy one, twice per ADD.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), PlexusError> {
    let how = AtomicWrite {
        sync: false,
        mode: Some(0o600),
        create_dir: Some(0o700),
    };
    fsutil::write_atomic(path, bytes, how)
        .map_err(|e| PlexusError::Io(format!("cannot write {}: {e}", path.display())))
}

impl CacheStore for FsCacheStore {
    fn load(&self, container_id: &str, ifname: &str) -> Result<Option<CacheEntry>, PlexusError> {
        let path = self.path(container_id, ifname)?;
        let bytes = match plexus_cni::fsutil::read_regular(
            &path,
            plexus_cni::fsutil::MAX_NODE_FILE_BYTES,
        ) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(PlexusError::Io(format!(
                    "cannot read {}: {e}",
                    path.display()
                )))
            }
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| PlexusError::Decode(format!("corrupt cache file {}: {e}", path.display())))
    }

    fn save(&self, entry: &CacheEntry) -> Result<(), PlexusError> {
        let path = self.path(&entry.container_id, &entry.ifname)?;
        let bytes = serde_json::to_vec_pretty(entry)
            .map_err(|e| PlexusError::Io(format!("cannot encode cache entry: {e}")))?;
        write_atomic(&path, &bytes)
    }

    fn remove(&self, container_id: &str, ifname: &str) -> Result<(), PlexusError> {
        let path = self.path(container_id, ifname)?;
        fsutil::remove_record(&path)
            .map_err(|e| PlexusError::Io(format!("cannot remove {}: {e}", path.display())))
    }

    fn remove_stale_temps(&self, container_id: &str, ifname: &str) -> Result<(), PlexusError> {
        let path = self.path(container_id, ifname)?;
        fsutil::remove_stale_temps(&path)
            .map_err(|e| PlexusError::Io(format!("cannot clean up {}: {e}", path.display())))
    }

    fn list(&self) -> Result<Vec<CacheEntry>, PlexusError> {
        let names = fsutil::json_files(&self.dir)
            .map_err(|e| PlexusError::Io(format!("cannot list {}: {e}", self.dir.display())))?;
        let mut out = Vec::new();
        for p in names {
            if let Ok(bytes) =
                plexus_cni::fsutil::read_regular(&p, plexus_cni::fsutil::MAX_NODE_FILE_BYTES)
            {
                if let Ok(entry) = serde_json::from_slice::<CacheEntry>(&bytes) {
                    out.push(entry);
                }
            }
        }
        Ok(out)
    }
}

/// In-memory store for handler tests.
pub mod testing {
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    use super::{CacheEntry, CacheStore};
    use crate::error::PlexusError;

    /// Keeps entries in a map; `fail_saves` makes every save fail.
    #[derive(Debug, Default)]
    pub struct MemCacheStore {
        entries: Mutex<BTreeMap<(String, String), CacheEntry>>,
        fail_saves: Mutex<bool>,
    }

    impl MemCacheStore {
        pub fn entries(&self) -> Vec<CacheEntry> {
            self.entries
                .lock()
                .map(|m| m.values().cloned().collect())
                .unwrap_or_default()
        }

        pub fn set_fail_saves(&self, fail: bool) {
            if let Ok(mut f) = self.fail_saves.lock() {
                *f = fail;
            }
        }
    }

    impl CacheStore for MemCacheStore {
        fn load(
            &self,
            container_id: &str,
            ifname: &str,
        ) -> Result<Option<CacheEntry>, PlexusError> {
            Ok(self
                .entries
                .lock()
                .ok()
                .and_then(|m| m.get(&(container_id.into(), ifname.into())).cloned()))
        }

        fn save(&self, entry: &CacheEntry) -> Result<(), PlexusError> {
            if self.fail_saves.lock().map(|f| *f).unwrap_or(false) {
                return Err(PlexusError::Io("cache store is read-only".into()));
            }
            if let Ok(mut m) = self.entries.lock() {
                m.insert(
                    (entry.container_id.clone(), entry.ifname.clone()),
                    entry.clone(),
                );
            }
            Ok(())
        }

        fn remove(&self, container_id: &str, ifname: &str) -> Result<(), PlexusError> {
            if let Ok(mut m) = self.entries.lock() {
                m.remove(&(container_id.into(), ifname.into()));
            }
            Ok(())
        }

        fn remove_stale_temps(&self, _: &str, _: &str) -> Result<(), PlexusError> {
            // Saves are atomic in memory: nothing is ever left half-written.
            Ok(())
        }

        fn list(&self) -> Result<Vec<CacheEntry>, PlexusError> {
            Ok(self.entries())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::os::unix::fs::PermissionsExt;

    fn entry(cid: &str) -> CacheEntry {
        CacheEntry {
            kind: CACHE_KIND.into(),
            container_id: cid.into(),
            ifname: "eth0".into(),
            attachments: vec![Attachment {
                network: "default/sriov".into(),
                ifname: "net1".into(),
                conf: serde_json::from_value(
                    json!({"cniVersion":"1.0.0","name":"sriov","plugins":[{"type":"host-device"}]}),
                )
                .unwrap(),
                ..Attachment::default()
            }],
            ..CacheEntry::default()
        }
    }

    #[test]
    fn round_trip_atomic_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsCacheStore::new(dir.path().join("plexus"));
        assert!(store.load("c1", "eth0").unwrap().is_none());
        store.save(&entry("c1")).unwrap();
        store.save(&entry("c2")).unwrap();
        assert_eq!(store.load("c1", "eth0").unwrap(), Some(entry("c1")));
        let path = dir.path().join("plexus/c1-eth0.json");
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            std::fs::metadata(dir.path().join("plexus"))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o700
        );
        let names: Vec<_> = std::fs::read_dir(dir.path().join("plexus"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 2, "no temp files left: {names:?}");
        assert_eq!(store.list().unwrap().len(), 2);
        store.remove("c1", "eth0").unwrap();
        store.remove("c1", "eth0").unwrap();
        assert!(store.load("c1", "eth0").unwrap().is_none());
    }

    #[test]
    fn refuses_path_escapes() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsCacheStore::new(dir.path());
        assert!(store.load("../x", "eth0").is_err());
        assert!(store.load("c", "..").is_err());
        assert!(store.load("", "eth0").is_err());
    }

    #[test]
    fn corrupt_file_is_a_decode_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("c-eth0.json"), b"{").unwrap();
        let store = FsCacheStore::new(dir.path());
        assert!(matches!(
            store.load("c", "eth0"),
            Err(PlexusError::Decode(_))
        ));
        assert!(store.list().unwrap().is_empty());
    }
}
