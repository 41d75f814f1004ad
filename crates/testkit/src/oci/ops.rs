//! The fake OCI API's resources: instances, VNIC attachments and VNICs,
//! their lifecycle (delays, reboots), and the IMDS view of an instance.

use std::collections::BTreeMap;
use std::time::{Instant, SystemTime};

use plexus_oci::model::{
    AttachVnicDetails, AttachmentState, Instance, LaunchOptions, NetworkType,
    UpdateInstanceDetails, Vnic, VnicAttachment, VnicState,
};
use serde_json::{json, Value};

use super::api::{error, not_found, Answer};
use super::{AttachmentState as Att, InstanceSeed, InstanceState, State};

pub(super) fn now_rfc3339() -> String {
    let secs = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    plexus_cni::timefmt::rfc3339(secs)
}

pub(super) fn add_instance(s: &mut State, seed: InstanceSeed) {
    s.counter += 1;
    let vnic = Vnic {
        id: format!("ocid1.vnic.oc1.phx.primary{:06}", s.counter),
        compartment_id: seed.compartment_id.clone(),
        availability_domain: seed.availability_domain.clone(),
        lifecycle_state: VnicState::Available,
        display_name: Some("primary".into()),
        is_primary: true,
        mac_address: Some(seed.primary_mac.clone()),
        private_ip: Some(seed.primary_ip.clone()),
        subnet_id: seed.primary_subnet.clone(),
        nsg_ids: Vec::new(),
        freeform_tags: BTreeMap::new(),
        skip_source_dest_check: false,
        time_created: now_rfc3339(),
    };
    let attachment = VnicAttachment {
        id: format!("ocid1.vnicattachment.oc1.phx.fake{:06}", s.counter),
        instance_id: seed.id.clone(),
        compartment_id: seed.compartment_id.clone(),
        availability_domain: seed.availability_domain.clone(),
        lifecycle_state: AttachmentState::Attached,
        display_name: Some("primary".into()),
        vnic_id: Some(vnic.id.clone()),
        subnet_id: Some(seed.primary_subnet.clone()),
        nic_index: None,
        vlan_tag: Some(0),
        time_created: vnic.time_created.clone(),
    };
    s.primaries.insert(seed.id.clone(), vnic.clone());
    s.attachments.insert(
        attachment.id.clone(),
        Att {
            attachment,
            settle_at: Instant::now(),
            vnic,
        },
    );
    s.instances.insert(
        seed.id.clone(),
        InstanceState {
            network_type: seed.network_type,
            seed,
            lifecycle: "RUNNING".into(),
            running_at: None,
            next_mac: 0,
            reboots: 0,
        },
    );
}

/// Advances lifecycle states whose delay has passed.
pub(super) fn settle(s: &mut State) {
    let now = Instant::now();
    let stuck = s.stuck_attaching;
    for a in s.attachments.values_mut() {
        if now < a.settle_at {
            continue;
        }
        match a.attachment.lifecycle_state {
            AttachmentState::Attaching if !stuck => {
                a.attachment.lifecycle_state = AttachmentState::Attached;
                a.attachment.vnic_id = Some(a.vnic.id.clone());
                a.vnic.lifecycle_state = VnicState::Available;
            }
            AttachmentState::Detaching => {
                a.attachment.lifecycle_state = AttachmentState::Detached;
                a.vnic.lifecycle_state = VnicState::Terminated;
            }
            _ => {}
        }
    }
    for i in s.instances.values_mut() {
        if i.running_at.is_some_and(|t| now >= t) {
            i.running_at = None;
            i.lifecycle = "RUNNING".into();
        }
    }
}

