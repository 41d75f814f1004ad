//! One reconcile pass, and the one-shot `vnic apply`, with fakes only (no
//! root): in-memory netlink, scripted metadata, fake sysfs, temp CNI caches.

#![allow(clippy::unwrap_used)]

use std::cell::RefCell;
use std::path::Path;

use plexus_agent::metrics::Metrics;
use plexus_agent::reconcile::{apply_once, reconcile_once, ReconcileConfig, ReconcileError, Seams};
use plexus_agent::repair::{HostLink, RepairOps};
use plexus_agent::vnic::testing::FakeNet;
use plexus_agent::vnic::{Current, Link, VnicConfig};
use plexus_imds::testing::StaticMetadata;
use plexus_imds::Vnic;
use plexus_sysfs::testing::{FakeSysfs, FunctionSpec};
use serde_json::json;

fn vnics() -> Vec<Vnic> {
    serde_json::from_value(json!([
        {"vnicId": "ocid1.vnic.primary", "privateIp": "198.51.100.10", "macAddr": "02:00:17:EE:00:01",
         "virtualRouterIp": "198.51.100.1", "subnetCidrBlock": "198.51.100.0/25"},
        {"vnicId": "ocid1.vnic.one", "privateIp": "203.0.113.93", "macAddr": "02:00:17:EE:00:02",
         "virtualRouterIp": "203.0.113.1", "subnetCidrBlock": "203.0.113.0/24"}
    ]))
    .unwrap()
}

/// Repair seam over the same fake links; records renames.
#[derive(Default)]
struct FakeRepair {
    links: Vec<HostLink>,
    renamed: RefCell<Vec<(String, String)>>,
}

impl RepairOps for FakeRepair {
    fn links(&self) -> Result<Vec<HostLink>, String> {
        Ok(self.links.clone())
    }
    fn rename(&self, from: &str, to: &str) -> Result<(), String> {
        self.renamed.borrow_mut().push((from.into(), to.into()));
        Ok(())
    }
    fn remove(&self, path: &Path) -> Result<(), String> {
        std::fs::remove_file(path).map_err(|e| e.to_string())
    }
}

/// The node's filesystem root is `<root>/host` (as in the DaemonSet):
/// sysfs at `<root>/host/sys`.
fn setup(root: &Path) -> (ReconcileConfig, FakeNet) {
    let sys = FakeSysfs::new(&root.join("host")).unwrap();
    sys.add_function(
        &FunctionSpec::new("0000:00:03.0", 0x1af4, 0x1000)
            .driver("virtio-pci")
            .netdev("ens3", Some("02:00:17:ee:00:01")),
    )
    .unwrap();
    sys.add_function(
        &FunctionSpec::new("0000:00:05.0", 0x15b3, 0x101e)
            .driver("mlx5_core")
            .netdev("ens5", Some("02:00:17:ee:00:02")),
    )
    .unwrap();
    sys.set_iommu_group("0000:00:05.0", 7).unwrap();
    let cfg = ReconcileConfig {
        vnic: VnicConfig::default(),
        host_root: root.join("host"),
        state_path: root.join("run/state.json"),
        host_device_dir: root.join("hd"),
        meta_cache_dir: root.join("meta"),
    };
    let net = FakeNet::new(Current {
        links: vec![
            Link {
                name: "ens3".into(),
                mac: "02:00:17:ee:00:01".parse().unwrap(),
                mtu: 9000,
                up: true,
                addrs: vec!["198.51.100.10/25".parse().unwrap()],
                accept_ra: false,
            },
            Link {
                name: "ens5".into(),
                mac: "02:00:17:ee:00:02".parse().unwrap(),
                mtu: 1500,
                up: false,
                addrs: vec![],
                accept_ra: false,
            },
        ],
        ..Current::default()
    });
    (cfg, net)
}

#[test]
fn pass_configures_publishes_devices_and_state_then_settles() {
    let tmp = tempfile::tempdir().unwrap();
    let (cfg, net) = setup(tmp.path());
    let md = StaticMetadata::new(vnics(), None);
    let metrics = Metrics::new();
    let repair = FakeRepair::default();
    let seams = Seams {
        metadata: &md,
        metrics: &metrics,
        net: &net,
        repair: &repair,
    };
    let r = reconcile_once(&cfg, &seams).unwrap();
    assert!(r.applied.failed.is_empty());
    assert_eq!(r.applied.applied.len(), 7, "{:?}", r.plan.actions);
    assert!(r.state_written);
    let devs: Vec<_> = r
        .devices
        .iter()
        .map(|d| (d.pci.as_str(), d.healthy, d.iommu_group.as_deref()))
        .collect();
    assert_eq!(devs, vec![("0000:00:05.0", true, Some("7"))]);
    assert_eq!(r.counts.host, 1);
    let st = plexus_imds::node_state::NodeState::read(&cfg.state_path)
        .unwrap()
        .unwrap();
    let one = st.find_by_pci("0000:00:05.0").unwrap();
    assert_eq!(one.ip.to_string(), "203.0.113.93");
    assert_eq!(one.ifname.as_deref(), Some("ens5"));

    // Steady state: nothing to apply, nothing to write.
    let again = reconcile_once(&cfg, &seams).unwrap();
    assert!(again.plan.is_empty());
    assert!(!again.state_written);
    assert!(metrics
        .render()
        .contains("plexus_state_file_writes_total 1\n"));
}

