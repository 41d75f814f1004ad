//! Kubelet device plugin (v1beta1) advertising the node's secondary-VNIC VFs
//! as one extended resource (default `plexus.io/vf`), so pods ask for
//! `plexus.io/vf: 1` instead of being pinned to a node, and the meta plugin
//! learns the allocated PCI address through PodResources (Multus'
//! `k8s.v1.cni.cncf.io/resourceName` path) and hands it to host-device as
//! `deviceID`.
//!
//! Conventions follow the SR-IOV network device plugin: device ID = PCI
//! address, `Allocate` sets `PCIDEVICE_<RESOURCE>` (resource upper-cased,
//! `.` and `/` → `_`) to the comma-separated addresses plus a `_INFO` JSON;
//! netdev VFs need no mounts, vfio-bound VFs get `/dev/vfio/vfio` and
//! `/dev/vfio/<group>`.
//!
//! The device list arrives on a `watch` channel fed by the reconcile loop;
//! `ListAndWatch` re-sends whenever it changes. [`serve`] binds the plugin
//! socket, registers with the kubelet, and starts over when the socket
//! disappears, which is what the kubelet does to every plugin socket when it
//! restarts.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::time::Duration;

use plexus_kubelet_api::deviceplugin::v1beta1 as api;
use plexus_netattach::devinfo::{self, DevInfoDir};
use plexus_netattach::status::DeviceInfo;
use serde::Serialize;
use tokio::sync::watch;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

/// Default extended resource name.
pub const DEFAULT_RESOURCE: &str = "plexus.io/vf";

/// One VF as the device plugin sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VfDevice {
    /// PCI address, the device ID.
    pub pci: String,
    /// Host netdev name when bound to a net driver and in the host namespace.
    pub netdev: Option<String>,
    /// Kernel driver (`mlx5_core`, `vfio-pci`, ...).
    pub driver: Option<String>,
    /// IOMMU group, needed for vfio device specs.
    pub iommu_group: Option<String>,
    /// NUMA node of the function, if the platform reports one.
    pub numa_node: Option<i64>,
    /// Healthy when the function is present (its link on the host, inside a
    /// pod, or bound to vfio).
    pub healthy: bool,
}

impl VfDevice {
    fn is_vfio(&self) -> bool {
        self.driver.as_deref() == Some("vfio-pci")
    }
}

/// Where and as what the plugin serves.
#[derive(Debug, Clone)]
pub struct DevicePluginConfig {
    pub resource_name: String,
    /// Directory holding `kubelet.sock` and our socket.
    pub plugin_dir: PathBuf,
    /// Our socket's file name inside `plugin_dir`.
    pub socket_name: String,
    /// How often to check that our socket still exists.
    pub check_interval: Duration,
    /// Device-info root (`/var/run/k8s.cni.cncf.io/devinfo`); `Allocate`
    /// writes `dp/<resource>-<pci>-device.json` there for the meta plugin to
    /// copy into network-status, as the SR-IOV device plugin does.
    pub devinfo_dir: Option<PathBuf>,
}

impl DevicePluginConfig {
    pub fn new(resource_name: &str, plugin_dir: impl Into<PathBuf>) -> Self {
        let socket_name = format!("{}.sock", resource_name.replace(['/', '.'], "_"));
        Self {
            resource_name: resource_name.to_string(),
            plugin_dir: plugin_dir.into(),
            socket_name,
            check_interval: Duration::from_secs(1),
            devinfo_dir: None,
        }
    }
    pub fn socket_path(&self) -> PathBuf {
        self.plugin_dir.join(&self.socket_name)
    }
    pub fn kubelet_socket(&self) -> PathBuf {
        self.plugin_dir.join("kubelet.sock")
    }
}

/// Errors of the device plugin.
#[derive(Debug, thiserror::Error)]
pub enum DevicePluginError {
    #[error("binding device plugin socket {path}: {source}")]
    Bind {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("registering {resource} with kubelet at {path}: {message}")]
    Register {
        resource: String,
        path: PathBuf,
        message: String,
    },
}

