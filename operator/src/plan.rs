//! Pure planning: which of a node's VNIC attachments belong to a pool slot,
//! which slots need an `AttachVnic`, which owned attachments must go, and
//! the idempotency token of each attach.
//!
//! Ownership is proven by the VNIC's freeform tags (pool UID, slot, manager),
//! readable only once ATTACHED; an ATTACHING attachment (no `vnicId` yet) is
//! recognised by its display name and counted, never detached. Foreign and
//! primary VNICs are never planned for detachment.

use std::collections::BTreeMap;

use plexus_oci::model::{AttachmentState, NetworkType, Vnic, VnicAttachment};
use sha2::{Digest, Sha256};

use crate::crd::VnicPool;

/// Freeform tag: the pool's name (for humans).
pub const TAG_POOL: &str = "plexus.io/pool";
/// Freeform tag: the pool's UID (what ownership is decided on).
pub const TAG_POOL_UID: &str = "plexus.io/pool-uid";
/// Freeform tag: the slot index within the node.
pub const TAG_SLOT: &str = "plexus.io/slot";
/// Freeform tag: always [`MANAGER`].
pub const TAG_MANAGED_BY: &str = "plexus.io/managed-by";
pub const MANAGER: &str = "plexus-operator";

/// An attachment with its VNIC when the VNIC is readable (ATTACHED).
#[derive(Debug, Clone)]
pub struct Observed {
    pub attachment: VnicAttachment,
    pub vnic: Option<Vnic>,
}

/// The tags every VNIC of `pool`'s `slot` carries.
pub fn tags(pool: &VnicPool, slot: u32) -> BTreeMap<String, String> {
    BTreeMap::from([
        (TAG_POOL.to_owned(), pool.metadata.name.clone()),
        (TAG_POOL_UID.to_owned(), pool.metadata.uid.clone()),
        (TAG_SLOT.to_owned(), slot.to_string()),
        (TAG_MANAGED_BY.to_owned(), MANAGER.to_owned()),
    ])
}

/// The slot `obs` fills for `pool`, and whether ownership is proven by tags.
pub fn owned_slot(pool: &VnicPool, obs: &Observed) -> Option<(u32, bool)> {
    if let Some(vnic) = &obs.vnic {
        if vnic.is_primary {
            return None;
        }
        let t = &vnic.freeform_tags;
        let ours = t.get(TAG_MANAGED_BY).map(String::as_str) == Some(MANAGER)
            && t.get(TAG_POOL_UID) == Some(&pool.metadata.uid);
        return ours
            .then(|| t.get(TAG_SLOT)?.parse().ok())
            .flatten()
            .map(|s| (s, true));
    }
    let name = obs.attachment.display_name.as_deref()?;
    let prefix = pool.slot_name(0);
    let prefix = prefix.strip_suffix('0').unwrap_or(&prefix);
    let slot: u32 = name.strip_prefix(prefix)?.parse().ok()?;
    (pool.slot_name(slot) == name).then_some((slot, false))
}

/// What to do on one node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodePlan {
    /// Slots to attach.
    pub attach: Vec<u32>,
    /// Owned attachments to detach (surplus slots, duplicates).
    pub detach: Vec<String>,
    /// Owned and ATTACHED within the wanted slots.
    pub attached: u32,
    /// Owned and ATTACHING (any slot).
    pub attaching: Vec<String>,
    /// Owned and DETACHING.
    pub detaching: u32,
}

/// Plans `wanted` slots on a node from what OCI lists.
pub fn plan(pool: &VnicPool, wanted: u32, observed: &[Observed]) -> NodePlan {
    let mut p = NodePlan::default();
    let mut filled = vec![false; wanted as usize];
    for obs in observed {
        let Some((slot, proven)) = owned_slot(pool, obs) else {
            continue;
        };
        let in_range = slot < wanted;
        match obs.attachment.lifecycle_state {
            AttachmentState::Attached if proven => {
                if in_range && !filled[slot as usize] {
                    filled[slot as usize] = true;
                    p.attached += 1;
                } else {
                    p.detach.push(obs.attachment.id.clone());
                }
            }
            AttachmentState::Attaching => {
                if in_range {
                    filled[slot as usize] = true;
                }
                p.attaching.push(obs.attachment.id.clone());
            }
            AttachmentState::Detaching => p.detaching += 1,
            _ => {}
        }
    }
    p.attach = (0..wanted).filter(|s| !filled[*s as usize]).collect();
    p
}

