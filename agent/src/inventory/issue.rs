//! Findings of the join the operator should know about; never fatal.

use plexus_sysfs::PciAddr;
use serde::Serialize;

/// Something the operator should know; never fatal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Issue {
    /// IMDS lists a VNIC whose MAC no device has (attach lag, or the VF is
    /// bound to a userspace driver with no remembered MAC).
    VnicWithoutDevice {
        /// VNIC OCID.
        vnic_id: String,
        /// Its MAC, lower-case.
        mac: String,
    },
    /// Several devices carry one VNIC's MAC.
    SharedMac {
        /// The MAC.
        mac: String,
        /// VNIC OCID.
        vnic_id: String,
        /// All devices with the MAC.
        devices: Vec<PciAddr>,
        /// Devices given the VNIC (VFs), empty when none could be chosen.
        assigned: Vec<PciAddr>,
    },
    /// A device whose MAC cannot be known (userspace-bound or moved without
    /// a cache record), so it cannot be matched.
    UnknownMac {
        /// The device.
        pci: PciAddr,
    },
}

impl std::fmt::Display for Issue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let list = |v: &[PciAddr]| {
            v.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        match self {
            Issue::VnicWithoutDevice { vnic_id, mac } => {
                write!(f, "VNIC {vnic_id} (MAC {mac}) matches no device on this node")
            }
            Issue::SharedMac {
                mac,
                vnic_id,
                devices,
                assigned,
            } if assigned.is_empty() => write!(
                f,
                "MAC {mac} of VNIC {vnic_id} is on {} devices ({}) and none is a VF: not assigned",
                devices.len(),
                list(devices)
            ),
            Issue::SharedMac {
                mac,
                vnic_id,
                devices,
                assigned,
            } if assigned.len() > 1 => write!(
                f,
                "VNIC {vnic_id} (MAC {mac}) is presented as {} VFs ({}): give a pod all of them or bond them; one VF alone shares the VNIC's address",
                assigned.len(),
                list(assigned)
            ),
            Issue::SharedMac {
                mac,
                vnic_id,
                devices,
                assigned,
            } => write!(
                f,
                "MAC {mac} of VNIC {vnic_id} is on {} devices ({}); the VF {} carries the VNIC",
                devices.len(),
                list(devices),
                list(assigned)
            ),
            Issue::UnknownMac { pci } => {
                write!(f, "device {pci} has no readable MAC; cannot match it to a VNIC")
            }
        }
    }
}
