//! Linux sysfs views of network devices: PCI address <-> netdev, driver,
//! VF/PF relations and NUMA node. Every function is rooted at a path so tests
//! run against fixture trees instead of the machine's `/sys`.

pub mod pci;
