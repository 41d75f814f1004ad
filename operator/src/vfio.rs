//! Opt-in switch of PARAVIRTUALIZED nodes to VFIO networking, one node at a
//! time (oci.md §3.2): cordon, drain by eviction, detach the pool's VNICs,
//! `UpdateInstance` with `launchOptions.networkType=VFIO` (OCI reboots the
//! instance), wait for the instance RUNNING and the node Ready, re-attach
//! (the normal reconcile), uncordon.
//!
//! Progress lives on the node, not in memory: the `plexus.io/vfio-switch`
//! annotation marks the node being switched, and every step is derived from
//! what OCI and the API server show, so an operator restart resumes. The
//! first failure writes `plexus.io/vfio-switch-failed` and halts the pool's
//! switching until an administrator removes it. VNICs the operator did not
//! create (and block volumes) are never detached: their presence fails the
//! switch with the API's own error.

use std::collections::BTreeMap;

use plexus_oci::model::{AttachmentState, NetworkType, INSTANCE_RUNNING};
use plexus_oci::OciError;

use crate::crd::{NodeError, NodePhase, NodeStatus, VnicPool};
use crate::kube::Node;
use crate::plan;
use crate::reconcile::{oci_error, Operator};

/// Node annotation: this node is being switched by the named pool.
pub const ANN_SWITCH: &str = "plexus.io/vfio-switch";
/// Node annotation: the switch failed (`<code>: <message>`); halts the pool.
pub const ANN_FAILED: &str = "plexus.io/vfio-switch-failed";

enum Step {
    /// Still in progress: report this message.
    Wait(&'static str),
    /// Back on VFIO with the pool's VNICs: uncordon.
    Done(NodeStatus),
}

impl Operator {
    /// Advances the switch; returns the status of the node it concerns.
    pub(crate) fn switch_step(
        &self,
        pool: &VnicPool,
        nodes: &[&Node],
    ) -> BTreeMap<String, NodeStatus> {
        let mut out = BTreeMap::new();
        let mine = |n: &&&Node| n.annotations.get(ANN_SWITCH) == Some(&pool.metadata.name);
        if let Some(failed) = nodes
            .iter()
            .find(|n| mine(n) && n.annotations.contains_key(ANN_FAILED))
        {
            out.insert(failed.name.clone(), self.halted(pool, failed));
            return out;
        }
        let node = match nodes.iter().find(mine) {
            Some(n) => *n,
            None => match self.next_candidate(pool, nodes) {
                Some(n) => n,
                None => return out,
            },
        };
        let st = match self.advance(pool, node) {
            Ok(Step::Wait(what)) => {
                let mut st = self.status_of(pool, node);
                st.phase = NodePhase::Switching;
                st.error = Some(NodeError {
                    code: "Switching".into(),
                    message: what.into(),
                    opc_request_id: String::new(),
                });
                st
            }
            Ok(Step::Done(st)) => {
                if let Err(e) = self
                    .kube
                    .patch_node(&node.name, &[(ANN_SWITCH, None)], Some(false))
                {
                    tracing::warn!(node = %node.name, error = %e, "uncordon failed; retrying next pass");
                } else {
                    self.event(
                        pool,
                        false,
                        "VfioSwitchDone",
                        format!("node {} runs VFIO networking; uncordoned", node.name),
                    );
                }
                st
            }
            Err(e) => {
                let err = oci_error(&e);
                let text = format!("{}: {}", err.code, err.message);
                let _ = self
                    .kube
                    .patch_node(&node.name, &[(ANN_FAILED, Some(&text))], None);
                self.event(
                    pool,
                    true,
                    "VfioSwitchFailed",
                    format!("node {}: {text}; switching halted", node.name),
                );
                let mut st = self.status_of(pool, node);
                st.phase = NodePhase::Failed;
                st.error = Some(err);
                st
            }
        };
        out.insert(node.name.clone(), st);
        out
    }

    /// The status of a node whose switch failed (from its annotation).
    fn halted(&self, pool: &VnicPool, node: &Node) -> NodeStatus {
        let text = node
            .annotations
            .get(ANN_FAILED)
            .cloned()
            .unwrap_or_default();
        let (code, message) = text.split_once(": ").unwrap_or(("SwitchFailed", &text));
        let mut st = self.status_of(pool, node);
        st.phase = NodePhase::Failed;
        st.error = Some(NodeError {
            code: code.into(),
            message: message.into(),
            opc_request_id: String::new(),
        });
        st
    }