/// `PCIDEVICE_PLEXUS_IO_VF` for `plexus.io/vf`.
pub fn env_name(resource: &str) -> String {
    format!(
        "PCIDEVICE_{}",
        resource.replace(['.', '/', '-'], "_").to_ascii_uppercase()
    )
}

/// Pure: the `ListAndWatch` payload.
pub fn list_response(devices: &[VfDevice]) -> api::ListAndWatchResponse {
    let mut devs: Vec<&VfDevice> = devices.iter().collect();
    devs.sort_by(|a, b| a.pci.cmp(&b.pci));
    api::ListAndWatchResponse {
        devices: devs
            .into_iter()
            .map(|d| api::Device {
                id: d.pci.clone(),
                health: if d.healthy { "Healthy" } else { "Unhealthy" }.into(),
                topology: d.numa_node.map(|n| api::TopologyInfo {
                    nodes: vec![api::NumaNode { id: n }],
                }),
            })
            .collect(),
    }
}

/// Pure: one container's allocation. Unknown IDs are an error: the kubelet
/// only offers IDs we listed, so an unknown one means our list changed.
pub fn allocate_container(
    resource: &str,
    devices: &[VfDevice],
    ids: &[String],
) -> Result<api::ContainerAllocateResponse, String> {
    let by_pci: BTreeMap<&str, &VfDevice> = devices.iter().map(|d| (d.pci.as_str(), d)).collect();
    let mut resp = api::ContainerAllocateResponse::default();
    let mut info = serde_json::Map::new();
    let mut vfio_groups = BTreeSet::new();
    for id in ids {
        let d = by_pci
            .get(id.as_str())
            .ok_or_else(|| format!("unknown device {id} for {resource}"))?;
        let mut extra = serde_json::Map::new();
        extra.insert("deviceID".into(), id.clone().into());
        if let Some(n) = &d.netdev {
            extra.insert("netdev".into(), n.clone().into());
        }
        let mut entry = serde_json::Map::new();
        entry.insert("generic".into(), extra.into());
        if d.is_vfio() {
            if let Some(g) = &d.iommu_group {
                vfio_groups.insert(g.clone());
                entry.insert(
                    "vfio".into(),
                    serde_json::json!({"mount": format!("/dev/vfio/{g}")}),
                );
            }
        }
        info.insert(id.clone(), entry.into());
    }
    if !vfio_groups.is_empty() {
        let spec = |p: String| api::DeviceSpec {
            container_path: p.clone(),
            host_path: p,
            permissions: "mrw".into(),
        };
        resp.devices.push(spec("/dev/vfio/vfio".into()));
        for g in vfio_groups {
            resp.devices.push(spec(format!("/dev/vfio/{g}")));
        }
    }
    let name = env_name(resource);
    resp.envs.insert(name.clone(), ids.join(","));
    resp.envs.insert(
        format!("{name}_INFO"),
        serde_json::Value::Object(info).to_string(),
    );
    Ok(resp)
}

/// Pure: preferred devices. Keeps `must_include`, then fills from the NUMA
/// node that already holds most of the chosen/available devices, then the
/// rest, each group in PCI order (deterministic).
pub fn preferred(
    devices: &[VfDevice],
    available: &[String],
    must_include: &[String],
    size: usize,
) -> Vec<String> {
    let numa: BTreeMap<&str, Option<i64>> = devices
        .iter()
        .map(|d| (d.pci.as_str(), d.numa_node))
        .collect();
    let node_of = |id: &str| numa.get(id).copied().flatten();
    let mut chosen: Vec<String> = must_include.iter().take(size).cloned().collect();
    let mut rest: Vec<&String> = available.iter().filter(|a| !chosen.contains(a)).collect();
    rest.sort();
    let target = chosen.first().and_then(|c| node_of(c)).or_else(|| {
        let mut counts: BTreeMap<i64, usize> = BTreeMap::new();
        for a in &rest {
            if let Some(n) = node_of(a) {
                *counts.entry(n).or_default() += 1;
            }
        }
        counts
            .into_iter()
            .max_by_key(|(n, c)| (*c, std::cmp::Reverse(*n)))
            .map(|(n, _)| n)
    });
    rest.sort_by_key(|a| node_of(a) != target || target.is_none());
    for a in rest {
        if chosen.len() >= size {
            break;
        }
        chosen.push(a.clone());
    }
    chosen
}

