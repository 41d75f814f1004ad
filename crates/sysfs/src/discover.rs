//! Discovery of network PCI functions and their netdevs from sysfs.
//!
//! Rules (documented in `docs/agent-discovery.md`):
//! - a PCI function is a network device when its class is `02xxxx`
//!   (network controller), its ID is a known VF, or it has a netdev;
//! - it is a VF when it has a `physfn` link (bare metal) or a known VF PCI ID
//!   (inside a VM there is no `physfn`); a PF when it has `virtfn*` links or
//!   `sriov_totalvfs > 0`; otherwise a plain NIC (e.g. the virtio primary);
//! - a function bound to vfio-pci/uio has no netdev and is reported as
//!   userspace-bound; one with a kernel driver but no visible netdev usually
//!   means its netdev lives in another network namespace (a pod);
//! - MACs are lower-case; a missing or all-zero `address` is no MAC;
//! - virtual netdevs (no `device` link: lo, veth, bridges) are skipped.

use std::path::{Path, PathBuf};

use plexus_cni::MacAddr;
use serde::Serialize;

use crate::pci::{self, PciAddr, PciError};
use crate::vfids::known_vf;

/// Everything found under one sysfs root, sorted by PCI address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Discovery {
    /// Network PCI functions.
    pub functions: Vec<PciFunction>,
}

/// One network PCI function.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PciFunction {
    /// PCI address.
    pub pci: PciAddr,
    /// Vendor ID, 4 lower-case hex digits (`15b3`).
    pub vendor: String,
    /// Device ID, 4 lower-case hex digits (`101e`).
    pub device: String,
    /// Class code, 6 hex digits (`020000`), when readable.
    pub class: Option<String>,
    /// Bound kernel driver.
    pub driver: Option<String>,
    /// How the function is bound.
    pub binding: Binding,
    /// NUMA node; `None` when the kernel reports -1 or nothing.
    pub numa_node: Option<u32>,
    /// SR-IOV role.
    pub role: Role,
    /// Model name when the ID is a known VF.
    pub vf_model: Option<String>,
    /// Netdevs visible in this namespace, sorted by name.
    pub netdevs: Vec<NetDev>,
}

/// Driver binding of a function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Binding {
    /// A kernel network driver.
    Kernel,
    /// vfio-pci / uio: owned by userspace (DPDK), no netdev.
    Userspace,
    /// No driver bound.
    Unbound,
}

/// SR-IOV role of a function.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Role {
    /// Physical function with its VFs (`virtfn*`).
    Pf {
        /// VF addresses in `virtfnN` order.
        vfs: Vec<PciAddr>,
    },
    /// Virtual function; `pf` is known only on bare metal (`physfn`).
    Vf {
        /// The parent PF when visible.
        pf: Option<PciAddr>,
    },
    /// Neither (e.g. a virtio NIC).
    Nic,
}

/// One network interface of a function.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NetDev {
    /// Interface name in this namespace.
    pub name: String,
    /// MAC; `None` when absent, all zeros or not 6 bytes.
    pub mac: Option<MacAddr>,
    /// `operstate` (`up`, `down`, …).
    pub operstate: Option<String>,
    /// MTU.
    pub mtu: Option<u32>,
}

impl PciFunction {
    /// True for a VF (by `physfn` or known ID).
    pub fn is_vf(&self) -> bool {
        matches!(self.role, Role::Vf { .. })
    }

    /// True when any netdev has `mac`.
    pub fn has_mac(&self, mac: &MacAddr) -> bool {
        self.netdevs.iter().any(|n| n.mac.as_ref() == Some(mac))
    }

    /// The first netdev, if any.
    pub fn netdev(&self) -> Option<&NetDev> {
        self.netdevs.first()
    }
}

impl Discovery {
    /// The function at `pci`.
    pub fn function(&self, pci: &PciAddr) -> Option<&PciFunction> {
        self.functions.iter().find(|f| &f.pci == pci)
    }

    /// Functions owning a netdev with `mac` (0..n: VFs may share a MAC).
    pub fn by_mac(&self, mac: &MacAddr) -> Vec<&PciFunction> {
        self.functions.iter().filter(|f| f.has_mac(mac)).collect()
    }

    /// The function owning netdev `name`.
    pub fn by_netdev(&self, name: &str) -> Option<&PciFunction> {
        self.functions
            .iter()
            .find(|f| f.netdevs.iter().any(|n| n.name == name))
    }
}

fn sys(root: &Path, rel: &str) -> PathBuf {
    pci::sysfs_of_root(root).join(rel)
}

/// A trimmed sysfs attribute; `None` when missing or unreadable (some
/// attributes fail with EINVAL on some drivers — absence, not an error).
fn attr(path: &Path) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

fn hex_id(path: &Path) -> Option<String> {
    attr(path).map(|s| s.trim_start_matches("0x").to_ascii_lowercase())
}

fn link_addr(path: &Path) -> Option<PciAddr> {
    std::fs::read_link(path)
        .ok()?
        .file_name()?
        .to_str()?
        .parse()
        .ok()
}