/// `/opc/v2/vnics/` as IMDS shows it: primary first, then attached
/// secondaries in creation order, MACs upper-case.
pub(super) fn imds_vnics(s: &State, instance_id: &str) -> Value {
    let mut out = Vec::new();
    let mut push = |v: &Vnic| {
        let Some((subnet, _)) = s.subnets.get(&v.subnet_id) else {
            return;
        };
        out.push(json!({
            "vnicId": v.id,
            "privateIp": v.private_ip,
            "vlanTag": 0,
            "macAddr": v.mac_address.as_deref().unwrap_or("").to_ascii_uppercase(),
            "virtualRouterIp": subnet.gateway,
            "subnetCidrBlock": subnet.cidr,
        }));
    };
    if let Some(p) = s.primaries.get(instance_id) {
        push(p);
    }
    for a in s.attachments.values() {
        let att = &a.attachment;
        if att.instance_id == instance_id
            && !a.vnic.is_primary
            && att.lifecycle_state == AttachmentState::Attached
        {
            push(&a.vnic);
        }
    }
    Value::Array(out)
}

pub(super) fn to_json<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or_default()
}

pub(super) fn instance_json(i: &InstanceState) -> Value {
    to_json(&Instance {
        id: i.seed.id.clone(),
        compartment_id: i.seed.compartment_id.clone(),
        availability_domain: i.seed.availability_domain.clone(),
        lifecycle_state: i.lifecycle.clone(),
        display_name: Some(i.seed.id.clone()),
        shape: "VM.Standard.E4.Flex".into(),
        launch_options: Some(LaunchOptions {
            network_type: Some(i.network_type),
        }),
        time_created: "2026-01-01T00:00:00.000Z".into(),
    })
}

pub(super) fn list_attachments(s: &State, q: &BTreeMap<String, String>) -> Answer {
    let Some(compartment) = q.get("compartmentId") else {
        return error(400, "MissingParameter", "Missing compartmentId");
    };
    let limit: usize = q
        .get("limit")
        .and_then(|l| l.parse().ok())
        .unwrap_or(100)
        .clamp(1, 1000);
    let offset: usize = match q.get("page") {
        Some(p) => match p.strip_prefix("fakepage-").and_then(|n| n.parse().ok()) {
            Some(n) => n,
            None => return error(400, "InvalidParameter", "Invalid page token"),
        },
        None => 0,
    };
    let all: Vec<&VnicAttachment> = s
        .attachments
        .values()
        .map(|a| &a.attachment)
        .filter(|a| &a.compartment_id == compartment)
        .filter(|a| q.get("instanceId").is_none_or(|i| &a.instance_id == i))
        .collect();
    let page: Vec<Value> = all
        .iter()
        .skip(offset)
        .take(limit)
        .map(|a| to_json(*a))
        .collect();
    let mut headers = Vec::new();
    if offset + limit < all.len() {
        headers.push(("opc-next-page", format!("fakepage-{}", offset + limit)));
    }
    (200, Value::Array(page), headers)
}

pub(super) fn attach(s: &mut State, body: &[u8]) -> Answer {
    let details: AttachVnicDetails = match serde_json::from_slice(body) {
        Ok(d) => d,
        Err(e) => {
            return error(
                400,
                "InvalidParameter",
                &format!("Invalid AttachVnicDetails: {e}"),
            )
        }
    };
    let Some(inst) = s.instances.get(&details.instance_id) else {
        return not_found();
    };
    if inst.lifecycle != "RUNNING" {
        return error(409, "IncorrectState", "The instance is not running.");
    }
    let subnet_id = details.create_vnic_details.subnet_id.clone();
    let Some((subnet, used)) = s.subnets.get(&subnet_id).cloned() else {
        return not_found();
    };
    let Some(mac) = inst.seed.macs.get(inst.next_mac).cloned() else {
        return error(
            400,
            "LimitExceeded",
            "The instance has reached its VNIC attachment limit.",
        );
    };
    let (compartment, ad) = (
        inst.seed.compartment_id.clone(),
        inst.seed.availability_domain.clone(),
    );
    s.counter += 1;
    let n = s.counter;
    let ip = std::net::Ipv4Addr::from(u32::from(subnet.first_host) + used);
    if let Some(e) = s.subnets.get_mut(&subnet_id) {
        e.1 += 1;
    }
    if let Some(i) = s.instances.get_mut(&details.instance_id) {
        i.next_mac += 1;
    }
    let vnic = new_vnic(&details, n, (&compartment, &ad), mac, ip);
    let attachment = VnicAttachment {
        id: format!("ocid1.vnicattachment.oc1.phx.fake{n:06}"),
        instance_id: details.instance_id.clone(),
        compartment_id: compartment,
        availability_domain: ad,
        lifecycle_state: AttachmentState::Attaching,
        display_name: details.display_name.clone(),
        vnic_id: None,
        subnet_id: Some(subnet_id),
        nic_index: None,
        vlan_tag: None,
        time_created: vnic.time_created.clone(),
    };
    let answer = to_json(&attachment);
    let settle_at = Instant::now() + s.attach_delay;
    s.attachments.insert(
        attachment.id.clone(),
        Att {
            attachment,
            settle_at,
            vnic,
        },
    );
    (200, answer, Vec::new())
}

