//! PCI addresses and the sysfs links between a PCI function, its kernel
//! driver and its network devices.
//!
//! Every function takes `root` ("/" in production, a fixture dir in tests)
//! and reads `root/sys/...`, following the symlinks as the kernel lays them
//! out: `sys/bus/pci/devices/<addr>` -> `../../../devices/pci0000:00/<addr>`,
//! `.../<addr>/driver` -> `.../drivers/<name>`, `sys/class/net/<if>/device`
//! -> the PCI function (or a `virtioN` child of it).

use std::fmt;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::str::FromStr;

/// Kernel drivers that hand a function to userspace (DPDK and friends): such
/// a device has no netdev to move, only its PCI address to report.
const USERSPACE_DRIVERS: &[&str] = &["vfio-pci", "uio_pci_generic", "igb_uio"];

/// Errors naming the address or path involved.
#[derive(Debug, thiserror::Error)]
pub enum PciError {
    /// Not `[dddd:]bb:dd.f` in hex.
    #[error("invalid PCI address {0:?} (expected e.g. 0000:00:04.0)")]
    InvalidAddr(String),
    /// `kernelpath` must be an absolute path under /sys/devices/.
    #[error("invalid kernelpath {0:?}: must be an absolute path under /sys/devices/")]
    InvalidKernelPath(String),
    /// The device (or netdev) is not present in sysfs.
    #[error("{0} not found in sysfs")]
    NotFound(String),
    /// The device exists but has no network interface (e.g. bound to vfio-pci).
    #[error("no network interface under {0}")]
    NoNetdev(PathBuf),
    /// Reading sysfs failed.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

type Result<T> = std::result::Result<T, PciError>;

/// A PCI function address, `domain:bus:device.function`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PciAddr {
    pub domain: u32,
    pub bus: u8,
    pub device: u8,
    pub function: u8,
}

impl FromStr for PciAddr {
    type Err = PciError;

    /// Accepts `0000:00:04.0` and the short form `00:04.0` (domain 0).
    fn from_str(s: &str) -> Result<Self> {
        let bad = || PciError::InvalidAddr(s.to_string());
        let hex = |p: &str, max_len: usize| -> Result<u32> {
            if p.is_empty() || p.len() > max_len || !p.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(bad());
            }
            u32::from_str_radix(p, 16).map_err(|_| bad())
        };
        let (bdf, func) = s.rsplit_once('.').ok_or_else(bad)?;
        let parts: Vec<&str> = bdf.split(':').collect();
        let (domain, bus, dev) = match parts.as_slice() {
            [d, b, v] => (hex(d, 8)?, hex(b, 2)?, hex(v, 2)?),
            [b, v] => (0, hex(b, 2)?, hex(v, 2)?),
            _ => return Err(bad()),
        };
        let function = hex(func, 1)?;
        if dev > 0x1f || function > 7 {
            return Err(bad());
        }
        Ok(PciAddr {
            domain,
            bus: bus as u8,
            device: dev as u8,
            function: function as u8,
        })
    }
}

impl fmt::Display for PciAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04x}:{:02x}:{:02x}.{:x}",
            self.domain, self.bus, self.device, self.function
        )
    }
}

impl serde::Serialize for PciAddr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for PciAddr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

fn sys(root: &Path, rel: &str) -> PathBuf {
    sysfs_of_root(root).join(rel)
}

/// Where sysfs is under `root`: `root/sys`. The one convention of this
/// crate and of every flag or config naming a root (the agent's
/// `--host-root`, the `vnic` plugin's `sysfsRoot`): a filesystem root, `/`
/// on the host, `/host` in the DaemonSet (host `/sys` mounted at
/// `/host/sys`), a temp dir in tests.
pub fn sysfs_of_root(root: &Path) -> PathBuf {
    root.join("sys")
}

