//! One reconcile pass over every `VnicPool`: for each matching node, read
//! its instance and attachments from OCI, apply the plan (attach missing
//! slots with their retry tokens, detach surplus owned VNICs), and report
//! per node in the pool's status and in events. Level-driven: a pass reads
//! everything afresh, so a restart anywhere resumes from what OCI and the
//! API server say, not from memory. What memory holds (VNIC tags, first
//! sighting of an ATTACHING attachment, events already sent) only saves
//! calls and noise.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use plexus_netattach::ApiError;
use plexus_oci::model::{
    AttachVnicDetails, AttachmentState, CreateVnicDetails, Instance, NetworkType, Vnic,
};
use plexus_oci::{Compute, OciError};

use crate::crd::{NodeError, NodePhase, NodeStatus, PoolStatus, VnicPool};
use crate::kube::{Kube, Node, PoolEvent};
use crate::plan::{self, Observed};

/// Tunables.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// An attachment still ATTACHING after this is reported as failed.
    pub attach_timeout: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            attach_timeout: Duration::from_secs(300),
        }
    }
}

#[derive(Debug, Default)]
struct Memory {
    vnics: BTreeMap<String, Vnic>,
    attaching_since: BTreeMap<String, Instant>,
    announced: BTreeSet<String>,
}

/// The controller.
pub struct Operator {
    pub(crate) kube: Arc<dyn Kube>,
    pub(crate) compute: Arc<dyn Compute>,
    pub(crate) settings: Settings,
    memory: Mutex<Memory>,
}

impl std::fmt::Debug for Operator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Operator")
            .field("settings", &self.settings)
            .finish()
    }
}

/// Why a pass stopped early.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] ApiError),
}

pub(crate) fn oci_error(e: &OciError) -> NodeError {
    let (message, request_id) = match e {
        OciError::Service {
            message,
            request_id,
            ..
        } => (message.clone(), request_id.clone()),
        other => (other.to_string(), String::new()),
    };
    NodeError {
        code: e.code().to_owned(),
        message,
        opc_request_id: request_id,
    }
}

impl Operator {
    pub fn new(kube: Arc<dyn Kube>, compute: Arc<dyn Compute>, settings: Settings) -> Self {
        Self {
            kube,
            compute,
            settings,
            memory: Mutex::new(Memory::default()),
        }
    }

    fn memory(&self) -> std::sync::MutexGuard<'_, Memory> {
        self.memory.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn event(&self, pool: &VnicPool, warning: bool, reason: &str, message: String) {
        let ev = PoolEvent {
            warning,
            reason: reason.to_owned(),
            message,
        };
        if let Err(e) = self.kube.pool_event(pool, &ev) {
            tracing::warn!(pool = %pool.metadata.name, error = %e, "event not recorded");
        }
    }

    /// One pass over all pools; returns whether anything is still in flight
    /// (the caller then polls sooner).
    pub fn reconcile_all(&self) -> Result<bool, ReconcileError> {
        let pools = self.kube.list_pools()?;
        let nodes = self.kube.list_nodes()?;
        let mut busy = false;
        for pool in &pools {
            let matching: Vec<&Node> = nodes
                .iter()
                .filter(|n| {
                    pool.spec
                        .node_selector
                        .iter()
                        .all(|(k, v)| n.labels.get(k) == Some(v))
                })
                .collect();
            let status = self.reconcile_pool(pool, &matching);
            busy |= status
                .nodes
                .iter()
                .any(|n| n.phase != NodePhase::Ready && n.phase != NodePhase::Failed);
            if pool.status.as_ref() != Some(&status) {
                self.kube.patch_pool_status(&pool.metadata.name, &status)?;
            }
        }
        Ok(busy)
    }

    fn reconcile_pool(&self, pool: &VnicPool, nodes: &[&Node]) -> PoolStatus {
        let switching = if pool.spec.switch_to_vfio {
            self.switch_step(pool, nodes)
        } else {
            BTreeMap::new()
        };
        let mut out = PoolStatus {
            observed_generation: pool.metadata.generation,
            ..PoolStatus::default()
        };
        for node in nodes {
            let st = match switching.get(&node.name) {
                Some(st) => st.clone(),
                None => self.reconcile_node(pool, node),
            };
            out.ready_nodes += u32::from(st.phase == NodePhase::Ready);
            out.nodes.push(st);
        }
        out
    }

    fn base_status(pool: &VnicPool, node: &Node, instance: Option<&Instance>) -> NodeStatus {
        NodeStatus {
            name: node.name.clone(),
            instance_id: node.instance_id().unwrap_or("").to_owned(),
            network_type: instance
                .and_then(|i| i.launch_options.as_ref()?.network_type)
                .map(|t| format!("{t:?}").to_ascii_uppercase()),
            wanted: pool.spec.vnics_per_node,
            attached: 0,
            attaching: 0,
            allocatable: node.allocatable_count(&pool.spec.resource_name),
            phase: NodePhase::Attaching,
            error: None,
        }
    }

    fn failed(mut st: NodeStatus, e: NodeError) -> NodeStatus {
        st.phase = NodePhase::Failed;
        st.error = Some(e);
        st
    }

    /// Attachments of the instance, with VNICs read (and cached) when attached.
    pub(crate) fn observe(&self, inst: &Instance) -> Result<Vec<Observed>, OciError> {
        let atts = self
            .compute
            .list_vnic_attachments(&inst.compartment_id, &inst.id)?;
        let mut out = Vec::with_capacity(atts.len());
        for a in atts {
            let vnic = match (&a.vnic_id, a.lifecycle_state) {
                (Some(id), AttachmentState::Attached) => {
                    let cached = self.memory().vnics.get(id).cloned();
                    match cached {
                        Some(v) => Some(v),
                        None => {
                            let v = self.compute.get_vnic(id)?;
                            self.memory().vnics.insert(id.clone(), v.clone());
                            Some(v)
                        }
                    }
                }
                _ => None,
            };
            out.push(Observed {
                attachment: a,
                vnic,
            });
        }
        Ok(out)
    }

