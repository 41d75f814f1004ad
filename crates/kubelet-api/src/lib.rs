//! The kubelet's gRPC APIs that Plexus speaks: PodResources v1 (which device
//! IDs a pod was allocated, read by the meta plugin to fill `deviceID`, as
//! Multus does) and device plugin v1beta1 (served by the node agent). The
//! `.proto` files are vendored under `proto/` (see its README for the upstream
//! version) and compiled with protox + tonic-build.
//!
//! [`PodResourcesClient`] is the small blocking helper a CNI process needs: it
//! builds a current-thread runtime only when called, so plugins that never
//! look up devices never start tokio.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tonic::transport::{Endpoint, Uri};

/// Generated PodResources v1 types, client and server.
pub mod podresources {
    /// `package v1` of `podresources/v1/api.proto`.
    #[allow(clippy::all, clippy::pedantic, missing_docs)]
    pub mod v1 {
        tonic::include_proto!("v1");
    }
}

/// Generated device plugin v1beta1 types, clients and servers.
pub mod deviceplugin {
    /// `package v1beta1` of `deviceplugin/v1beta1/api.proto`.
    #[allow(clippy::all, clippy::pedantic, missing_docs)]
    pub mod v1beta1 {
        tonic::include_proto!("v1beta1");
    }
}

use podresources::v1::{
    pod_resources_lister_client::PodResourcesListerClient, GetPodResourcesRequest,
    ListPodResourcesRequest, PodResources,
};

/// Where the kubelet serves PodResources on every node.
pub const POD_RESOURCES_SOCKET: &str = "/var/lib/kubelet/pod-resources/kubelet.sock";
/// Where the kubelet serves device-plugin Registration.
pub const KUBELET_REGISTRATION_SOCKET: &str = "/var/lib/kubelet/device-plugins/kubelet.sock";
/// Directory that holds device plugin sockets (`RegisterRequest.endpoint` is relative to it).
pub const DEVICE_PLUGIN_DIR: &str = "/var/lib/kubelet/device-plugins";
/// Version string a device plugin sends in `RegisterRequest.version`.
pub const DEVICE_PLUGIN_VERSION: &str = "v1beta1";

/// The kubelet caps List responses at 16 MiB (Multus uses the same limit).
const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

/// Failures talking to a kubelet socket.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot start a runtime for the kubelet client: {0}")]
    Runtime(#[source] std::io::Error),
    #[error("cannot connect to kubelet socket {path}: {source}")]
    Connect {
        path: PathBuf,
        #[source]
        source: tonic::transport::Error,
    },
    #[error("kubelet {method} on {path} failed: {status}")]
    Rpc {
        method: &'static str,
        path: PathBuf,
        status: Box<tonic::Status>,
    },
    #[error("kubelet {method} on {path} timed out after {timeout:?}")]
    Timeout {
        method: &'static str,
        path: PathBuf,
        timeout: Duration,
    },
}

/// A device-plugin resource and the device IDs allocated to a pod from it.
pub type AllocatedDevices = Vec<(String, Vec<String>)>;

/// Opens a tonic channel over a unix socket. The URI is a placeholder: the
/// connector ignores it and dials `path`.
pub async fn connect_unix(
    path: &Path,
    timeout: Duration,
) -> Result<tonic::transport::Channel, Error> {
    let connect_err = |source| Error::Connect {
        path: path.to_path_buf(),
        source,
    };
    let endpoint = Endpoint::try_from("http://kubelet.invalid")
        .map_err(connect_err)?
        .connect_timeout(timeout)
        .timeout(timeout);
    let target = path.to_path_buf();
    endpoint
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let target = target.clone();
            async move {
                let stream = tokio::net::UnixStream::connect(target).await?;
                Ok::<_, std::io::Error>(TokioIo::new(stream))
            }
        }))
        .await
        .map_err(connect_err)
}

/// Blocking PodResources client for short-lived processes.
#[derive(Debug, Clone)]
pub struct PodResourcesClient {
    socket: PathBuf,
    timeout: Duration,
}

impl PodResourcesClient {
    /// A client for `socket`; `timeout` bounds the connect and each call.
    pub fn new(socket: impl Into<PathBuf>, timeout: Duration) -> Self {
        Self {
            socket: socket.into(),
            timeout,
        }
    }

