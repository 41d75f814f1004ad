//! A sample node for the inventory's and `status`' tests.

use super::*;
use plexus_imds::Vnic;
use plexus_sysfs::testing::{macs, oci_vm_node};

/// MAC of the VF at 0000:00:08.0, now in a pod.
pub const MAC_IN_POD: &str = "02:00:17:00:00:08";
/// A VNIC no device carries.
pub const MAC_MISSING: &str = "02:00:17:00:00:77";

pub fn vnic(id: &str, mac: &str, ip: &str, subnet: &str, gw: &str) -> Vnic {
    serde_json::from_value(serde_json::json!({
        "vnicId": format!("ocid1.vnic.oc1.phx.{id}"), "privateIp": ip, "macAddr": mac.to_uppercase(),
        "virtualRouterIp": gw, "subnetCidrBlock": subnet
    }))
    .unwrap()
}

pub fn vnics() -> Vec<Vnic> {
    vec![
        vnic(
            "primary",
            macs::PRIMARY,
            "198.51.100.10",
            "198.51.100.0/24",
            "198.51.100.1",
        ),
        vnic(
            "single",
            macs::SINGLE_VF,
            "198.51.100.20",
            "198.51.100.0/24",
            "198.51.100.1",
        ),
        vnic(
            "shared",
            macs::SHARED,
            "203.0.113.30",
            "203.0.113.0/25",
            "203.0.113.1",
        ),
        vnic(
            "inpod",
            MAC_IN_POD,
            "198.51.100.40",
            "198.51.100.0/24",
            "198.51.100.1",
        ),
        vnic(
            "missing",
            MAC_MISSING,
            "203.0.113.50",
            "203.0.113.0/25",
            "203.0.113.1",
        ),
    ]
}

pub fn claims() -> Vec<PodClaim> {
    vec![PodClaim {
        pci: Some("0000:00:08.0".parse().unwrap()),
        mac: Some(MAC_IN_POD.into()),
        host_ifname: Some("ens8".into()),
        pod: PodRef {
            container_id: "c0ffee".into(),
            pod: Some("default/web-1".into()),
            ifname: Some("net1".into()),
            netns: Some("/var/run/netns/cni-1".into()),
        },
    }]
}

/// [`vnics`] as the provider hands them to the agent.
pub fn nics() -> Vec<NodeNic> {
    vnics().iter().map(NodeNic::from).collect()
}

/// The generated OCI VM node joined with [`vnics`] and [`claims`].
pub fn inventory() -> Inventory {
    let dir = tempfile::tempdir().unwrap();
    let node = oci_vm_node(dir.path()).unwrap();
    let d = plexus_sysfs::discover(node.root()).unwrap();
    join(&d, &nics(), &claims(), None)
}
