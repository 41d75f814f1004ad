//! PCI IDs of SR-IOV virtual functions.
//!
//! Inside a VM a passed-through VF has no `physfn` link (its PF lives in the
//! hypervisor), so the PCI ID is what tells a VF apart from a regular NIC.
//! OCI VFIO shapes expose Mellanox/NVIDIA (`15b3`, driver `mlx5_core`) VFs;
//! which generation per shape is undocumented, so the whole mlx5 VF family is
//! listed. IDs from the Linux drivers' PCI tables (`mlx5/core/main.c`
//! `MLX5_PCI_DEV_IS_VF`, `ixgbevf`, `iavf`, `igbvf`).

/// One known VF PCI ID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KnownVf {
    /// PCI vendor ID.
    pub vendor: u16,
    /// PCI device ID.
    pub device: u16,
    /// Human-readable model, shown by `plexus-agent status`.
    pub model: &'static str,
}

const fn vf(vendor: u16, device: u16, model: &'static str) -> KnownVf {
    KnownVf {
        vendor,
        device,
        model,
    }
}

/// Mellanox/NVIDIA.
pub const VENDOR_MELLANOX: u16 = 0x15b3;
/// Intel.
pub const VENDOR_INTEL: u16 = 0x8086;

/// Every VF ID we recognise.
pub const KNOWN_VFS: &[KnownVf] = &[
    vf(VENDOR_MELLANOX, 0x1004, "ConnectX-3 VF"),
    vf(VENDOR_MELLANOX, 0x1014, "ConnectX-4 VF"),
    vf(VENDOR_MELLANOX, 0x1016, "ConnectX-4 Lx VF"),
    vf(VENDOR_MELLANOX, 0x1018, "ConnectX-5 VF"),
    vf(VENDOR_MELLANOX, 0x101a, "ConnectX-5 Ex VF"),
    vf(VENDOR_MELLANOX, 0x101c, "ConnectX-6 VF"),
    vf(VENDOR_MELLANOX, 0x101e, "ConnectX mlx5Gen VF"),
    vf(VENDOR_MELLANOX, 0xa2d3, "BlueField VF"),
    vf(VENDOR_INTEL, 0x10ca, "82576 VF"),
    vf(VENDOR_INTEL, 0x10ed, "82599 VF"),
    vf(VENDOR_INTEL, 0x1515, "X540 VF"),
    vf(VENDOR_INTEL, 0x1520, "I350 VF"),
    vf(VENDOR_INTEL, 0x154c, "XL710/X710 VF"),
    vf(VENDOR_INTEL, 0x1565, "X550 VF"),
    vf(VENDOR_INTEL, 0x15a8, "X552 VF"),
    vf(VENDOR_INTEL, 0x1889, "Ethernet Adaptive VF"),
];

/// The table entry for `vendor:device`, if it is a known VF.
pub fn known_vf(vendor: u16, device: u16) -> Option<&'static KnownVf> {
    KNOWN_VFS
        .iter()
        .find(|k| k.vendor == vendor && k.device == device)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_oci_mlx5_and_intel_vfs_only() {
        for id in [0x1016, 0x1018, 0x101a, 0x101c, 0x101e] {
            assert!(known_vf(VENDOR_MELLANOX, id).is_some(), "{id:x}");
        }
        assert!(known_vf(VENDOR_INTEL, 0x154c).is_some());
        assert!(known_vf(VENDOR_INTEL, 0x1889).is_some());
        // PFs and virtio are not VFs.
        assert!(known_vf(VENDOR_MELLANOX, 0x1017).is_none());
        assert!(known_vf(0x1af4, 0x1000).is_none());
        let mut ids: Vec<_> = KNOWN_VFS.iter().map(|k| (k.vendor, k.device)).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), KNOWN_VFS.len());
    }
}
