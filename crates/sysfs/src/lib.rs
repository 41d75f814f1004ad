//! Linux sysfs views of network devices: PCI address <-> netdev, driver,
//! VF/PF relations and NUMA node. Every function is rooted at a path so tests
//! run against fixture trees instead of the machine's `/sys`.
//!
//! [`pci`] holds the basic lookups; [`discover`] enumerates network PCI
//! functions with their netdevs and SR-IOV role, using [`vfids`] to
//! recognise VFs inside VMs (no `physfn` there); [`testing`] builds fake
//! trees for tests.

pub mod discover;
pub mod pci;
pub mod testing;
pub mod vfids;

pub use discover::{discover, Binding, Discovery, NetDev, PciFunction, Role};
pub use pci::{PciAddr, PciError};
