//! The node state file the agent writes for the `vnic` IPAM plugin.
//!
//! Schema, atomic write and read live in `plexus_imds::node_state` so the
//! plugin can use them without linking the agent; this module re-exports
//! them under the agent's name and adds the one agent-side step: building
//! the state from an inventory.

pub use plexus_imds::node_state::{
    rfc3339_utc, write_file_atomic, NodeState, VnicState, DEFAULT_STATE_PATH, SCHEMA_VERSION,
};
