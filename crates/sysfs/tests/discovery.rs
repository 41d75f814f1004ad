//! Discovery against the generated OCI-VM-like sysfs tree, with a golden
//! JSON of the full output. `PLEXUS_BLESS=1` rewrites the golden file.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use plexus_sysfs::discover::{mac_of_netdev, netdev_info, netdevs_with_mac};
use plexus_sysfs::testing::{macs, oci_vm_node};
use plexus_sysfs::{discover, Binding, PciAddr, PciError, Role};

fn addr(s: &str) -> PciAddr {
    s.parse().unwrap()
}

#[test]
fn golden_discovery_of_oci_vm_node() {
    let dir = tempfile::tempdir().unwrap();
    let node = oci_vm_node(dir.path()).unwrap();
    let found = discover(node.root()).unwrap();
    let json = serde_json::to_string_pretty(&found).unwrap() + "\n";
    let golden =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/discovery.golden.json");
    if std::env::var_os("PLEXUS_BLESS").is_some() {
        std::fs::write(&golden, &json).unwrap();
    }
    assert_eq!(json, std::fs::read_to_string(&golden).unwrap());
}

#[test]
fn classifies_every_case() {
    let dir = tempfile::tempdir().unwrap();
    let node = oci_vm_node(dir.path()).unwrap();
    let d = discover(node.root()).unwrap();
    // virtio-blk is not a network device; virtual netdevs are skipped.
    assert!(d.function(&addr("0000:00:01.0")).is_none());
    assert!(d.by_netdev("lo").is_none() && d.by_netdev("veth0").is_none());
    let primary = d.function(&addr("0000:00:03.0")).unwrap();
    assert_eq!(
        (
            primary.role.clone(),
            primary.netdev().unwrap().name.as_str()
        ),
        (Role::Nic, "ens3")
    );
    // In-VM VF: no physfn, identified by ID.
    let ens4 = d.by_netdev("ens4").unwrap();
    assert_eq!(ens4.role, Role::Vf { pf: None });
    assert_eq!(ens4.vf_model.as_deref(), Some("ConnectX mlx5Gen VF"));
    // MAC read upper-case from sysfs is normalised.
    assert_eq!(
        ens4.netdev().unwrap().mac.map(|m| m.to_string()).as_deref(),
        Some(macs::SINGLE_VF)
    );
    // Two VFs, one MAC.
    let shared: Vec<_> = d
        .by_mac(&macs::SHARED.to_uppercase().parse().unwrap())
        .iter()
        .map(|f| f.pci)
        .collect();
    assert_eq!(shared, vec![addr("0000:00:05.0"), addr("0000:00:06.0")]);
    let vfio = d.function(&addr("0000:00:07.0")).unwrap();
    assert_eq!(vfio.binding, Binding::Userspace);
    assert!(vfio.netdevs.is_empty() && vfio.is_vf());
    let hidden = d.function(&addr("0000:00:08.0")).unwrap();
    assert_eq!(hidden.binding, Binding::Kernel);
    assert!(hidden.netdevs.is_empty());
    let no_mac = d.by_netdev("ens9").unwrap();
    assert_eq!(no_mac.netdev().unwrap().mac, None);
    assert_eq!(no_mac.netdev().unwrap().operstate.as_deref(), Some("down"));
    let pf = d.function(&addr("0000:3b:00.0")).unwrap();
    assert_eq!(
        pf.role,
        Role::Pf {
            vfs: vec![addr("0000:3b:00.2"), addr("0000:3b:00.3")]
        }
    );
    assert_eq!(pf.numa_node, Some(0));
    assert_eq!(
        d.function(&addr("0000:3b:00.3")).unwrap().role,
        Role::Vf {
            pf: Some(addr("0000:3b:00.0"))
        }
    );
    assert_eq!(primary.numa_node, None);
}

#[test]
fn netdev_lookups_and_moved_device() {
    let dir = tempfile::tempdir().unwrap();
    let node = oci_vm_node(dir.path()).unwrap();
    let r = node.root();
    assert_eq!(
        mac_of_netdev(r, "ens5")
            .unwrap()
            .map(|m| m.to_string())
            .as_deref(),
        Some(macs::SHARED)
    );
    assert_eq!(mac_of_netdev(r, "ens9").unwrap(), None);
    // lo's all-zero address is no MAC.
    assert_eq!(mac_of_netdev(r, "lo").unwrap(), None);
    assert_eq!(netdev_info(r, "ens3").unwrap().mtu, Some(9000));
    assert!(matches!(netdev_info(r, "nope"), Err(PciError::NotFound(_))));
    assert_eq!(
        netdevs_with_mac(r, &macs::SHARED.to_uppercase().parse().unwrap()).unwrap(),
        ["ens5", "ens6"]
    );
    node.hide_netdev("ens4").unwrap();
    let d = discover(r).unwrap();
    let f = d.function(&addr("0000:00:04.0")).unwrap();
    assert!(f.netdevs.is_empty());
    assert_eq!(f.binding, Binding::Kernel);
    assert!(netdevs_with_mac(r, &macs::SINGLE_VF.parse().unwrap())
        .unwrap()
        .is_empty());
}

#[test]
fn empty_root_discovers_nothing() {
    let dir = tempfile::tempdir().unwrap();
    assert!(discover(dir.path()).unwrap().functions.is_empty());
}
