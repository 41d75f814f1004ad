//! Builds fake sysfs trees for tests of this crate and its users (the agent,
//! the `vnic` plugin). Generated rather than checked in because the tree is
//! mostly symlinks, laid out as the kernel does:
//! `sys/bus/pci/devices/<a>` → `../../../devices/pci0000:00/<a>`,
//! `sys/class/net/<if>` → `../../devices/pci0000:00/<a>/net/<if>`,
//! `<a>/driver` → `../../../bus/pci/drivers/<d>`, `physfn`/`virtfnN`
//! between functions, virtio netdevs one level down under `virtio0/`.

use std::fs;
use std::io;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

/// A netdev to create under a function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetSpec {
    /// Interface name.
    pub name: String,
    /// `address` content; `None` writes no `address` file.
    pub mac: Option<String>,
    /// `operstate`.
    pub operstate: String,
    /// `mtu`.
    pub mtu: u32,
}

impl NetSpec {
    /// An `up` netdev with MTU 9000.
    pub fn new(name: &str, mac: Option<&str>) -> Self {
        Self {
            name: name.to_string(),
            mac: mac.map(str::to_string),
            operstate: "up".to_string(),
            mtu: 9000,
        }
    }
}

/// A PCI function to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionSpec {
    /// Address, `0000:00:04.0`.
    pub pci: String,
    /// Vendor ID.
    pub vendor: u16,
    /// Device ID.
    pub device: u16,
    /// Class code (`0x020000` = Ethernet).
    pub class: u32,
    /// Driver to bind, if any.
    pub driver: Option<String>,
    /// `numa_node` content.
    pub numa_node: i32,
    /// Netdev, if any.
    pub netdev: Option<NetSpec>,
    /// Put the netdev under `virtio0/` (virtio-net).
    pub virtio: bool,
    /// PF address: writes `physfn` here and `virtfnN` in the PF.
    pub physfn: Option<String>,
    /// `sriov_totalvfs` content (PFs).
    pub sriov_totalvfs: Option<u32>,
}

impl FunctionSpec {
    /// An Ethernet function with no driver, netdev or SR-IOV links.
    pub fn new(pci: &str, vendor: u16, device: u16) -> Self {
        Self {
            pci: pci.to_string(),
            vendor,
            device,
            class: 0x020000,
            driver: None,
            numa_node: -1,
            netdev: None,
            virtio: false,
            physfn: None,
            sriov_totalvfs: None,
        }
    }

    /// Sets the driver.
    pub fn driver(mut self, d: &str) -> Self {
        self.driver = Some(d.to_string());
        self
    }

    /// Adds a netdev.
    pub fn netdev(mut self, name: &str, mac: Option<&str>) -> Self {
        self.netdev = Some(NetSpec::new(name, mac));
        self
    }
}

/// A fake sysfs under `root` (usually a temp dir the test owns).
#[derive(Debug)]
pub struct FakeSysfs {
    root: PathBuf,
}

impl FakeSysfs {
    /// Creates the skeleton directories under `root`.
    pub fn new(root: &Path) -> io::Result<Self> {
        for d in [
            "sys/bus/pci/devices",
            "sys/bus/pci/drivers",
            "sys/class/net",
            "sys/devices/pci0000:00",
            "sys/devices/virtual/net",
        ] {
            fs::create_dir_all(root.join(d))?;
        }
        Ok(Self {
            root: root.to_path_buf(),
        })
    }

    /// The root to pass to discovery functions (the dir holding `sys/`).
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn dev_dir(&self, pci: &str) -> PathBuf {
        self.root.join("sys/devices/pci0000:00").join(pci)
    }

