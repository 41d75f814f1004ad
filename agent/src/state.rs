//! The node state file the agent writes for the `vnic` IPAM plugin.
//!
//! Schema, atomic write and read live in `plexus_imds::node_state` so the
//! plugin can use them without linking the agent; this module re-exports
//! them under the agent's name and adds the one agent-side step: persisting
//! an inventory, only when its content changed, counted in the metrics.

use std::path::Path;
use std::time::SystemTime;

pub use plexus_imds::node_state::{
    rfc3339_utc, NodeState, VnicState, DEFAULT_STATE_PATH, SCHEMA_VERSION,
};
pub use plexus_imds::StateError;

use crate::inventory::Inventory;
use crate::metrics::Metrics;

/// Writes `inv` to `path` unless the file already holds the same VNICs
/// (the timestamp alone never causes a write, so a steady node does not
/// rewrite tmpfs every reconcile). Returns whether it wrote. An unreadable
/// old file is simply replaced.
pub fn persist(
    path: &Path,
    inv: &Inventory,
    now: SystemTime,
    metrics: &Metrics,
) -> Result<bool, StateError> {
    let next = inv.to_node_state(now);
    if let Ok(Some(current)) = NodeState::read(path) {
        if current.vnics == next.vnics {
            return Ok(false);
        }
    }
    let result = next.write_atomic(path);
    metrics.record_state_write(result.is_ok());
    result.map(|()| true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::sample;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn persists_only_on_change_and_counts_writes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run/plexus/state.json");
        let metrics = Metrics::new();
        let mut inv = sample::inventory();
        assert!(persist(&path, &inv, UNIX_EPOCH, &metrics).unwrap());
        let later = UNIX_EPOCH + Duration::from_secs(60);
        assert!(!persist(&path, &inv, later, &metrics).unwrap());
        inv.unmatched_vnics.clear();
        assert!(persist(&path, &inv, later, &metrics).unwrap());
        let back = NodeState::read(&path).unwrap().unwrap();
        assert_eq!(back.updated_at, "1970-01-01T00:01:00Z");
        assert_eq!(back.vnics.len(), 5);
        assert!(metrics
            .render()
            .contains("plexus_state_file_writes_total 2\n"));
    }

    #[test]
    fn failed_write_is_counted() {
        let dir = tempfile::tempdir().unwrap();
        // The parent "directory" is a file: create_dir_all fails.
        let blocker = dir.path().join("blocker");
        std::fs::write(&blocker, "").unwrap();
        let metrics = Metrics::new();
        let err = persist(
            &blocker.join("state.json"),
            &sample::inventory(),
            UNIX_EPOCH,
            &metrics,
        );
        assert!(err.is_err());
        assert!(metrics
            .render()
            .contains("plexus_state_file_write_errors_total 1\n"));
    }
}