    /// Device IDs per resource allocated to pod `namespace/name`, resource
    /// names sorted and IDs sorted (so repeated ADDs pick the same device).
    /// Empty when the kubelet does not know the pod.
    pub fn get_allocated_devices(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<AllocatedDevices, Error> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .map_err(Error::Runtime)?;
        rt.block_on(self.get_allocated_devices_async(namespace, name))
    }

    /// Async form of [`Self::get_allocated_devices`]. Uses `Get` and falls back
    /// to `List` when the kubelet does not serve `Get` (feature gate off or an
    /// older kubelet) or does not find the pod through it.
    pub async fn get_allocated_devices_async(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<AllocatedDevices, Error> {
        let channel = connect_unix(&self.socket, self.timeout).await?;
        let mut client =
            PodResourcesListerClient::new(channel).max_decoding_message_size(MAX_MESSAGE_BYTES);
        let get = self
            .call(
                "Get",
                client.get(GetPodResourcesRequest {
                    pod_name: name.to_string(),
                    pod_namespace: namespace.to_string(),
                }),
            )
            .await;
        match get {
            Ok(resp) => {
                if let Some(pod) = resp.into_inner().pod_resources {
                    return Ok(devices_of(&pod));
                }
            }
            Err(Error::Rpc { status, .. }) if !is_transport_failure(&status) => {}
            Err(e) => return Err(e),
        }
        let list = self
            .call("List", client.list(ListPodResourcesRequest {}))
            .await?
            .into_inner();
        Ok(list
            .pod_resources
            .iter()
            .find(|p| p.namespace == namespace && p.name == name)
            .map(devices_of)
            .unwrap_or_default())
    }

    async fn call<T>(
        &self,
        method: &'static str,
        fut: impl std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    ) -> Result<tonic::Response<T>, Error> {
        match tokio::time::timeout(self.timeout, fut).await {
            Err(_) => Err(Error::Timeout {
                method,
                path: self.socket.clone(),
                timeout: self.timeout,
            }),
            Ok(Err(status)) => Err(Error::Rpc {
                method,
                path: self.socket.clone(),
                status: Box::new(status),
            }),
            Ok(Ok(resp)) => Ok(resp),
        }
    }
}

/// Statuses that mean the kubelet itself is unreachable, where falling back
/// to `List` would only fail again.
fn is_transport_failure(status: &tonic::Status) -> bool {
    matches!(
        status.code(),
        tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Cancelled
    )
}

/// Merges the devices of all containers of `pod` per resource name.
pub fn devices_of(pod: &PodResources) -> AllocatedDevices {
    let mut by_resource: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for container in &pod.containers {
        for dev in &container.devices {
            by_resource
                .entry(dev.resource_name.clone())
                .or_default()
                .extend(dev.device_ids.iter().cloned());
        }
    }
    by_resource
        .into_iter()
        .map(|(resource, mut ids)| {
            ids.sort();
            ids.dedup();
            (resource, ids)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::podresources::v1::{ContainerDevices, ContainerResources};
    use super::*;

    fn container(devs: &[(&str, &[&str])]) -> ContainerResources {
        ContainerResources {
            name: "c".into(),
            devices: devs
                .iter()
                .map(|(r, ids)| ContainerDevices {
                    resource_name: (*r).into(),
                    device_ids: ids.iter().map(|s| (*s).into()).collect(),
                    topology: None,
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn devices_merge_across_containers_sorted() {
        let pod = PodResources {
            name: "p".into(),
            namespace: "ns".into(),
            containers: vec![
                container(&[("oracle.com/vnic", &["0000:00:05.0"])]),
                container(&[
                    ("oracle.com/vnic", &["0000:00:04.0"]),
                    ("intel.com/sriov", &["0000:01:00.2"]),
                ]),
            ],
        };
        assert_eq!(
            devices_of(&pod),
            vec![
                (
                    "intel.com/sriov".to_string(),
                    vec!["0000:01:00.2".to_string()]
                ),
                (
                    "oracle.com/vnic".to_string(),
                    vec!["0000:00:04.0".to_string(), "0000:00:05.0".to_string()]
                ),
            ]
        );
    }

    #[test]
    fn missing_socket_is_a_connect_error() {
        let dir = std::env::temp_dir().join(format!("kubelet-api-missing-{}", std::process::id()));
        let client = PodResourcesClient::new(dir.join("kubelet.sock"), Duration::from_millis(200));
        let err = client.get_allocated_devices("ns", "p");
        assert!(matches!(err, Err(Error::Connect { .. })), "{err:?}");
    }
}