/// The gRPC service.
#[derive(Clone)]
pub struct Plugin {
    resource: String,
    devices: watch::Receiver<Vec<VfDevice>>,
    /// Ends open `ListAndWatch` streams: the kubelet never closes its own,
    /// and a graceful server shutdown waits for every stream to finish.
    stop: watch::Receiver<bool>,
    devinfo: Option<DevInfoDir>,
}

impl Plugin {
    pub fn new(
        resource: &str,
        devices: watch::Receiver<Vec<VfDevice>>,
        stop: watch::Receiver<bool>,
        devinfo: Option<DevInfoDir>,
    ) -> Self {
        Self {
            resource: resource.to_string(),
            devices,
            stop,
            devinfo,
        }
    }

    /// Replaces the device-info file of each allocated VF. Best effort: the
    /// pod works without it, only network-status loses `device-info`.
    fn write_device_info(&self, ids: &[String]) {
        let Some(dir) = &self.devinfo else {
            return;
        };
        for id in ids {
            let path = dir.dp_path(&self.resource, id);
            let res = devinfo::remove(&path)
                .and_then(|()| devinfo::save(&path, &DeviceInfo::pci(id, None)));
            if let Err(e) = res {
                tracing::warn!(error = %e, "writing device-info");
            }
        }
    }
}

type ListStream =
    Pin<Box<dyn Stream<Item = Result<api::ListAndWatchResponse, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl api::device_plugin_server::DevicePlugin for Plugin {
    async fn get_device_plugin_options(
        &self,
        _req: Request<api::Empty>,
    ) -> Result<Response<api::DevicePluginOptions>, Status> {
        Ok(Response::new(api::DevicePluginOptions {
            pre_start_required: false,
            get_preferred_allocation_available: true,
        }))
    }

    type ListAndWatchStream = ListStream;

    async fn list_and_watch(
        &self,
        _req: Request<api::Empty>,
    ) -> Result<Response<Self::ListAndWatchStream>, Status> {
        let mut rx = self.devices.clone();
        let mut stop = self.stop.clone();
        let (tx, out) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            loop {
                let resp = list_response(&rx.borrow_and_update());
                if tx.send(Ok(resp)).await.is_err() {
                    return; // kubelet went away
                }
                tokio::select! {
                    changed = rx.changed() => if changed.is_err() { return },
                    _ = stop.wait_for(|s| *s) => return,
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(out),
        )))
    }

    async fn get_preferred_allocation(
        &self,
        req: Request<api::PreferredAllocationRequest>,
    ) -> Result<Response<api::PreferredAllocationResponse>, Status> {
        let devs = self.devices.borrow().clone();
        let container_responses = req
            .into_inner()
            .container_requests
            .into_iter()
            .map(|c| api::ContainerPreferredAllocationResponse {
                device_i_ds: preferred(
                    &devs,
                    &c.available_device_i_ds,
                    &c.must_include_device_i_ds,
                    usize::try_from(c.allocation_size).unwrap_or(0),
                ),
            })
            .collect();
        Ok(Response::new(api::PreferredAllocationResponse {
            container_responses,
        }))
    }

    async fn allocate(
        &self,
        req: Request<api::AllocateRequest>,
    ) -> Result<Response<api::AllocateResponse>, Status> {
        let devs = self.devices.borrow().clone();
        let mut container_responses = Vec::new();
        for c in req.into_inner().container_requests {
            let r = allocate_container(&self.resource, &devs, &c.devices_ids)
                .map_err(Status::invalid_argument)?;
            self.write_device_info(&c.devices_ids);
            tracing::info!(resource = %self.resource, devices = ?c.devices_ids, "allocated");
            container_responses.push(r);
        }
        Ok(Response::new(api::AllocateResponse {
            container_responses,
        }))
    }

    async fn pre_start_container(
        &self,
        _req: Request<api::PreStartContainerRequest>,
    ) -> Result<Response<api::PreStartContainerResponse>, Status> {
        Ok(Response::new(api::PreStartContainerResponse {}))
    }
}

