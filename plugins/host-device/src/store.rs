//! What the device looked like on the host before ADD, kept in
//! `<dataDir>/<containerID>-<ifname>.json` so DEL and GC can put it back as
//! it was found, and per-device locks (`<dataDir>/<key>.lock`) so two ADDs
//! never race for one device.

use std::fs::{File, OpenOptions};
use std::io::ErrorKind;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use nix::fcntl::{Flock, FlockArg};
use plexus_cni::fsutil::{json_files, remove_record, write_atomic, AtomicWrite};
use plexus_cni::MacAddr;
use plexus_sysfs::pci::PciAddr;
use serde::{Deserialize, Serialize};

use crate::error::Error;

/// A host route through the device, enough to re-create it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedRoute {
    pub dst: IpNet,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
    pub table: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<u32>,
    pub scope: u8,
    pub protocol: u8,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefsrc: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advmss: Option<u32>,
}

/// The device as found on the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HostState {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<MacAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pci: Option<PciAddr>,
    pub mtu: u32,
    pub up: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
    #[serde(default)]
    pub addresses: Vec<IpNet>,
    #[serde(default)]
    pub routes: Vec<SavedRoute>,
}

/// One attachment's record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    pub container_id: String,
    pub ifname: String,
    pub netns: String,
    pub host: HostState,
    /// Bound to a userspace driver: reported, never moved.
    #[serde(default)]
    pub userspace: bool,
    /// Restore host addresses and routes on DEL.
    #[serde(default)]
    pub use_interface_network: bool,
}

impl Record {
    /// Whether this record is about the device identified by `mac`/`pci`.
    pub fn same_device(&self, mac: Option<&MacAddr>, pci: Option<&PciAddr>) -> bool {
        (pci.is_some() && self.host.pci.as_ref() == pci)
            || (mac.is_some() && self.host.mac.as_ref() == mac)
    }
}

/// State files under one directory.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

impl Store {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    fn path(&self, container_id: &str, ifname: &str) -> PathBuf {
        self.dir.join(format!("{container_id}-{ifname}.json"))
    }

    fn ensure_dir(&self) -> Result<(), Error> {
        std::fs::create_dir_all(&self.dir).map_err(Error::io(&self.dir))
    }

    /// Writes the record atomically (temp file + rename; not fsynced, like
    /// the plexus cache: it has to outlive the process, not the node).
    pub fn save(&self, r: &Record) -> Result<(), Error> {
        self.ensure_dir()?;
        let path = self.path(&r.container_id, &r.ifname);
        let bytes = serde_json::to_vec_pretty(r).map_err(|e| Error::Io {
            path: path.clone(),
            source: e.into(),
        })?;
        let how = AtomicWrite {
            sync: false,
            mode: None,
            create_dir: None,
        };
        write_atomic(&path, &bytes, how).map_err(Error::io(&path))
    }

    /// The record of an attachment, if any. An unreadable record counts as
    /// absent: DEL must still make progress.
    pub fn load(&self, container_id: &str, ifname: &str) -> Result<Option<Record>, Error> {
        let path = self.path(container_id, ifname);
        match plexus_cni::fsutil::read_regular(&path, plexus_cni::fsutil::MAX_NODE_FILE_BYTES) {
            Ok(b) => Ok(serde_json::from_slice(&b).ok()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::Io { path, source: e }),
        }
    }

    /// Removes a record; absent is fine.
    pub fn remove(&self, container_id: &str, ifname: &str) -> Result<(), Error> {
        let path = self.path(container_id, ifname);
        remove_record(&path).map_err(|source| Error::Io { path, source })
    }

    /// Removes only the temp files killed writers left for this record (a
    /// DEL that found no record must not remove one a racing ADD just saved).
    pub fn remove_stale_temps(&self, container_id: &str, ifname: &str) -> Result<(), Error> {
        let path = self.path(container_id, ifname);
        plexus_cni::fsutil::remove_stale_temps(&path).map_err(|source| Error::Io { path, source })
    }