pub(super) fn detach(s: &mut State, id: &str) -> Answer {
    let delay = s.detach_delay;
    let Some(a) = s.attachments.get_mut(id) else {
        return not_found();
    };
    if a.vnic.is_primary {
        return error(
            409,
            "IncorrectState",
            "The primary VNIC cannot be detached.",
        );
    }
    if a.attachment.lifecycle_state != AttachmentState::Attached {
        return error(
            409,
            "IncorrectState",
            "The VNIC attachment is not ATTACHED.",
        );
    }
    a.attachment.lifecycle_state = AttachmentState::Detaching;
    a.vnic.lifecycle_state = VnicState::Terminating;
    a.settle_at = Instant::now() + delay;
    (204, Value::Null, Vec::new())
}

pub(super) fn update_instance(s: &mut State, id: &str, body: &[u8]) -> Answer {
    let details: UpdateInstanceDetails = match serde_json::from_slice(body) {
        Ok(d) => d,
        Err(e) => {
            return error(
                400,
                "InvalidParameter",
                &format!("Invalid UpdateInstanceDetails: {e}"),
            )
        }
    };
    let busy = s.attachments.values().any(|a| {
        a.attachment.instance_id == id
            && !a.vnic.is_primary
            && a.attachment.lifecycle_state != AttachmentState::Detached
    });
    let reboot = s.reboot_delay;
    let Some(inst) = s.instances.get_mut(id) else {
        return not_found();
    };
    let want = details.launch_options.network_type;
    if want != inst.network_type {
        if busy {
            return error(
                409,
                "IncorrectState",
                "Detach all VNICs except the primary VNIC before changing the network type.",
            );
        }
        if want == NetworkType::E1000 {
            return error(
                400,
                "InvalidParameter",
                "E1000 is not supported on this shape.",
            );
        }
        inst.network_type = want;
        inst.lifecycle = "STOPPING".into();
        inst.running_at = Some(Instant::now() + reboot);
        inst.reboots += 1;
    }
    let work = format!("ocid1.coreservicesworkrequest.oc1.phx.fake{}", inst.reboots);
    (
        200,
        instance_json(inst),
        vec![("opc-work-request-id", work)],
    )
}

/// The VNIC an `AttachVnic` creates (PROVISIONING until attached).
fn new_vnic(
    details: &AttachVnicDetails,
    n: u64,
    (compartment, ad): (&str, &str),
    mac: String,
    ip: std::net::Ipv4Addr,
) -> Vnic {
    let c = &details.create_vnic_details;
    Vnic {
        id: format!("ocid1.vnic.oc1.phx.fake{n:06}"),
        compartment_id: compartment.to_owned(),
        availability_domain: ad.to_owned(),
        lifecycle_state: VnicState::Provisioning,
        display_name: c.display_name.clone(),
        is_primary: false,
        mac_address: Some(mac),
        private_ip: Some(ip.to_string()),
        subnet_id: c.subnet_id.clone(),
        nsg_ids: c.nsg_ids.clone(),
        freeform_tags: c.freeform_tags.clone(),
        skip_source_dest_check: c.skip_source_dest_check.unwrap_or(false),
        time_created: now_rfc3339(),
    }
}
