//! Device plugin against the fake kubelet Registration socket, driven by a
//! real tonic client on the plugin's socket.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use plexus_agent::deviceplugin::{serve, DevicePluginConfig, VfDevice, DEFAULT_RESOURCE};
use plexus_kubelet_api::deviceplugin::v1beta1 as api;
use plexus_testkit::podresources::FakeRegistration;
use tokio::sync::watch;

fn vf(pci: &str, netdev: &str) -> VfDevice {
    VfDevice {
        pci: pci.into(),
        netdev: Some(netdev.into()),
        driver: Some("mlx5_core".into()),
        iommu_group: None,
        numa_node: Some(0),
        healthy: true,
    }
}

struct Running {
    kubelet: FakeRegistration,
    devinfo: tempfile::TempDir,
    cfg: DevicePluginConfig,
    devices: watch::Sender<Vec<VfDevice>>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

async fn start(initial: Vec<VfDevice>) -> Running {
    start_with(FakeRegistration::start().unwrap(), initial).await
}

async fn start_with(kubelet: FakeRegistration, initial: Vec<VfDevice>) -> Running {
    let mut cfg = DevicePluginConfig::new(DEFAULT_RESOURCE, kubelet.dir());
    cfg.check_interval = Duration::from_millis(50);
    let devinfo = tempfile::tempdir().unwrap();
    cfg.devinfo_dir = Some(devinfo.path().to_path_buf());
    let (devices, rx) = watch::channel(initial);
    let (stop, stop_rx) = watch::channel(false);
    let c = cfg.clone();
    let task = tokio::spawn(async move {
        serve(c, rx, stop_rx).await.unwrap();
    });
    Running {
        kubelet,
        devinfo,
        cfg,
        devices,
        stop,
        task,
    }
}

async fn wait_registered(r: &Running, n: usize) -> Vec<api::RegisterRequest> {
    for _ in 0..200 {
        let got = r.kubelet.requests();
        if got.len() >= n {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("only {} registration(s)", r.kubelet.requests().len());
}

async fn client(
    r: &Running,
) -> api::device_plugin_client::DevicePluginClient<tonic::transport::Channel> {
    let ch = plexus_kubelet_api::connect_unix(&r.cfg.socket_path(), Duration::from_secs(5))
        .await
        .unwrap();
    api::device_plugin_client::DevicePluginClient::new(ch)
}

async fn stop(r: Running) {
    let sock = r.cfg.socket_path();
    r.stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(5), r.task)
        .await
        .unwrap()
        .unwrap();
    assert!(!sock.exists(), "socket left behind");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registers_and_lists_then_resends_on_change() {
    let r = start(vec![vf("0000:00:05.0", "ens5")]).await;
    let reqs = wait_registered(&r, 1).await;
    assert_eq!(reqs[0].version, "v1beta1");
    assert_eq!(reqs[0].resource_name, "plexus.io/vf");
    assert_eq!(reqs[0].endpoint, "plexus_io_vf.sock");
    assert!(
        reqs[0]
            .options
            .as_ref()
            .unwrap()
            .get_preferred_allocation_available
    );

    let mut c = client(&r).await;
    let opts = c
        .get_device_plugin_options(api::Empty {})
        .await
        .unwrap()
        .into_inner();
    assert!(!opts.pre_start_required);
    let mut stream = c.list_and_watch(api::Empty {}).await.unwrap().into_inner();
    let first = stream.message().await.unwrap().unwrap();
    assert_eq!(first.devices.len(), 1);
    assert_eq!(first.devices[0].id, "0000:00:05.0");
    assert_eq!(first.devices[0].health, "Healthy");
    assert_eq!(first.devices[0].topology.as_ref().unwrap().nodes[0].id, 0);

    // A VNIC attached later, and the first one's link lost.
    let mut gone = vf("0000:00:05.0", "ens5");
    gone.healthy = false;
    r.devices
        .send(vec![gone, vf("0000:00:06.0", "ens6")])
        .unwrap();
    let second = tokio::time::timeout(Duration::from_secs(5), stream.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let got: Vec<_> = second
        .devices
        .iter()
        .map(|d| (d.id.as_str(), d.health.as_str()))
        .collect();
    assert_eq!(
        got,
        vec![("0000:00:05.0", "Unhealthy"), ("0000:00:06.0", "Healthy")]
    );
    drop(stream);
    stop(r).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allocate_returns_pci_env_and_no_mounts() {
    let r = start(vec![vf("0000:00:05.0", "ens5"), vf("0000:00:06.0", "ens6")]).await;
    wait_registered(&r, 1).await;
    let mut c = client(&r).await;
    let resp = c
        .allocate(api::AllocateRequest {
            container_requests: vec![api::ContainerAllocateRequest {
                devices_ids: vec!["0000:00:06.0".into()],
            }],
        })
        .await
        .unwrap()
        .into_inner();
    let cr = &resp.container_responses[0];
    assert_eq!(cr.envs["PCIDEVICE_PLEXUS_IO_VF"], "0000:00:06.0");
    let info: serde_json::Value =
        serde_json::from_str(&cr.envs["PCIDEVICE_PLEXUS_IO_VF_INFO"]).unwrap();
    assert_eq!(info["0000:00:06.0"]["generic"]["deviceID"], "0000:00:06.0");
    assert!(cr.mounts.is_empty() && cr.devices.is_empty());
    // The device-info file the meta plugin copies into network-status.
    let info: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            r.devinfo
                .path()
                .join("dp/plexus.io-vf-0000:00:06.0-device.json"),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(info["type"], "pci");
    assert_eq!(info["pci"]["pci-address"], "0000:00:06.0");

    let err = c
        .allocate(api::AllocateRequest {
            container_requests: vec![api::ContainerAllocateRequest {
                devices_ids: vec!["0000:00:09.0".into()],
            }],
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);

    let pref = c
        .get_preferred_allocation(api::PreferredAllocationRequest {
            container_requests: vec![api::ContainerPreferredAllocationRequest {
                available_device_i_ds: vec!["0000:00:06.0".into(), "0000:00:05.0".into()],
                must_include_device_i_ds: vec![],
                allocation_size: 1,
            }],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        pref.container_responses[0].device_i_ds,
        vec!["0000:00:05.0"]
    );
    c.pre_start_container(api::PreStartContainerRequest {
        devices_ids: vec!["0000:00:05.0".into()],
    })
    .await
    .unwrap();
    stop(r).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn re_registers_when_kubelet_restarts() {
    let r = start(vec![vf("0000:00:05.0", "ens5")]).await;
    wait_registered(&r, 1).await;
    // The kubelet removes every socket in the dir when it restarts.
    std::fs::remove_file(r.cfg.socket_path()).unwrap();
    let reqs = wait_registered(&r, 2).await;
    assert_eq!(reqs[1].endpoint, reqs[0].endpoint);
    // And the new socket serves.
    let mut c = client(&r).await;
    let mut stream = c.list_and_watch(api::Empty {}).await.unwrap().into_inner();
    assert_eq!(stream.message().await.unwrap().unwrap().devices.len(), 1);
    drop(stream);
    stop(r).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_registration_is_retried() {
    let kubelet = FakeRegistration::start().unwrap();
    kubelet.reject_with("resource name taken");
    let r = start_with(kubelet, vec![]).await;
    // Rejected, then tried again with backoff while still serving.
    wait_registered(&r, 2).await;
    assert!(r.cfg.socket_path().exists());
    stop(r).await;
}