/// The root a sysfs mount point belongs to: `/sys` -> `/`, `/host/sys` ->
/// `/host`, `sys` -> `.`. `None` unless the last component is `sys`: only
/// then do [`sysfs_of_root`] and the kernel's relative symlinks agree.
pub fn root_of_sysfs_mount(mount: &Path) -> Option<PathBuf> {
    if mount.file_name()? != "sys" {
        return None;
    }
    Some(match mount.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    })
}

fn device_dir(root: &Path, addr: &PciAddr) -> PathBuf {
    sys(root, "bus/pci/devices").join(addr.to_string())
}

/// Whether the PCI function exists.
pub fn pci_exists(root: &Path, addr: &PciAddr) -> bool {
    device_dir(root, addr).exists()
}

/// Sorted entry names of `dir`; an absent dir is empty.
fn names_in(dir: &Path) -> Result<Vec<String>> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(PciError::Io {
                path: dir.to_path_buf(),
                source,
            })
        }
    };
    let mut names: Vec<String> = rd
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    Ok(names)
}

/// Network interfaces of a PCI function: `<dev>/net/*`, or for virtio-net
/// `<dev>/virtio*/net/*`. Empty when the function has none (userspace
/// driver, or no driver bound).
pub fn netdevs_of_pci(root: &Path, addr: &PciAddr) -> Result<Vec<String>> {
    let dir = device_dir(root, addr);
    if !dir.exists() {
        return Err(PciError::NotFound(format!("PCI device {addr}")));
    }
    let direct = names_in(&dir.join("net"))?;
    if !direct.is_empty() {
        return Ok(direct);
    }
    let mut out = Vec::new();
    for child in names_in(&dir)? {
        if child.starts_with("virtio") {
            out.extend(names_in(&dir.join(&child).join("net"))?);
        }
    }
    Ok(out)
}

/// The PCI function behind a netdev, from `class/net/<name>/device`. `None`
/// for virtual devices (no `device` link) and non-PCI buses.
pub fn pci_of_netdev(root: &Path, name: &str) -> Result<Option<PciAddr>> {
    let class = sys(root, "class/net").join(name);
    if std::fs::symlink_metadata(&class).is_err() {
        return Err(PciError::NotFound(format!("network interface {name:?}")));
    }
    let link = class.join("device");
    let real = match std::fs::canonicalize(&link) {
        Ok(p) => p,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(PciError::Io { path: link, source }),
    };
    // The device itself, or (virtio) its parent, is the PCI function.
    Ok(real
        .ancestors()
        .take(2)
        .filter_map(|p| p.file_name()?.to_str()?.parse().ok())
        .next())
}