    /// Adds a PCI function (its PF, if any, must exist already).
    pub fn add_function(&self, f: &FunctionSpec) -> io::Result<()> {
        let dir = self.dev_dir(&f.pci);
        fs::create_dir_all(&dir)?;
        fs::write(dir.join("vendor"), format!("0x{:04x}\n", f.vendor))?;
        fs::write(dir.join("device"), format!("0x{:04x}\n", f.device))?;
        fs::write(dir.join("class"), format!("0x{:06x}\n", f.class))?;
        fs::write(dir.join("numa_node"), format!("{}\n", f.numa_node))?;
        symlink(
            format!("../../../devices/pci0000:00/{}", f.pci),
            self.root.join("sys/bus/pci/devices").join(&f.pci),
        )?;
        if let Some(d) = &f.driver {
            fs::create_dir_all(self.root.join("sys/bus/pci/drivers").join(d))?;
            symlink(format!("../../../bus/pci/drivers/{d}"), dir.join("driver"))?;
        }
        if let Some(n) = f.sriov_totalvfs {
            fs::write(dir.join("sriov_totalvfs"), format!("{n}\n"))?;
        }
        if let Some(pf) = &f.physfn {
            symlink(format!("../{pf}"), dir.join("physfn"))?;
            let pf_dir = self.dev_dir(pf);
            let n = fs::read_dir(&pf_dir)?
                .filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().starts_with("virtfn"))
                .count();
            symlink(format!("../{}", f.pci), pf_dir.join(format!("virtfn{n}")))?;
        }
        if let Some(net) = &f.netdev {
            let (parent_rel, device_target) = if f.virtio {
                fs::create_dir_all(dir.join("virtio0"))?;
                (format!("{}/virtio0", f.pci), "../../../virtio0".to_string())
            } else {
                (f.pci.clone(), format!("../../../{}", f.pci))
            };
            let net_dir = self
                .root
                .join("sys/devices/pci0000:00")
                .join(&parent_rel)
                .join("net")
                .join(&net.name);
            self.write_netdev(&net_dir, net)?;
            symlink(device_target, net_dir.join("device"))?;
            symlink(
                format!("../../devices/pci0000:00/{parent_rel}/net/{}", net.name),
                self.root.join("sys/class/net").join(&net.name),
            )?;
        }
        Ok(())
    }

    /// Puts function `pci` in IOMMU group `group` (the `iommu_group` link).
    pub fn set_iommu_group(&self, pci: &str, group: u32) -> io::Result<()> {
        let groups = self.root.join("sys/kernel/iommu_groups");
        fs::create_dir_all(groups.join(group.to_string()))?;
        symlink(
            format!("../../../kernel/iommu_groups/{group}"),
            self.dev_dir(pci).join("iommu_group"),
        )
    }

    /// Adds a virtual netdev (lo, veth …) with no `device` link.
    pub fn add_virtual_netdev(&self, net: &NetSpec) -> io::Result<()> {
        let dir = self.root.join("sys/devices/virtual/net").join(&net.name);
        self.write_netdev(&dir, net)?;
        symlink(
            format!("../../devices/virtual/net/{}", net.name),
            self.root.join("sys/class/net").join(&net.name),
        )
    }

    fn write_netdev(&self, dir: &Path, net: &NetSpec) -> io::Result<()> {
        fs::create_dir_all(dir)?;
        if let Some(mac) = &net.mac {
            fs::write(dir.join("address"), format!("{mac}\n"))?;
        }
        fs::write(dir.join("operstate"), format!("{}\n", net.operstate))?;
        fs::write(dir.join("mtu"), format!("{}\n", net.mtu))
    }

    /// Makes netdev `name` disappear from this namespace's view, as when
    /// host-device moves it into a pod: the PCI function stays, its `net/`
    /// entry and `class/net` link go.
    pub fn hide_netdev(&self, name: &str) -> io::Result<()> {
        let link = self.root.join("sys/class/net").join(name);
        let target = fs::canonicalize(&link)?;
        fs::remove_file(&link)?;
        fs::remove_dir_all(target)
    }
}

/// MACs used by [`oci_vm_node`], so tests can refer to them.
pub mod macs {
    /// ens3, the virtio primary VNIC.
    pub const PRIMARY: &str = "02:00:17:00:00:01";
    /// ens4, a secondary VNIC backed by one VF.
    pub const SINGLE_VF: &str = "02:00:17:00:00:02";
    /// ens5 + ens6, one VNIC presented as two VFs (PCA/C3 style).
    pub const SHARED: &str = "02:00:17:00:00:03";
    /// The bare-metal style PF.
    pub const PF: &str = "b8:ce:f6:00:00:10";
    /// First VF of the PF.
    pub const PF_VF0: &str = "b8:ce:f6:00:00:11";
    /// Second VF of the PF.
    pub const PF_VF1: &str = "b8:ce:f6:00:00:12";
}

