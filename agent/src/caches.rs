//! The CNI plugins' records on the node, as the agent reads them.
//!
//! Two writers keep state the agent needs: host-device (one record per
//! attachment: which host device went into which namespace) and the meta
//! plugin (one cache entry per sandbox: which pod it is). Their types and
//! default directories belong to those crates and are imported here, never
//! copied, so a renamed field cannot silently turn into "no record".
//!
//! A pass reads each directory once into a [`CniCaches`] snapshot; repair,
//! the in-pod MAC set and the inventory's pod claims are all derived from
//! it. Files that do not parse as the writer's type are skipped (and so
//! never collected: the agent does not delete what it cannot read).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

pub use plexus::cache::CacheEntry;
pub use plexus::config::DEFAULT_CNI_DIR as META_CACHE_DIR;
pub use plexus_host_device::config::DEFAULT_DATA_DIR as HOST_DEVICE_DIR;
pub use plexus_host_device::store::Record as HostDeviceRecord;
use serde::de::DeserializeOwned;

use plexus_imds::normalize_mac;

use crate::inventory::{InventoryError, PodClaim, PodRef};

/// One parsed file and what the file system says about it.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored<T> {
    /// The file.
    pub path: PathBuf,
    /// Time since it was last written.
    pub age: Duration,
    /// Whether the network namespace it names still exists.
    pub netns_alive: bool,
    /// Its content, in the writer's type.
    pub record: T,
}

/// Both caches, read once.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CniCaches {
    /// host-device's records, sorted by path.
    pub host_device: Vec<Stored<HostDeviceRecord>>,
    /// The meta plugin's entries, sorted by path.
    pub meta: Vec<Stored<CacheEntry>>,
}

/// Where the two caches live (the writers' defaults unless overridden).
#[derive(Debug, Clone)]
pub struct CniCacheLocations {
    /// host-device's data dir.
    pub host_device_dir: PathBuf,
    /// The meta plugin's cache dir.
    pub plexus_dir: PathBuf,
}

impl Default for CniCacheLocations {
    fn default() -> Self {
        Self {
            host_device_dir: PathBuf::from(HOST_DEVICE_DIR),
            plexus_dir: PathBuf::from(META_CACHE_DIR),
        }
    }
}

impl CniCacheLocations {
    /// Reads both directories; a missing one is empty.
    pub fn read(&self) -> Result<CniCaches, InventoryError> {
        Ok(CniCaches {
            host_device: read_dir(&self.host_device_dir, |r: &HostDeviceRecord| &r.netns)?,
            meta: read_dir(&self.plexus_dir, |e: &CacheEntry| &e.netns)?,
        })
    }
}

/// Every `*.json` in `dir` that parses as `T`, with age and liveness.
pub fn read_dir<T: DeserializeOwned>(
    dir: &Path,
    netns_of: impl Fn(&T) -> &str,
) -> Result<Vec<Stored<T>>, InventoryError> {
    let files = plexus_cni::fsutil::json_files(dir).map_err(|source| InventoryError::Cache {
        path: dir.to_path_buf(),
        source,
    })?;
    Ok(files
        .into_iter()
        .filter_map(|path| {
            let record: T = read_json(&path)?;
            let netns = netns_of(&record);
            let netns_alive = !netns.is_empty() && Path::new(netns).exists();
            let age = std::fs::metadata(&path)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| SystemTime::now().duration_since(t).ok())
                .unwrap_or_default();
            Some(Stored {
                path,
                age,
                netns_alive,
                record,
            })
        })
        .collect())
}

fn read_json<T: DeserializeOwned>(path: &Path) -> Option<T> {
    let bytes = std::fs::read(path).ok()?;
    match serde_json::from_slice(&bytes) {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::debug!(path = %path.display(), error = %e, "skipping unreadable CNI cache file");
            None
        }
    }
}

impl CniCaches {
    /// MACs host-device records as inside live pods.
    pub fn in_pod_macs(&self) -> BTreeSet<String> {
        self.host_device
            .iter()
            .filter(|s| s.netns_alive)
            .filter_map(|s| s.record.host.mac.as_deref().map(normalize_mac))
            .collect()
    }

    /// The snapshot without the files at `paths` (after repair removed them).
    pub fn without(mut self, paths: &BTreeSet<PathBuf>) -> Self {
        self.host_device.retain(|s| !paths.contains(&s.path));
        self.meta.retain(|s| !paths.contains(&s.path));
        self
    }

    /// host-device's records joined by container ID with the meta plugin's
    /// pod names: which device each pod holds.
    pub fn pod_claims(&self) -> Vec<PodClaim> {
        let pods: BTreeMap<&str, String> = self
            .meta
            .iter()
            .map(|s| &s.record)
            .filter(|e| !e.pod.name.is_empty())
            .map(|e| {
                let who = format!("{}/{}", e.pod.namespace, e.pod.name);
                (e.container_id.as_str(), who)
            })
            .collect();
        self.host_device
            .iter()
            .map(|s| {
                let r = &s.record;
                let non_empty = |v: &str| Some(v.to_string()).filter(|n| !n.is_empty());
                PodClaim {
                    pci: r.host.pci,
                    mac: r.host.mac.as_deref().map(normalize_mac),
                    host_ifname: non_empty(&r.host.name),
                    pod: PodRef {
                        pod: pods.get(r.container_id.as_str()).cloned(),
                        container_id: r.container_id.clone(),
                        ifname: non_empty(&r.ifname),
                        netns: non_empty(&r.netns),
                    },
                }
            })
            .collect()
    }
}
