use super::*;

fn dev(pci: &str, numa: Option<i64>) -> VfDevice {
    VfDevice {
        pci: pci.into(),
        netdev: None,
        driver: Some("mlx5_core".into()),
        iommu_group: None,
        numa_node: numa,
        healthy: true,
    }
}

#[test]
fn env_name_follows_sriov_dp() {
    assert_eq!(env_name("plexus.io/vf"), "PCIDEVICE_PLEXUS_IO_VF");
    assert_eq!(
        env_name("intel.com/sriov_net_A"),
        "PCIDEVICE_INTEL_COM_SRIOV_NET_A"
    );
}

#[test]
fn preferred_keeps_must_include_and_prefers_its_numa_node() {
    let devs = vec![
        dev("0000:00:04.0", Some(0)),
        dev("0000:00:05.0", Some(1)),
        dev("0000:00:06.0", Some(0)),
        dev("0000:00:07.0", Some(1)),
    ];
    let all: Vec<String> = devs.iter().map(|d| d.pci.clone()).collect();
    assert_eq!(
        preferred(&devs, &all, &["0000:00:07.0".into()], 2),
        vec!["0000:00:07.0", "0000:00:05.0"]
    );
    assert_eq!(
        preferred(&devs, &all, &[], 2),
        vec!["0000:00:04.0", "0000:00:06.0"]
    );
    assert_eq!(preferred(&devs, &all[..1], &[], 3), vec!["0000:00:04.0"]);
}

#[test]
fn allocate_unknown_is_error_and_vfio_gets_specs() {
    let mut v = dev("0000:00:05.0", None);
    v.driver = Some("vfio-pci".into());
    v.iommu_group = Some("7".into());
    let r = allocate_container("plexus.io/vf", &[v], &["0000:00:05.0".into()]).unwrap();
    let paths: Vec<_> = r.devices.iter().map(|d| d.host_path.as_str()).collect();
    assert_eq!(paths, vec!["/dev/vfio/vfio", "/dev/vfio/7"]);
    assert!(allocate_container("plexus.io/vf", &[], &["x".into()]).is_err());
}