    pub(crate) fn reconcile_node(&self, pool: &VnicPool, node: &Node) -> NodeStatus {
        let st = Self::base_status(pool, node, None);
        let Some(instance_id) = node.instance_id() else {
            let msg = format!(
                "spec.providerID {:?} names no OCI instance",
                node.provider_id
            );
            return Self::failed(
                st,
                NodeError {
                    code: "NoProviderID".into(),
                    message: msg,
                    opc_request_id: String::new(),
                },
            );
        };
        let inst = match self.compute.get_instance(instance_id) {
            Ok(i) => i,
            Err(e) => return Self::failed(st, oci_error(&e)),
        };
        let mut st = Self::base_status(pool, node, Some(&inst));
        let nt = inst.launch_options.as_ref().and_then(|l| l.network_type);
        if nt == Some(NetworkType::Paravirtualized) {
            // Secondary VNICs would be virtio NICs, not VFs; and a later
            // switch would have to detach them again.
            st.phase = NodePhase::Paravirtualized;
            return st;
        }
        match self.converge(pool, node, &inst, &mut st) {
            Ok(()) => st,
            Err(e) => {
                self.event(
                    pool,
                    true,
                    "AttachFailed",
                    format!("node {}: {}", node.name, e),
                );
                Self::failed(st, oci_error(&e))
            }
        }
    }

    /// Attach/detach towards the plan and fill the counts and phase.
    fn converge(
        &self,
        pool: &VnicPool,
        node: &Node,
        inst: &Instance,
        st: &mut NodeStatus,
    ) -> Result<(), OciError> {
        let observed = self.observe(inst)?;
        let wanted = pool.spec.vnics_per_node;
        let p = plan::plan(pool, wanted, &observed);
        self.announce(pool, node, &observed);
        let nt = inst.launch_options.as_ref().and_then(|l| l.network_type);
        for slot in &p.attach {
            let details = attach_details(pool, &inst.id, *slot);
            let token = plan::retry_token(pool, &inst.id, *slot, nt);
            let a = self.compute.attach_vnic(&details, &token)?;
            self.memory()
                .attaching_since
                .entry(a.id.clone())
                .or_insert_with(Instant::now);
            self.event(
                pool,
                false,
                "AttachingVnic",
                format!(
                    "node {}: attaching {} ({})",
                    node.name,
                    pool.slot_name(*slot),
                    a.id
                ),
            );
        }
        for id in &p.detach {
            self.compute.detach_vnic(id)?;
            self.event(
                pool,
                false,
                "DetachingVnic",
                format!("node {}: detaching {id}, no longer wanted", node.name),
            );
        }
        st.attached = p.attached;
        st.attaching = u32::try_from(p.attaching.len() + p.attach.len()).unwrap_or(u32::MAX);
        if let Some(stuck) = self.stuck(&p.attaching) {
            let msg = format!(
                "attachment {stuck} still ATTACHING after {:?}",
                self.settings.attach_timeout
            );
            st.phase = NodePhase::Failed;
            st.error = Some(NodeError {
                code: "AttachTimeout".into(),
                message: msg,
                opc_request_id: String::new(),
            });
            return Ok(());
        }
        st.phase = if st.attaching > 0
            || !p.detach.is_empty()
            || p.detaching > 0
            || st.attached < wanted
        {
            NodePhase::Attaching
        } else if st.allocatable < wanted {
            NodePhase::Configuring
        } else {
            NodePhase::Ready
        };
        Ok(())
    }

    /// The first attachment ATTACHING for longer than the timeout.
    fn stuck(&self, attaching: &[String]) -> Option<String> {
        let mut mem = self.memory();
        let now = Instant::now();
        attaching.iter().find_map(|id| {
            let since = *mem.attaching_since.entry(id.clone()).or_insert(now);
            (now.duration_since(since) >= self.settings.attach_timeout).then(|| id.clone())
        })
    }

    /// One `VnicAttached` event per owned attachment that reached ATTACHED.
    fn announce(&self, pool: &VnicPool, node: &Node, observed: &[Observed]) {
        for o in observed {
            let ours = plan::owned_slot(pool, o).is_some_and(|(_, proven)| proven);
            if !ours || o.attachment.lifecycle_state != AttachmentState::Attached {
                continue;
            }
            if !self.memory().announced.insert(o.attachment.id.clone()) {
                continue;
            }
            self.memory().attaching_since.remove(&o.attachment.id);
            let ip = o
                .vnic
                .as_ref()
                .and_then(|v| v.private_ip.clone())
                .unwrap_or_default();
            self.event(
                pool,
                false,
                "VnicAttached",
                format!(
                    "node {}: {} attached, private IP {ip}",
                    node.name, o.attachment.id
                ),
            );
        }
    }
}

/// `AttachVnic` details for a slot: subnet, NSGs, names and ownership tags.
pub fn attach_details(pool: &VnicPool, instance_id: &str, slot: u32) -> AttachVnicDetails {
    let name = pool.slot_name(slot);
    AttachVnicDetails {
        create_vnic_details: CreateVnicDetails {
            subnet_id: pool.spec.subnet_id.clone(),
            display_name: Some(name.clone()),
            nsg_ids: pool.spec.nsg_ids.clone(),
            freeform_tags: plan::tags(pool, slot),
            assign_public_ip: false,
            skip_source_dest_check: None,
        },
        instance_id: instance_id.to_owned(),
        display_name: Some(name),
    }
}
