//! plexus-agent: the node DaemonSet. Discovers VFs and their cloud VNICs,
//! configures secondary VNICs, installs the CNI binaries and config, serves the
//! kubelet device plugin, repairs VFs stranded by destroyed pods, and reports
//! status and metrics.

pub mod caches;
pub mod daemon;
pub mod deviceplugin;
pub mod hostroot;
pub mod install;
pub mod inventory;
pub mod metaconf;
pub mod metrics;
pub mod nodefs;
pub mod reconcile;
pub mod repair;
pub mod state;
pub mod status;
pub mod uninstall;
pub mod vnic;
