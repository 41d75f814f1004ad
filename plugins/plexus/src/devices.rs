//! Device IDs for NADs annotated with `k8s.v1.cni.cncf.io/resourceName`:
//! which devices the kubelet allocated to the pod (PodResources API), handed
//! out in annotation order like Multus (`DeviceIDs[entry.Index++]`), and the
//! device-info files shared with device plugins
//! (`/var/run/k8s.cni.cncf.io/devinfo/{dp,cni}`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use plexus_netattach::DeviceInfo;

/// Devices allocated to a pod, per resource name.
pub trait DeviceIdSource {
    fn allocated(
        &self,
        socket: &Path,
        timeout: Duration,
        namespace: &str,
        pod: &str,
    ) -> Result<Vec<(String, Vec<String>)>, String>;
}

/// The kubelet's PodResources socket. A tokio runtime is started only here,
/// so calls without resourceName NADs stay runtime-free.
#[derive(Debug, Clone, Copy, Default)]
pub struct KubeletDevices;

impl DeviceIdSource for KubeletDevices {
    fn allocated(
        &self,
        socket: &Path,
        timeout: Duration,
        namespace: &str,
        pod: &str,
    ) -> Result<Vec<(String, Vec<String>)>, String> {
        plexus_kubelet_api::PodResourcesClient::new(socket, timeout)
            .get_allocated_devices(namespace, pod)
            .map_err(|e| e.to_string())
    }
}

/// Hands out each resource's device IDs in order, one per network.
#[derive(Debug, Default)]
pub struct DeviceAllocator {
    map: HashMap<String, (Vec<String>, usize)>,
}

impl DeviceAllocator {
    pub fn new(allocated: Vec<(String, Vec<String>)>) -> Self {
        Self {
            map: allocated
                .into_iter()
                .map(|(r, ids)| (r, (ids, 0)))
                .collect(),
        }
    }

    /// The next unused device of `resource`, if any is left.
    pub fn take(&mut self, resource: &str) -> Option<String> {
        let (ids, next) = self.map.get_mut(resource)?;
        let id = ids.get(*next).cloned()?;
        *next += 1;
        Some(id)
    }
}

/// `dp/<resource>-<device>-device.json`, `/` replaced by `-` (device plugin side).
pub fn dp_device_info_path(base: &Path, resource: &str, device_id: &str) -> PathBuf {
    base.join("dp").join(format!(
        "{}-{}-device.json",
        resource.replace('/', "-"),
        device_id.replace('/', "-")
    ))
}

/// `cni/<ns>-<nad>-<containerID>_<ifname>` (Multus' CNI device-info file).
pub fn cni_device_info_path(
    base: &Path,
    network: &str,
    container_id: &str,
    ifname: &str,
) -> PathBuf {
    base.join("cni").join(format!(
        "{}-{container_id}_{ifname}",
        network.replace('/', "-")
    ))
}

/// Copies the device plugin's device-info to the CNI file for this
/// attachment (if the device plugin wrote one). Best effort: a missing DP
/// file is normal for device plugins that do not write device-info.
pub fn copy_dp_device_info(dp: &Path, cni: &Path) -> Result<bool, String> {
    let bytes = match plexus_cni::fsutil::read_regular(dp, plexus_cni::fsutil::MAX_NODE_FILE_BYTES)
    {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(format!("cannot read {}: {e}", dp.display())),
    };
    crate::cache::write_atomic(cni, &bytes).map_err(|e| e.to_string())?;
    Ok(true)
}

/// Reads a device-info file; `None` when absent or unreadable JSON.
pub fn read_device_info(path: &Path) -> Option<DeviceInfo> {
    let bytes =
        plexus_cni::fsutil::read_regular(path, plexus_cni::fsutil::MAX_NODE_FILE_BYTES).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Whether `s` looks like a PCI address (`0000:00:04.0`), so a device-info
/// can be synthesized when no device plugin wrote one.
pub fn is_pci_address(s: &str) -> bool {
    let parts: Vec<&str> = s.split([':', '.']).collect();
    let hex = |p: &str, n: usize| p.len() == n && p.chars().all(|c| c.is_ascii_hexdigit());
    parts.len() == 4 && hex(parts[0], 4) && hex(parts[1], 2) && hex(parts[2], 2) && hex(parts[3], 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocator_hands_out_in_order() {
        let mut a = DeviceAllocator::new(vec![(
            "oracle.com/vnic".into(),
            vec!["0000:00:04.0".into(), "0000:00:05.0".into()],
        )]);
        assert_eq!(a.take("oracle.com/vnic").as_deref(), Some("0000:00:04.0"));
        assert_eq!(a.take("oracle.com/vnic").as_deref(), Some("0000:00:05.0"));
        assert_eq!(a.take("oracle.com/vnic"), None);
        assert_eq!(a.take("intel.com/x"), None);
    }

    #[test]
    fn multus_file_names() {
        let base = Path::new("/var/run/k8s.cni.cncf.io/devinfo");
        assert_eq!(
            dp_device_info_path(base, "intel.com/sriov", "0000:00:04.0"),
            PathBuf::from(
                "/var/run/k8s.cni.cncf.io/devinfo/dp/intel.com-sriov-0000:00:04.0-device.json"
            )
        );
        assert_eq!(
            cni_device_info_path(base, "default/sriov-net", "abc", "net1"),
            PathBuf::from("/var/run/k8s.cni.cncf.io/devinfo/cni/default-sriov-net-abc_net1")
        );
    }

    #[test]
    fn pci_addresses() {
        assert!(is_pci_address("0000:00:04.0"));
        assert!(is_pci_address("0000:af:1f.7"));
        assert!(!is_pci_address("ens5"));
        assert!(!is_pci_address("00:04.0"));
    }

    #[test]
    fn copy_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let dp = dp_device_info_path(dir.path(), "oracle.com/vnic", "0000:00:04.0");
        let cni = cni_device_info_path(dir.path(), "default/vnic", "c1", "net1");
        assert_eq!(copy_dp_device_info(&dp, &cni), Ok(false));
        std::fs::create_dir_all(dp.parent().unwrap()).unwrap();
        std::fs::write(
            &dp,
            br#"{"type":"pci","version":"1.1.0","pci":{"pci-address":"0000:00:04.0"}}"#,
        )
        .unwrap();
        assert_eq!(copy_dp_device_info(&dp, &cni), Ok(true));
        let info = read_device_info(&cni).unwrap();
        assert_eq!(info.type_, "pci");
    }
}