    /// Every readable record.
    pub fn list(&self) -> Result<Vec<Record>, Error> {
        let files = json_files(&self.dir).map_err(Error::io(&self.dir))?;
        Ok(files
            .iter()
            .filter_map(|p| {
                let bytes =
                    plexus_cni::fsutil::read_regular(p, plexus_cni::fsutil::MAX_NODE_FILE_BYTES)
                        .ok()?;
                serde_json::from_slice(&bytes).ok()
            })
            .collect())
    }

    /// Takes the exclusive lock for device `key` (PCI address, MAC or name),
    /// waiting for a concurrent holder. Released on drop.
    pub fn lock(&self, key: &str) -> Result<DeviceLock, Error> {
        self.ensure_dir()?;
        let safe: String = key
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let path = self.dir.join(format!("{safe}.lock"));
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(Error::io(&path))?;
        let lock = Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, errno)| Error::Io {
            path,
            source: errno.into(),
        })?;
        Ok(DeviceLock { _lock: lock })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// Holds a device lock until dropped.
#[derive(Debug)]
pub struct DeviceLock {
    _lock: Flock<File>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(cid: &str) -> Record {
        Record {
            container_id: cid.into(),
            ifname: "net1".into(),
            netns: "/var/run/netns/x".into(),
            host: HostState {
                name: "ens5".into(),
                mac: Some("02:00:00:00:00:01".parse().unwrap()),
                pci: Some("0000:00:04.0".parse().unwrap()),
                mtu: 9000,
                up: true,
                alias: None,
                addresses: vec!["198.51.100.5/24".parse().unwrap()],
                routes: vec![SavedRoute {
                    dst: "0.0.0.0/0".parse().unwrap(),
                    gateway: Some("198.51.100.1".parse().unwrap()),
                    table: 254,
                    priority: None,
                    scope: 0,
                    protocol: 3,
                    prefsrc: None,
                    mtu: None,
                    advmss: None,
                }],
            },
            userspace: false,
            use_interface_network: true,
        }
    }

    #[test]
    fn save_load_list_remove() {
        let t = tempfile::tempdir().unwrap();
        let s = Store::new(t.path().join("sub"));
        assert_eq!(s.load("c1", "net1").unwrap(), None);
        assert!(s.list().unwrap().is_empty());
        s.save(&record("c1")).unwrap();
        s.save(&record("c2")).unwrap();
        assert_eq!(s.load("c1", "net1").unwrap(), Some(record("c1")));
        let mut ids: Vec<String> = s
            .list()
            .unwrap()
            .into_iter()
            .map(|r| r.container_id)
            .collect();
        ids.sort();
        assert_eq!(ids, ["c1", "c2"]);
        s.remove("c1", "net1").unwrap();
        s.remove("c1", "net1").unwrap();
        assert_eq!(s.load("c1", "net1").unwrap(), None);
        // Only records and locks live there; no temp files are left.
        let _l = s.lock("0000:00:04.0").unwrap();
        let names: Vec<String> = std::fs::read_dir(s.dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(names.iter().all(|n| !n.starts_with('.')), "{names:?}");
    }

    #[test]
    fn same_device_by_pci_or_mac() {
        let r = record("c1");
        assert!(r.same_device(None, Some(&"0000:00:04.0".parse().unwrap())));
        assert!(r.same_device(Some(&"02:00:00:00:00:01".parse().unwrap()), None));
        assert!(!r.same_device(Some(&"02:00:00:00:00:02".parse().unwrap()), None));
        assert!(!r.same_device(None, None));
    }

    #[test]
    fn lock_excludes_a_second_holder() {
        let t = tempfile::tempdir().unwrap();
        let s = Store::new(t.path());
        let first = s.lock("02:00:00:00:00:01").unwrap();
        let path = t.path().join("02_00_00_00_00_01.lock");
        let f = File::open(&path).unwrap();
        assert!(Flock::lock(f, FlockArg::LockExclusiveNonblock).is_err());
        drop(first);
        let f = File::open(&path).unwrap();
        assert!(Flock::lock(f, FlockArg::LockExclusiveNonblock).is_ok());
    }
}
