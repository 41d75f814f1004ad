//! The `VnicPool` custom resource (`plexus.io/v1alpha1`, cluster-scoped):
//! which nodes get how many secondary VNICs in which subnet, and what the
//! operator saw on each. The CRD schema in `deploy/operator.yaml` mirrors
//! these types.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// API group/version.
pub const API_VERSION: &str = "plexus.io/v1alpha1";
/// Collection path of the cluster-scoped resource.
pub const POOLS_PATH: &str = "/apis/plexus.io/v1alpha1/vnicpools";

/// Object metadata the operator reads.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Meta {
    pub name: String,
    #[serde(default)]
    pub uid: String,
    #[serde(default)]
    pub generation: u64,
    #[serde(default)]
    pub resource_version: String,
}

/// A pool of secondary VNICs per matching node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VnicPool {
    pub metadata: Meta,
    pub spec: PoolSpec,
    #[serde(default)]
    pub status: Option<PoolStatus>,
}

/// What the user asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PoolSpec {
    /// Node labels that must all match (empty = every node).
    #[serde(default)]
    pub node_selector: BTreeMap<String, String>,
    /// Subnet OCID for the VNICs.
    pub subnet_id: String,
    #[serde(default)]
    pub nsg_ids: Vec<String>,
    pub vnics_per_node: u32,
    /// VNIC display names are `<prefix><slot>`; default `plexus-<pool>-`.
    #[serde(default)]
    pub display_name_prefix: Option<String>,
    /// Extended resource the node agent's device plugin advertises for these
    /// VNICs (read from `node.status.allocatable`).
    pub resource_name: String,
    /// Switch PARAVIRTUALIZED nodes to VFIO (cordon, drain, detach, update,
    /// reboot, re-attach, uncordon; one node at a time). Off by default: it
    /// reboots instances.
    #[serde(default)]
    pub switch_to_vfio: bool,
}

impl VnicPool {
    /// `<prefix><slot>`, the attachment and VNIC display name of a slot.
    pub fn slot_name(&self, slot: u32) -> String {
        match &self.spec.display_name_prefix {
            Some(p) => format!("{p}{slot}"),
            None => format!("plexus-{}-{slot}", self.metadata.name),
        }
    }
}

/// One node's state in the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum NodePhase {
    /// Wanted VNICs attached and advertised by the node's device plugin.
    Ready,
    /// Attach (or detach) requests in flight.
    Attaching,
    /// Attached in OCI; the node agent has not advertised them all yet.
    Configuring,
    /// Still paravirtualized: VNICs would not be VFs (switch not enabled).
    Paravirtualized,
    /// Switching the instance to VFIO.
    Switching,
    /// The last OCI call for this node failed; see `error`.
    Failed,
}

/// An OCI error as reported in status and events (never credentials).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeError {
    pub code: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub opc_request_id: String,
}

/// Per-node status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeStatus {
    pub name: String,
    pub instance_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_type: Option<String>,
    pub wanted: u32,
    pub attached: u32,
    pub attaching: u32,
    /// `node.status.allocatable[resourceName]`: VNICs the agent configured
    /// and its device plugin advertises.
    pub allocatable: u32,
    pub phase: NodePhase,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<NodeError>,
}

/// The pool's status subresource.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PoolStatus {
    pub observed_generation: u64,
    /// Nodes whose phase is Ready.
    pub ready_nodes: u32,
    pub nodes: Vec<NodeStatus>,
}