/// The kernel driver bound to a PCI function, or `None` if unbound.
pub fn driver_of_pci(root: &Path, addr: &PciAddr) -> Result<Option<String>> {
    let dir = device_dir(root, addr);
    if !dir.exists() {
        return Err(PciError::NotFound(format!("PCI device {addr}")));
    }
    let link = dir.join("driver");
    match std::fs::read_link(&link) {
        Ok(target) => Ok(target
            .file_name()
            .and_then(|n| n.to_str())
            .map(str::to_string)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(PciError::Io { path: link, source }),
    }
}

/// The IOMMU group of a PCI function (`<dev>/iommu_group` ->
/// `.../kernel/iommu_groups/<n>`), which names `/dev/vfio/<n>` for a
/// vfio-bound VF; `None` without an IOMMU.
pub fn iommu_group(root: &Path, addr: &PciAddr) -> Option<String> {
    let link = std::fs::read_link(device_dir(root, addr).join("iommu_group")).ok()?;
    Some(link.file_name()?.to_str()?.to_string())
}

/// Whether `driver` hands the device to userspace (vfio-pci, uio).
pub fn is_userspace_driver(driver: &str) -> bool {
    USERSPACE_DRIVERS.contains(&driver)
}

/// The first network interface under a device path such as
/// `/sys/devices/pci0000:00/0000:00:04.0` (the reference's `kernelpath`).
pub fn netdev_of_kernelpath(root: &Path, path: &str) -> Result<String> {
    let p = Path::new(path);
    let valid = p.starts_with("/sys/devices/")
        && p.components().count() > 3
        && p.components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
    if !valid {
        return Err(PciError::InvalidKernelPath(path.to_string()));
    }
    let dir = root.join(p.strip_prefix("/").unwrap_or(p));
    if !dir.exists() {
        return Err(PciError::NotFound(format!("kernelpath {path}")));
    }
    let net = dir.join("net");
    names_in(&net)?
        .into_iter()
        .next()
        .ok_or(PciError::NoNetdev(net))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::symlink;

    /// A small sysfs: a NIC VF with a netdev, a virtio-net device, a VF bound
    /// to vfio-pci, and a veth.
    fn fixture() -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        let devs = r.join("sys/devices/pci0000:00");
        let bus = r.join("sys/bus/pci/devices");
        let drivers = r.join("sys/bus/pci/drivers");
        let class = r.join("sys/class/net");
        for d in [
            &bus,
            &class,
            &drivers.join("mlx5_core"),
            &drivers.join("vfio-pci"),
        ] {
            fs::create_dir_all(d).unwrap();
        }
        let dev = |addr: &str, driver: Option<&str>| {
            fs::create_dir_all(devs.join(addr)).unwrap();
            symlink(
                format!("../../../devices/pci0000:00/{addr}"),
                bus.join(addr),
            )
            .unwrap();
            if let Some(d) = driver {
                symlink(
                    format!("../../../bus/pci/drivers/{d}"),
                    devs.join(addr).join("driver"),
                )
                .unwrap();
            }
        };
        dev("0000:00:04.0", Some("mlx5_core"));
        fs::create_dir_all(devs.join("0000:00:04.0/net/ens5")).unwrap();
        symlink(
            "../../devices/pci0000:00/0000:00:04.0/net/ens5",
            class.join("ens5"),
        )
        .unwrap();
        symlink(
            "../../../0000:00:04.0",
            devs.join("0000:00:04.0/net/ens5/device"),
        )
        .unwrap();

        dev("0000:00:03.0", None);
        fs::create_dir_all(devs.join("0000:00:03.0/virtio0/net/ens3")).unwrap();
        symlink(
            "../../devices/pci0000:00/0000:00:03.0/virtio0/net/ens3",
            class.join("ens3"),
        )
        .unwrap();
        symlink(
            "../../../virtio0",
            devs.join("0000:00:03.0/virtio0/net/ens3/device"),
        )
        .unwrap();

        dev("0000:00:05.0", Some("vfio-pci"));

        fs::create_dir_all(r.join("sys/devices/virtual/net/veth0")).unwrap();
        symlink("../../devices/virtual/net/veth0", class.join("veth0")).unwrap();
        t
    }

    fn addr(s: &str) -> PciAddr {
        s.parse().unwrap()
    }

    #[test]
    fn parses_and_normalises_addresses() {
        assert_eq!(addr("0000:00:04.0").to_string(), "0000:00:04.0");
        assert_eq!(addr("00:04.0").to_string(), "0000:00:04.0");
        assert_eq!(addr("0001:AF:1f.7").to_string(), "0001:af:1f.7");
        for bad in [
            "",
            "00:04",
            "0000:00:20.0",
            "0000:00:04.8",
            "0000:000:04.0",
            "x:00:04.0",
            "0000:00:04.0.1",
        ] {
            let e = bad.parse::<PciAddr>().unwrap_err();
            assert!(e.to_string().contains(&format!("{bad:?}")), "{e}");
        }
    }

    #[test]
    fn netdevs_direct_and_virtio() {
        let t = fixture();
        let r = t.path();
        assert_eq!(netdevs_of_pci(r, &addr("0000:00:04.0")).unwrap(), ["ens5"]);
        assert_eq!(netdevs_of_pci(r, &addr("00:03.0")).unwrap(), ["ens3"]);
        assert!(netdevs_of_pci(r, &addr("0000:00:05.0")).unwrap().is_empty());
        let e = netdevs_of_pci(r, &addr("0000:00:09.0")).unwrap_err();
        assert!(matches!(e, PciError::NotFound(_)), "{e}");
        assert!(pci_exists(r, &addr("0000:00:05.0")));
        assert!(!pci_exists(r, &addr("0000:00:09.0")));
    }

    #[test]
    fn pci_of_netdev_follows_device_link() {
        let t = fixture();
        let r = t.path();
        assert_eq!(
            pci_of_netdev(r, "ens5").unwrap(),
            Some(addr("0000:00:04.0"))
        );
        assert_eq!(
            pci_of_netdev(r, "ens3").unwrap(),
            Some(addr("0000:00:03.0"))
        );
        assert_eq!(pci_of_netdev(r, "veth0").unwrap(), None);
        assert!(matches!(
            pci_of_netdev(r, "nope"),
            Err(PciError::NotFound(_))
        ));
    }

    #[test]
    fn root_convention_round_trips() {
        for (mount, root) in [
            ("/sys", "/"),
            ("/host/sys", "/host"),
            ("/host/sys/", "/host"),
            ("sys", "."),
        ] {
            let r = root_of_sysfs_mount(Path::new(mount)).unwrap();
            assert_eq!(r, Path::new(root), "{mount}");
            assert_eq!(sysfs_of_root(&r), Path::new(root).join("sys"), "{mount}");
        }
        for other in ["/", "/host", "/sysfs", "/sys/bus", ""] {
            assert_eq!(root_of_sysfs_mount(Path::new(other)), None, "{other}");
        }
    }

    #[test]
    fn iommu_group_from_link() {
        let t = fixture();
        let r = t.path();
        symlink(
            "../../../kernel/iommu_groups/12",
            r.join("sys/devices/pci0000:00/0000:00:05.0/iommu_group"),
        )
        .unwrap();
        assert_eq!(iommu_group(r, &addr("0000:00:05.0")).as_deref(), Some("12"));
        assert_eq!(iommu_group(r, &addr("0000:00:04.0")), None);
        assert_eq!(iommu_group(r, &addr("0000:00:09.0")), None);
    }

    #[test]
    fn drivers() {
        let t = fixture();
        let r = t.path();
        assert_eq!(
            driver_of_pci(r, &addr("0000:00:04.0")).unwrap().as_deref(),
            Some("mlx5_core")
        );
        assert_eq!(
            driver_of_pci(r, &addr("0000:00:05.0")).unwrap().as_deref(),
            Some("vfio-pci")
        );
        assert_eq!(driver_of_pci(r, &addr("0000:00:03.0")).unwrap(), None);
        assert!(is_userspace_driver("vfio-pci"));
        assert!(is_userspace_driver("igb_uio"));
        assert!(is_userspace_driver("uio_pci_generic"));
        assert!(!is_userspace_driver("mlx5_core"));
    }

    #[test]
    fn kernelpath() {
        let t = fixture();
        let r = t.path();
        assert_eq!(
            netdev_of_kernelpath(r, "/sys/devices/pci0000:00/0000:00:04.0").unwrap(),
            "ens5"
        );
        for bad in [
            "sys/devices/x",
            "/sys/class/net/ens5",
            "/sys/devices/../class",
            "/sys/devices/",
        ] {
            assert!(
                matches!(
                    netdev_of_kernelpath(r, bad),
                    Err(PciError::InvalidKernelPath(_))
                ),
                "{bad}"
            );
        }
        assert!(matches!(
            netdev_of_kernelpath(r, "/sys/devices/pci0000:00/0000:00:05.0"),
            Err(PciError::NoNetdev(_))
        ));
        assert!(matches!(
            netdev_of_kernelpath(r, "/sys/devices/pci0000:00/0000:00:07.0"),
            Err(PciError::NotFound(_))
        ));
    }
}