#[test]
fn imds_failure_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let (cfg, net) = setup(tmp.path());
    let before = net.snapshot();
    let md = StaticMetadata::failing(503);
    let metrics = Metrics::new();
    let repair = FakeRepair::default();
    let seams = Seams {
        metadata: &md,
        metrics: &metrics,
        net: &net,
        repair: &repair,
    };
    let err = reconcile_once(&cfg, &seams).unwrap_err();
    assert!(matches!(err, ReconcileError::Vnic(_)), "{err}");
    assert!(err.to_string().contains("503"), "{err}");
    assert_eq!(net.snapshot(), before);
    assert!(!cfg.state_path.exists());
}

#[test]
fn stranded_vf_is_renamed_before_configuration() {
    let tmp = tempfile::tempdir().unwrap();
    let (cfg, net) = setup(tmp.path());
    // The previous state knew the VF as ens5; it is back as net1.
    let md = StaticMetadata::new(vnics(), None);
    let metrics = Metrics::new();
    let repair = FakeRepair::default();
    let seams = Seams {
        metadata: &md,
        metrics: &metrics,
        net: &net,
        repair: &repair,
    };
    reconcile_once(&cfg, &seams).unwrap();
    let stranded = FakeRepair {
        links: vec![HostLink {
            name: "net1".into(),
            mac: "02:00:17:ee:00:02".parse().unwrap(),
            pci: Some("0000:00:05.0".into()),
        }],
        ..FakeRepair::default()
    };
    let seams = Seams {
        repair: &stranded,
        ..seams
    };
    let r = reconcile_once(&cfg, &seams).unwrap();
    assert_eq!(r.repair.actions.len(), 1, "{:?}", r.repair);
    assert_eq!(
        *stranded.renamed.borrow(),
        vec![("net1".to_string(), "ens5".to_string())]
    );
}

#[test]
fn vnic_apply_configures_and_writes_the_state_file_like_a_pass() {
    let tmp = tempfile::tempdir().unwrap();
    let (cfg, net) = setup(tmp.path());
    let md = StaticMetadata::new(vnics(), None);
    let metrics = Metrics::new();
    let r = apply_once(&cfg, &md, &net, &metrics).unwrap();
    assert!(r.applied.failed.is_empty());
    assert_eq!(r.applied.applied.len(), 7, "{:?}", r.plan.actions);
    assert!(r.state.unwrap());
    let st = plexus_imds::node_state::NodeState::read(&cfg.state_path)
        .unwrap()
        .unwrap();
    let one = st.find_by_pci("0000:00:05.0").unwrap();
    assert_eq!(one.ip.to_string(), "203.0.113.93");
    assert_eq!(one.ifname.as_deref(), Some("ens5"));
    assert!(!one.is_primary);
    assert_eq!(st.vnics.len(), 2);

    // The same file a pass writes: the pass that follows finds nothing to do.
    let again = apply_once(&cfg, &md, &net, &metrics).unwrap();
    assert!(again.plan.is_empty());
    assert!(!again.state.unwrap());
    let repair = FakeRepair::default();
    let seams = Seams {
        metadata: &md,
        metrics: &metrics,
        net: &net,
        repair: &repair,
    };
    let pass = reconcile_once(&cfg, &seams).unwrap();
    assert!(pass.plan.is_empty());
    assert!(!pass.state_written);
}

#[test]
fn vnic_apply_with_imds_down_changes_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let (cfg, net) = setup(tmp.path());
    let before = net.snapshot();
    let err = apply_once(&cfg, &StaticMetadata::failing(503), &net, &Metrics::new()).unwrap_err();
    assert!(matches!(err, ReconcileError::Vnic(_)), "{err}");
    assert_eq!(net.snapshot(), before);
    assert!(!cfg.state_path.exists());
}

#[test]
fn vnic_apply_reports_a_failed_state_write_after_configuring() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut cfg, net) = setup(tmp.path());
    let blocker = tmp.path().join("blocker");
    std::fs::write(&blocker, "").unwrap();
    cfg.state_path = blocker.join("state.json");
    let md = StaticMetadata::new(vnics(), None);
    let metrics = Metrics::new();
    let r = apply_once(&cfg, &md, &net, &metrics).unwrap();
    assert_eq!(r.applied.applied.len(), 7);
    assert!(r.state.is_err());
    assert!(metrics
        .render()
        .contains("plexus_state_file_write_errors_total 1\n"));
}