/// The `opc-retry-token` for attaching `slot`: the same for a replay of the
/// same intent (a lost response, an operator restart) and different once
/// the pool's spec changed or the instance switched network type, since OCI
/// remembers a token for 24 hours.
pub fn retry_token(
    pool: &VnicPool,
    instance_id: &str,
    slot: u32,
    nt: Option<NetworkType>,
) -> String {
    let material = format!(
        "attach/{}/{instance_id}/{slot}/{}/{nt:?}",
        pool.metadata.uid, pool.metadata.generation
    );
    hex(&Sha256::digest(material.as_bytes()))
}

/// The `opc-retry-token` of the VFIO `UpdateInstance` for an instance.
pub fn switch_token(pool: &VnicPool, instance_id: &str) -> String {
    let material = format!("vfio/{}/{instance_id}", pool.metadata.uid);
    hex(&Sha256::digest(material.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{Meta, PoolSpec};

    fn pool() -> VnicPool {
        VnicPool {
            metadata: Meta {
                name: "pods".into(),
                uid: "u-1".into(),
                generation: 1,
                resource_version: "1".into(),
            },
            spec: PoolSpec {
                node_selector: BTreeMap::new(),
                subnet_id: "s".into(),
                nsg_ids: vec![],
                vnics_per_node: 2,
                display_name_prefix: None,
                resource_name: "plexus.io/vnic".into(),
                switch_to_vfio: false,
            },
            status: None,
        }
    }

    fn att(id: &str, name: &str, state: AttachmentState) -> VnicAttachment {
        VnicAttachment {
            id: id.into(),
            instance_id: "i".into(),
            compartment_id: "c".into(),
            availability_domain: "ad".into(),
            lifecycle_state: state,
            display_name: Some(name.into()),
            vnic_id: None,
            subnet_id: None,
            nic_index: None,
            vlan_tag: None,
            time_created: String::new(),
        }
    }

    fn vnic(primary: bool, tags: BTreeMap<String, String>) -> Vnic {
        Vnic {
            id: "v".into(),
            compartment_id: "c".into(),
            availability_domain: "ad".into(),
            lifecycle_state: plexus_oci::model::VnicState::Available,
            display_name: None,
            is_primary: primary,
            mac_address: None,
            private_ip: None,
            subnet_id: "s".into(),
            nsg_ids: vec![],
            freeform_tags: tags,
            skip_source_dest_check: false,
            time_created: String::new(),
        }
    }

    #[test]
    fn plans_missing_surplus_and_ignores_foreign_and_primary() {
        let p = pool();
        let obs = vec![
            Observed {
                attachment: att("prim", "primary", AttachmentState::Attached),
                vnic: Some(vnic(true, tags(&p, 0))),
            },
            Observed {
                attachment: att("foreign", "plexus-pods-1", AttachmentState::Attached),
                vnic: Some(vnic(false, BTreeMap::new())),
            },
            Observed {
                attachment: att("a0", "plexus-pods-0", AttachmentState::Attached),
                vnic: Some(vnic(false, tags(&p, 0))),
            },
            Observed {
                attachment: att("a3", "plexus-pods-3", AttachmentState::Attached),
                vnic: Some(vnic(false, tags(&p, 3))),
            },
            Observed {
                attachment: att("old", "plexus-pods-1", AttachmentState::Detached),
                vnic: None,
            },
        ];
        let plan = plan(&p, 2, &obs);
        assert_eq!(plan.attached, 1);
        assert_eq!(plan.attach, vec![1]);
        assert_eq!(plan.detach, vec!["a3".to_string()]);
    }

    #[test]
    fn attaching_fills_its_slot_by_name_and_is_never_detached() {
        let p = pool();
        let obs = vec![
            Observed {
                attachment: att("a1", "plexus-pods-1", AttachmentState::Attaching),
                vnic: None,
            },
            Observed {
                attachment: att("a5", "plexus-pods-5", AttachmentState::Attaching),
                vnic: None,
            },
            Observed {
                attachment: att("x", "plexus-pods-10x", AttachmentState::Attaching),
                vnic: None,
            },
        ];
        let plan = plan(&p, 2, &obs);
        assert_eq!(plan.attach, vec![0]);
        assert!(plan.detach.is_empty());
        assert_eq!(plan.attaching, vec!["a1".to_string(), "a5".to_string()]);
    }

    #[test]
    fn retry_tokens_are_stable_per_intent() {
        let mut p = pool();
        let a = retry_token(&p, "i", 0, Some(NetworkType::Vfio));
        assert_eq!(a.len(), 64);
        assert_eq!(a, retry_token(&p, "i", 0, Some(NetworkType::Vfio)));
        assert_ne!(a, retry_token(&p, "i", 1, Some(NetworkType::Vfio)));
        assert_ne!(
            a,
            retry_token(&p, "i", 0, Some(NetworkType::Paravirtualized))
        );
        p.metadata.generation = 2;
        assert_ne!(a, retry_token(&p, "i", 0, Some(NetworkType::Vfio)));
    }
}
