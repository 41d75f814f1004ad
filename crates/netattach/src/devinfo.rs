//! Device-info files (NPWG device-info spec v1.1.0) under
//! `/var/run/k8s.cni.cncf.io/devinfo`: a device plugin writes
//! `dp/<resource>-<deviceID>-device.json` at Allocate; the meta plugin copies
//! it to `cni/<ns>-<nad>-<containerID>_<ifname>` for the delegate (capability
//! `CNIDeviceInfoFile`), reads it back into network-status, and removes it on
//! DEL. Names match the NAD client so Multus-era device plugins interoperate.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::status::DeviceInfo;

/// Where device-info files live on a node.
pub const DEVINFO_BASE: &str = "/var/run/k8s.cni.cncf.io/devinfo";

/// Device-info file errors, naming the file.
#[derive(Debug, thiserror::Error)]
pub enum DevInfoError {
    #[error("device-info {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("device-info {path}: invalid JSON: {source}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("device-info {0} already exists")]
    Exists(PathBuf),
}

/// `<resource>-<deviceID>-device.json` with `/` replaced by `-` in both.
pub fn dp_file_name(resource_name: &str, device_id: &str) -> String {
    format!(
        "{}-{}-device.json",
        resource_name.replace('/', "-"),
        device_id.replace('/', "-")
    )
}

/// `<ns>-<nad>-<containerID>_<ifname>` from the delegate name `ns/nad`.
pub fn cni_file_name(network: &str, container_id: &str, ifname: &str) -> String {
    format!("{network}-{container_id}_{ifname}").replace('/', "-")
}

/// A device-info tree rooted at [`DEVINFO_BASE`] or, in tests, a temp dir.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevInfoDir {
    root: PathBuf,
}

impl Default for DevInfoDir {
    fn default() -> Self {
        Self::new(DEVINFO_BASE)
    }
}

impl DevInfoDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn dp_path(&self, resource_name: &str, device_id: &str) -> PathBuf {
        self.root
            .join("dp")
            .join(dp_file_name(resource_name, device_id))
    }

    pub fn cni_path(&self, network: &str, container_id: &str, ifname: &str) -> PathBuf {
        self.root
            .join("cni")
            .join(cni_file_name(network, container_id, ifname))
    }

    /// Copies the device plugin's file for `device_id` to the CNI path.
    /// `Ok(None)` when the device plugin wrote none (most do not).
    pub fn copy_dp_to_cni(
        &self,
        resource_name: &str,
        device_id: &str,
        cni_path: &Path,
    ) -> Result<Option<DeviceInfo>, DevInfoError> {
        let Some(info) = load(&self.dp_path(resource_name, device_id))? else {
            return Ok(None);
        };
        // A leftover from a crashed ADD of the same container is replaced.
        remove(cni_path)?;
        save(cni_path, &info)?;
        Ok(Some(info))
    }
}

/// Reads a device-info file; `Ok(None)` if it does not exist.
pub fn load(path: &Path) -> Result<Option<DeviceInfo>, DevInfoError> {
    let bytes =
        match plexus_cni::fsutil::read_regular(path, plexus_cni::fsutil::MAX_NODE_FILE_BYTES) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(DevInfoError::Io {
                    path: path.to_owned(),
                    source,
                })
            }
        };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|source| DevInfoError::Json {
            path: path.to_owned(),
            source,
        })
}

/// Writes a new read-only (0444) device-info file, creating parent dirs.
/// Fails if it exists, as the NAD client does, so two writers never race.
pub fn save(path: &Path, info: &DeviceInfo) -> Result<(), DevInfoError> {
    let io = |source| DevInfoError::Io {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let json = serde_json::to_vec(info).map_err(|source| DevInfoError::Json {
        path: path.to_owned(),
        source,
    })?;
    let mut file = match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o444)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(DevInfoError::Exists(path.to_owned()))
        }
        Err(e) => return Err(io(e)),
    };
    file.write_all(&json).map_err(io)
}

/// Removes a device-info file; absent is fine (DEL must be idempotent).
pub fn remove(path: &Path) -> Result<(), DevInfoError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(DevInfoError::Io {
            path: path.to_owned(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_the_nad_client() {
        assert_eq!(
            dp_file_name("oracle.com/sriov_vnic", "0000:00:05.0"),
            "oracle.com-sriov_vnic-0000:00:05.0-device.json"
        );
        assert_eq!(
            cni_file_name("default/sriov-vnic-1", "abc123", "net1"),
            "default-sriov-vnic-1-abc123_net1"
        );
        let dir = DevInfoDir::default();
        assert_eq!(
            dir.cni_path("default/n", "c", "net1"),
            Path::new("/var/run/k8s.cni.cncf.io/devinfo/cni/default-n-c_net1")
        );
    }

    #[test]
    fn save_load_copy_remove() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DevInfoDir::new(tmp.path());
        let cni = dir.cni_path("default/n", "cid", "net1");
        assert_eq!(
            dir.copy_dp_to_cni("oracle.com/vnic", "0000:00:05.0", &cni)
                .unwrap(),
            None
        );

        let info = DeviceInfo::pci("0000:00:05.0", Some("0000:00:04.0"));
        let dp = dir.dp_path("oracle.com/vnic", "0000:00:05.0");
        save(&dp, &info).unwrap();
        assert!(matches!(save(&dp, &info), Err(DevInfoError::Exists(_))));
        let text = std::fs::read_to_string(&dp).unwrap();
        assert_eq!(
            text,
            r#"{"type":"pci","version":"1.1.0","pci":{"pci-address":"0000:00:05.0","pf-pci-address":"0000:00:04.0"}}"#
        );

        assert_eq!(
            dir.copy_dp_to_cni("oracle.com/vnic", "0000:00:05.0", &cni)
                .unwrap(),
            Some(info.clone())
        );
        // A retried ADD replaces the stale copy.
        assert_eq!(
            dir.copy_dp_to_cni("oracle.com/vnic", "0000:00:05.0", &cni)
                .unwrap(),
            Some(info.clone())
        );
        assert_eq!(load(&cni).unwrap(), Some(info));
        remove(&cni).unwrap();
        remove(&cni).unwrap();
        assert_eq!(load(&cni).unwrap(), None);

        std::fs::write(tmp.path().join("bad"), "{").unwrap();
        assert!(matches!(
            load(&tmp.path().join("bad")),
            Err(DevInfoError::Json { .. })
        ));
    }
}
