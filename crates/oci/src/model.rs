//! Core Services wire types (API version 20160918) in OCI's camelCase JSON,
//! limited to the fields Plexus reads or writes (oci.md §3.1, §3.2). The fake
//! OCI API in the test kit serves these same types, so a field rename breaks
//! both sides at once.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The API version path prefix.
pub const API_PREFIX: &str = "/20160918";

/// `VnicAttachment.lifecycleState`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AttachmentState {
    Attaching,
    Attached,
    Detaching,
    Detached,
}

/// A VNIC attachment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VnicAttachment {
    pub id: String,
    pub instance_id: String,
    pub compartment_id: String,
    pub availability_domain: String,
    pub lifecycle_state: AttachmentState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// Set once the attachment is complete (null while ATTACHING).
    #[serde(default)]
    pub vnic_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nic_index: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vlan_tag: Option<u32>,
    pub time_created: String,
}

/// `Vnic.lifecycleState`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum VnicState {
    Provisioning,
    Available,
    Terminating,
    Terminated,
}

/// A VNIC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Vnic {
    pub id: String,
    pub compartment_id: String,
    pub availability_domain: String,
    pub lifecycle_state: VnicState,
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub is_primary: bool,
    #[serde(default)]
    pub mac_address: Option<String>,
    #[serde(default)]
    pub private_ip: Option<String>,
    pub subnet_id: String,
    #[serde(default)]
    pub nsg_ids: Vec<String>,
    #[serde(default)]
    pub freeform_tags: BTreeMap<String, String>,
    #[serde(default)]
    pub skip_source_dest_check: bool,
    pub time_created: String,
}

/// `CreateVnicDetails` (the subset Plexus sends).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateVnicDetails {
    pub subnet_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nsg_ids: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub freeform_tags: BTreeMap<String, String>,
    #[serde(default)]
    pub assign_public_ip: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skip_source_dest_check: Option<bool>,
}

/// `AttachVnicDetails`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AttachVnicDetails {
    pub create_vnic_details: CreateVnicDetails,
    pub instance_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
}

/// `LaunchOptions.networkType` / `UpdateLaunchOptions.networkType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum NetworkType {
    E1000,
    Vfio,
    Paravirtualized,
}

/// `LaunchOptions` (the field Plexus reads).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LaunchOptions {
    #[serde(default)]
    pub network_type: Option<NetworkType>,
}

/// `Instance.lifecycleState` values Plexus distinguishes; others are kept
/// as text.
pub const INSTANCE_RUNNING: &str = "RUNNING";

/// An instance (the fields Plexus reads).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Instance {
    pub id: String,
    pub compartment_id: String,
    pub availability_domain: String,
    pub lifecycle_state: String,
    #[serde(default)]
    pub display_name: Option<String>,
    pub shape: String,
    #[serde(default)]
    pub launch_options: Option<LaunchOptions>,
    pub time_created: String,
}

/// `UpdateInstanceDetails` (only the launch options).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateInstanceDetails {
    pub launch_options: UpdateLaunchOptions,
}

/// `UpdateLaunchOptions`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateLaunchOptions {
    pub network_type: NetworkType,
}

/// The error body every OCI service returns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub code: String,
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attach_details_serialise_in_camel_case() {
        let d = AttachVnicDetails {
            create_vnic_details: CreateVnicDetails {
                subnet_id: "ocid1.subnet.oc1..s".into(),
                display_name: Some("plexus-0".into()),
                nsg_ids: vec!["ocid1.nsg.oc1..n".into()],
                freeform_tags: BTreeMap::from([("plexus.io/pool".into(), "p".into())]),
                assign_public_ip: false,
                skip_source_dest_check: None,
            },
            instance_id: "ocid1.instance.oc1..i".into(),
            display_name: Some("plexus-0".into()),
        };
        let v = serde_json::to_value(&d).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "createVnicDetails": {
                    "subnetId": "ocid1.subnet.oc1..s",
                    "displayName": "plexus-0",
                    "nsgIds": ["ocid1.nsg.oc1..n"],
                    "freeformTags": {"plexus.io/pool": "p"},
                    "assignPublicIp": false
                },
                "instanceId": "ocid1.instance.oc1..i",
                "displayName": "plexus-0"
            })
        );
        let a: VnicAttachment = serde_json::from_value(serde_json::json!({
            "id": "a", "instanceId": "i", "compartmentId": "c", "availabilityDomain": "AD-1",
            "lifecycleState": "ATTACHING", "vnicId": null, "timeCreated": "2026-01-01T00:00:00.000Z"
        }))
        .unwrap();
        assert_eq!(a.lifecycle_state, AttachmentState::Attaching);
        assert_eq!(a.vnic_id, None);
    }
}