/// A node with every case discovery must handle:
/// - `0000:00:01.0` virtio-blk (not a network device);
/// - `0000:00:03.0` virtio-net `ens3`, the primary NIC;
/// - `0000:00:04.0` mlx5 VF `ens4`;
/// - `0000:00:05.0`, `0000:00:06.0` mlx5 VFs `ens5`/`ens6` sharing one MAC;
/// - `0000:00:07.0` mlx5 VF bound to vfio-pci (no netdev);
/// - `0000:00:08.0` mlx5 VF with a kernel driver but no visible netdev;
/// - `0000:00:09.0` Intel VF `ens9` without a MAC (`address` missing);
/// - `0000:3b:00.0` ConnectX-5 PF `enp59s0f0` with VFs `0000:3b:00.2`/`.3`;
/// - virtual `lo` and `veth0`.
pub fn oci_vm_node(root: &Path) -> io::Result<FakeSysfs> {
    use macs::*;
    let s = FakeSysfs::new(root)?;
    let mlx_vf = |pci: &str| FunctionSpec::new(pci, 0x15b3, 0x101e).driver("mlx5_core");
    s.add_function(&FunctionSpec {
        class: 0x010000,
        ..FunctionSpec::new("0000:00:01.0", 0x1af4, 0x1001).driver("virtio-pci")
    })?;
    s.add_function(&FunctionSpec {
        virtio: true,
        ..FunctionSpec::new("0000:00:03.0", 0x1af4, 0x1000)
            .driver("virtio-pci")
            .netdev("ens3", Some(PRIMARY))
    })?;
    s.add_function(&mlx_vf("0000:00:04.0").netdev("ens4", Some(&SINGLE_VF.to_uppercase())))?;
    s.add_function(&FunctionSpec {
        device: 0x1018,
        ..mlx_vf("0000:00:05.0").netdev("ens5", Some(SHARED))
    })?;
    s.add_function(&FunctionSpec {
        device: 0x1018,
        ..mlx_vf("0000:00:06.0").netdev("ens6", Some(SHARED))
    })?;
    s.add_function(&FunctionSpec::new("0000:00:07.0", 0x15b3, 0x101e).driver("vfio-pci"))?;
    s.add_function(&mlx_vf("0000:00:08.0"))?;
    s.add_function(&FunctionSpec {
        netdev: Some(NetSpec {
            operstate: "down".into(),
            mtu: 1500,
            ..NetSpec::new("ens9", None)
        }),
        ..FunctionSpec::new("0000:00:09.0", 0x8086, 0x154c).driver("iavf")
    })?;
    s.add_function(&FunctionSpec {
        numa_node: 0,
        sriov_totalvfs: Some(8),
        ..FunctionSpec::new("0000:3b:00.0", 0x15b3, 0x1017)
            .driver("mlx5_core")
            .netdev("enp59s0f0", Some(PF))
    })?;
    for (pci, name, mac) in [
        ("0000:3b:00.2", "enp59s0f0v0", PF_VF0),
        ("0000:3b:00.3", "enp59s0f0v1", PF_VF1),
    ] {
        s.add_function(&FunctionSpec {
            numa_node: 0,
            physfn: Some("0000:3b:00.0".into()),
            ..FunctionSpec::new(pci, 0x15b3, 0x1018)
                .driver("mlx5_core")
                .netdev(name, Some(mac))
        })?;
    }
    s.add_virtual_netdev(&NetSpec {
        mtu: 65536,
        operstate: "unknown".into(),
        ..NetSpec::new("lo", Some("00:00:00:00:00:00"))
    })?;
    s.add_virtual_netdev(&NetSpec::new("veth0", Some("02:00:17:99:99:99")))?;
    Ok(s)
}