    fn status_of(&self, pool: &VnicPool, node: &Node) -> NodeStatus {
        NodeStatus {
            name: node.name.clone(),
            instance_id: node.instance_id().unwrap_or("").to_owned(),
            network_type: None,
            wanted: pool.spec.vnics_per_node,
            attached: 0,
            attaching: 0,
            allocatable: node.allocatable_count(&pool.spec.resource_name),
            phase: NodePhase::Switching,
            error: None,
        }
    }

    /// The first PARAVIRTUALIZED node (by name), cordoned and marked.
    fn next_candidate<'a>(&self, pool: &VnicPool, nodes: &[&'a Node]) -> Option<&'a Node> {
        let mut sorted: Vec<&&Node> = nodes.iter().collect();
        sorted.sort_by(|a, b| a.name.cmp(&b.name));
        for node in sorted {
            let Some(id) = node.instance_id() else {
                continue;
            };
            let Ok(inst) = self.compute.get_instance(id) else {
                continue;
            };
            if inst.launch_options.and_then(|l| l.network_type)
                != Some(NetworkType::Paravirtualized)
            {
                continue;
            }
            if let Err(e) = self.kube.patch_node(
                &node.name,
                &[(ANN_SWITCH, Some(&pool.metadata.name))],
                Some(true),
            ) {
                tracing::warn!(node = %node.name, error = %e, "cordon failed");
                return None;
            }
            self.event(pool, false, "VfioSwitchStarted", format!("node {}: cordoned; draining before the switch to VFIO (the instance will reboot)", node.name));
            return Some(node);
        }
        None
    }

    fn advance(&self, pool: &VnicPool, node: &Node) -> Result<Step, OciError> {
        let pods = self
            .kube
            .pods_to_evict(&node.name)
            .map_err(|e| OciError::Transport(e.to_string()))?;
        if !pods.is_empty() {
            for pod in &pods {
                // 429 = a disruption budget says not now; next pass retries.
                if let Err(e) = self.kube.evict(pod) {
                    tracing::info!(pod = %pod.name, error = %e, "eviction deferred");
                }
            }
            return Ok(Step::Wait("draining"));
        }
        let id = node.instance_id().unwrap_or("");
        let inst = self.compute.get_instance(id)?;
        let nt = inst.launch_options.as_ref().and_then(|l| l.network_type);
        if nt == Some(NetworkType::Paravirtualized) {
            let observed = self.observe(&inst)?;
            let mut pending = false;
            for o in &observed {
                let state = o.attachment.lifecycle_state;
                if state == AttachmentState::Detached
                    || o.vnic.as_ref().is_some_and(|v| v.is_primary)
                {
                    continue;
                }
                pending = true;
                let ours = plan::owned_slot(pool, o).is_some_and(|(_, proven)| proven);
                if state == AttachmentState::Attached && !ours && o.vnic.is_some() {
                    return Err(OciError::Service {
                        status: 409,
                        code: "ForeignVnicAttached".into(),
                        message: format!(
                            "{} was not created by this pool; detach it yourself before the switch",
                            o.attachment.id
                        ),
                        request_id: String::new(),
                    });
                }
                if state == AttachmentState::Attached && ours {
                    self.compute.detach_vnic(&o.attachment.id)?;
                }
            }
            if pending {
                return Ok(Step::Wait("detaching secondary VNICs"));
            }
            self.compute
                .set_network_type(id, NetworkType::Vfio, &plan::switch_token(pool, id))?;
            self.event(
                pool,
                false,
                "VfioSwitchRequested",
                format!(
                    "node {}: UpdateInstance networkType=VFIO; the instance reboots",
                    node.name
                ),
            );
            return Ok(Step::Wait("rebooting"));
        }
        if inst.lifecycle_state != INSTANCE_RUNNING || !node.ready {
            return Ok(Step::Wait("waiting for the instance and node to come back"));
        }
        let st = self.reconcile_node(pool, node);
        match st.phase {
            NodePhase::Ready | NodePhase::Configuring if st.attached == st.wanted => {
                Ok(Step::Done(st))
            }
            NodePhase::Failed => Err(OciError::Decode(
                st.error
                    .map(|e| format!("{}: {}", e.code, e.message))
                    .unwrap_or_default(),
            )),
            _ => Ok(Step::Wait("re-attaching VNICs")),
        }
    }
}