/// Scans `root/sys` for network PCI functions; `root` is a filesystem root
/// (`/`, or `/host` where the host's `/sys` is mounted at `/host/sys`), not
/// the sysfs mount itself: see [`pci::sysfs_of_root`].
pub fn discover(root: &Path) -> Result<Discovery, PciError> {
    let dir = sys(root, "bus/pci/devices");
    let entries = match std::fs::read_dir(&dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Discovery {
                functions: Vec::new(),
            })
        }
        Err(source) => return Err(PciError::Io { path: dir, source }),
    };
    let mut addrs: Vec<PciAddr> = entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    addrs.sort();
    let mut functions = Vec::new();
    for addr in addrs {
        let f = pci_function(root, &addr)?;
        let network_class = f.class.as_deref().is_some_and(|c| c.starts_with("02"));
        if network_class || f.vf_model.is_some() || !f.netdevs.is_empty() {
            functions.push(f);
        }
    }
    Ok(Discovery { functions })
}

/// Reads one PCI function (any class).
pub fn pci_function(root: &Path, addr: &PciAddr) -> Result<PciFunction, PciError> {
    let dir = sys(root, "bus/pci/devices").join(addr.to_string());
    if !dir.exists() {
        return Err(PciError::NotFound(format!("PCI device {addr}")));
    }
    let vendor = hex_id(&dir.join("vendor")).unwrap_or_default();
    let device = hex_id(&dir.join("device")).unwrap_or_default();
    let class = hex_id(&dir.join("class"));
    let driver = pci::driver_of_pci(root, addr)?;
    let binding = match driver.as_deref() {
        None => Binding::Unbound,
        Some(d) if pci::is_userspace_driver(d) => Binding::Userspace,
        Some(_) => Binding::Kernel,
    };
    let numa_node = attr(&dir.join("numa_node")).and_then(|s| s.parse::<u32>().ok());
    let known = match (
        u16::from_str_radix(&vendor, 16),
        u16::from_str_radix(&device, 16),
    ) {
        (Ok(v), Ok(d)) => known_vf(v, d),
        _ => None,
    };
    let role = role_of(&dir, known.is_some())?;
    let mut netdevs = Vec::new();
    for name in pci::netdevs_of_pci(root, addr)? {
        netdevs.push(netdev_info(root, &name)?);
    }
    Ok(PciFunction {
        pci: *addr,
        vendor,
        device,
        class,
        driver,
        binding,
        numa_node,
        role,
        vf_model: known.map(|k| k.model.to_string()),
        netdevs,
    })
}

fn role_of(dir: &Path, known_vf_id: bool) -> Result<Role, PciError> {
    if std::fs::symlink_metadata(dir.join("physfn")).is_ok() {
        return Ok(Role::Vf {
            pf: link_addr(&dir.join("physfn")),
        });
    }
    if known_vf_id {
        return Ok(Role::Vf { pf: None });
    }
    let mut vfs: Vec<(u32, PciAddr)> = std::fs::read_dir(dir)
        .map_err(|source| PciError::Io {
            path: dir.to_path_buf(),
            source,
        })?
        .filter_map(|e| {
            let e = e.ok()?;
            let name = e.file_name().into_string().ok()?;
            let n: u32 = name.strip_prefix("virtfn")?.parse().ok()?;
            Some((n, link_addr(&e.path())?))
        })
        .collect();
    vfs.sort();
    let total_vfs = attr(&dir.join("sriov_totalvfs"))
        .and_then(|s| s.parse::<u32>().ok())
        .unwrap_or(0);
    if !vfs.is_empty() || total_vfs > 0 {
        return Ok(Role::Pf {
            vfs: vfs.into_iter().map(|(_, a)| a).collect(),
        });
    }
    Ok(Role::Nic)
}

/// Reads netdev `name` (`class/net/<name>`): MAC, operstate, MTU.
pub fn netdev_info(root: &Path, name: &str) -> Result<NetDev, PciError> {
    let dir = sys(root, "class/net").join(name);
    if std::fs::symlink_metadata(&dir).is_err() {
        return Err(PciError::NotFound(format!("network interface {name:?}")));
    }
    Ok(NetDev {
        name: name.to_string(),
        mac: mac_in(&dir),
        operstate: attr(&dir.join("operstate")),
        mtu: attr(&dir.join("mtu")).and_then(|s| s.parse().ok()),
    })
}

/// The MAC of netdev `name`; `Ok(None)` when it has none.
pub fn mac_of_netdev(root: &Path, name: &str) -> Result<Option<MacAddr>, PciError> {
    netdev_info(root, name).map(|n| n.mac)
}

fn mac_in(dir: &Path) -> Option<MacAddr> {
    attr(&dir.join("address"))?
        .parse()
        .ok()
        .filter(|m| *m != MacAddr::default())
}

/// Netdevs in `class/net` whose MAC is `mac`, sorted.
pub fn netdevs_with_mac(root: &Path, mac: &MacAddr) -> Result<Vec<String>, PciError> {
    let dir = sys(root, "class/net");
    let rd = match std::fs::read_dir(&dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(PciError::Io { path: dir, source }),
    };
    let mut names: Vec<String> = rd
        .filter_map(|e| {
            let e = e.ok()?;
            let name = e.file_name().into_string().ok()?;
            (mac_in(&e.path())? == *mac).then_some(name)
        })
        .collect();
    names.sort();
    Ok(names)
}