/// Calls `Register` on the kubelet socket.
pub async fn register(cfg: &DevicePluginConfig) -> Result<(), DevicePluginError> {
    let path = cfg.kubelet_socket();
    let err = |message: String| DevicePluginError::Register {
        resource: cfg.resource_name.clone(),
        path: path.clone(),
        message,
    };
    let channel = plexus_kubelet_api::connect_unix(&path, Duration::from_secs(5))
        .await
        .map_err(|e| err(e.to_string()))?;
    let mut client = api::registration_client::RegistrationClient::new(channel);
    client
        .register(api::RegisterRequest {
            version: plexus_kubelet_api::DEVICE_PLUGIN_VERSION.into(),
            endpoint: cfg.socket_name.clone(),
            resource_name: cfg.resource_name.clone(),
            options: Some(api::DevicePluginOptions {
                pre_start_required: false,
                get_preferred_allocation_available: true,
            }),
        })
        .await
        .map_err(|s| err(s.message().to_string()))?;
    Ok(())
}

fn bind(path: &Path) -> Result<tokio::net::UnixListener, DevicePluginError> {
    // A socket left by a previous run would make bind fail.
    let _ = std::fs::remove_file(path);
    tokio::net::UnixListener::bind(path).map_err(|source| DevicePluginError::Bind {
        path: path.to_path_buf(),
        source,
    })
}

/// Serves until `shutdown` fires: bind, register (retrying while the
/// kubelet is not up), then watch the socket; when it vanishes (kubelet
/// restart) serve and register again. Removes the socket on exit.
pub async fn serve(
    cfg: DevicePluginConfig,
    devices: watch::Receiver<Vec<VfDevice>>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), DevicePluginError> {
    let path = cfg.socket_path();
    loop {
        let listener = bind(&path)?;
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (streams_tx, streams_rx) = watch::channel(false);
        let svc = api::device_plugin_server::DevicePluginServer::new(Plugin::new(
            &cfg.resource_name,
            devices.clone(),
            streams_rx,
            cfg.devinfo_dir.clone().map(DevInfoDir::new),
        ));
        let server = tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(svc)
                .serve_with_incoming_shutdown(
                    tokio_stream::wrappers::UnixListenerStream::new(listener),
                    async {
                        let _ = stop_rx.await;
                    },
                ),
        );
        let mut registered = false;
        let mut backoff = Duration::from_millis(200);
        let restart = loop {
            if !registered {
                match register(&cfg).await {
                    Ok(()) => {
                        tracing::info!(resource = %cfg.resource_name, socket = %path.display(), "registered with kubelet");
                        registered = true;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "kubelet registration failed; retrying");
                    }
                }
            }
            let wait = if registered {
                cfg.check_interval
            } else {
                backoff
            };
            backoff = (backoff * 2).min(Duration::from_secs(10));
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => {}
            }
            if *shutdown.borrow() {
                break false;
            }
            if !path.exists() {
                tracing::info!(socket = %path.display(), "plugin socket removed (kubelet restart?); re-registering");
                break true;
            }
        };
        let _ = streams_tx.send(true);
        let _ = stop_tx.send(());
        let abort = server.abort_handle();
        if tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .is_err()
        {
            abort.abort();
        }
        if !restart {
            let _ = std::fs::remove_file(&path);
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests;
