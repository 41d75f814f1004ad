//! Devices by PCI address: an allocated device ID, a userspace-driver device.

use std::os::unix::fs::symlink;
use std::path::Path;

use plexus_host_device::net::Side;
use plexus_host_device::testing::World;
use serde_json::json;

use crate::support::{Env, MAC, POD};

/// sysfs with 0000:00:04.0 -> ens6 (mlx5_core) and 0000:00:05.0 on vfio-pci.
fn sysfs(root: &Path) {
    let devs = root.join("sys/devices/pci0000:00");
    let bus = root.join("sys/bus/pci/devices");
    std::fs::create_dir_all(&bus).unwrap();
    for (addr, driver) in [("0000:00:04.0", "mlx5_core"), ("0000:00:05.0", "vfio-pci")] {
        std::fs::create_dir_all(devs.join(addr)).unwrap();
        std::fs::create_dir_all(root.join("sys/bus/pci/drivers").join(driver)).unwrap();
        symlink(
            format!("../../../devices/pci0000:00/{addr}"),
            bus.join(addr),
        )
        .unwrap();
        symlink(
            format!("../../../bus/pci/drivers/{driver}"),
            devs.join(addr).join("driver"),
        )
        .unwrap();
    }
    std::fs::create_dir_all(devs.join("0000:00:04.0/net/ens6")).unwrap();
}

#[test]
fn allocated_device_id_wins_over_device_name() {
    let mut w = World::new(POD);
    w.add_link(Side::Host, "ens5", MAC, 9000, true);
    w.add_link(Side::Host, "ens6", "02:00:00:00:00:06", 1500, false);
    let env = Env::with_world(w);
    sysfs(&env.plugin.sys_root);
    env.ipam_ok("1.1.0");
    let out = env
        .add(
            "1.1.0",
            json!({"runtimeConfig": {"deviceID": "0000:00:04.0"}}),
        )
        .unwrap();
    assert_eq!(out["interfaces"][0]["mac"], "02:00:00:00:00:06");
    assert_eq!(out["interfaces"][0]["pciID"], "0000:00:04.0");
    assert!(env.world().get(Side::Host, "ens5").is_some());
    env.del(
        POD,
        "1.1.0",
        json!({"runtimeConfig": {"deviceID": "0000:00:04.0"}}),
    )
    .unwrap();
    let w = env.world();
    let l = &w.get(Side::Host, "ens6").unwrap().link;
    assert_eq!((l.mtu, l.up), (1500, false));
}

#[test]
fn userspace_driver_device_is_reported_not_moved() {
    let env = Env::new();
    sysfs(&env.plugin.sys_root);
    env.ipam_ok("1.1.0");
    let out = env
        .add("1.1.0", json!({"device": null, "pciBusID": "00:05.0"}))
        .unwrap();
    assert_eq!(out["interfaces"][0]["pciID"], "0000:00:05.0");
    assert_eq!(out["interfaces"][0]["sandbox"], POD);
    assert!(out["interfaces"][0].get("mac").is_none());
    assert!(env.world().pod.as_ref().unwrap().is_empty());
    env.del(POD, "1.1.0", json!({"device": null, "pciBusID": "00:05.0"}))
        .unwrap();
    assert!(env.state_files().is_empty());
}
