//! Fake kubelet gRPC sockets: PodResources v1 (what the meta plugin asks for
//! a pod's allocated device IDs) and device-plugin Registration (what the
//! node agent's device plugin calls at start). Each fake serves on a unix
//! socket in its own temp dir from a background thread with its own runtime,
//! so sync tests and spawned binaries can use it alike; dropping the fake
//! stops the server and removes the directory.

use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

use plexus_kubelet_api::deviceplugin::v1beta1 as dp;
use plexus_kubelet_api::podresources::v1 as pr;
use tokio::sync::oneshot;
use tonic::transport::server::Router;
use tonic::{Request, Response, Status};

/// A gRPC server on `<tempdir>/<file>` running until dropped.
struct SocketServer {
    dir: tempfile::TempDir,
    socket: PathBuf,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl SocketServer {
    fn start(file: &str, make: impl FnOnce() -> Router + Send + 'static) -> std::io::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("plexus-kubelet-")
            .tempdir()?;
        let socket = dir.path().join(file);
        let (shutdown_tx, shutdown_rx) = oneshot::channel::<()>();
        let (ready_tx, ready_rx) = mpsc::channel::<std::io::Result<()>>();
        let bind_path = socket.clone();
        let thread = std::thread::spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            rt.block_on(async move {
                let listener = match tokio::net::UnixListener::bind(&bind_path) {
                    Ok(l) => l,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(()));
                let incoming = tokio_stream::wrappers::UnixListenerStream::new(listener);
                let _ = make()
                    .serve_with_incoming_shutdown(incoming, async {
                        let _ = shutdown_rx.await;
                    })
                    .await;
            });
        });
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(std::io::Error::other("fake kubelet server thread died")),
        }
        Ok(Self {
            dir,
            socket,
            shutdown: Some(shutdown_tx),
            thread: Some(thread),
        })
    }
}

impl Drop for SocketServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.socket);
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[derive(Default)]
struct PodResourcesState {
    pods: Vec<pr::PodResources>,
    allocatable: Vec<pr::ContainerDevices>,
    get_unimplemented: bool,
    calls: Vec<String>,
}

#[derive(Clone, Default)]
struct PodResourcesService(Arc<Mutex<PodResourcesState>>);

#[tonic::async_trait]
impl pr::pod_resources_lister_server::PodResourcesLister for PodResourcesService {
    async fn list(
        &self,
        _req: Request<pr::ListPodResourcesRequest>,
    ) -> Result<Response<pr::ListPodResourcesResponse>, Status> {
        let mut s = lock(&self.0);
        s.calls.push("List".into());
        Ok(Response::new(pr::ListPodResourcesResponse {
            pod_resources: s.pods.clone(),
        }))
    }

    async fn get_allocatable_resources(
        &self,
        _req: Request<pr::AllocatableResourcesRequest>,
    ) -> Result<Response<pr::AllocatableResourcesResponse>, Status> {
        let mut s = lock(&self.0);
        s.calls.push("GetAllocatableResources".into());
        Ok(Response::new(pr::AllocatableResourcesResponse {
            devices: s.allocatable.clone(),
            ..Default::default()
        }))
    }

    async fn get(
        &self,
        req: Request<pr::GetPodResourcesRequest>,
    ) -> Result<Response<pr::GetPodResourcesResponse>, Status> {
        let req = req.into_inner();
        let mut s = lock(&self.0);
        s.calls
            .push(format!("Get {}/{}", req.pod_namespace, req.pod_name));
        if s.get_unimplemented {
            return Err(Status::unimplemented(
                "PodResources API Get method disabled",
            ));
        }
        // The kubelet answers a plain error (gRPC Unknown) for unknown pods.
        match s
            .pods
            .iter()
            .find(|p| p.namespace == req.pod_namespace && p.name == req.pod_name)
        {
            Some(p) => Ok(Response::new(pr::GetPodResourcesResponse {
                pod_resources: Some(p.clone()),
            })),
            None => Err(Status::unknown(format!(
                "pod {} not found in namespace {}",
                req.pod_name, req.pod_namespace
            ))),
        }
    }
}

/// Fake kubelet PodResources socket with scripted pod → resource → device IDs.
pub struct FakePodResources {
    state: Arc<Mutex<PodResourcesState>>,
    server: SocketServer,
}

impl FakePodResources {
    /// Serves on `<tempdir>/kubelet.sock`.
    pub fn start() -> std::io::Result<Self> {
        let state = Arc::new(Mutex::new(PodResourcesState::default()));
        let svc = PodResourcesService(state.clone());
        let server = SocketServer::start("kubelet.sock", move || {
            tonic::transport::Server::builder()
                .add_service(pr::pod_resources_lister_server::PodResourcesListerServer::new(svc))
        })?;
        Ok(Self { state, server })
    }

    /// The socket path to hand to the client under test.
    pub fn socket_path(&self) -> &Path {
        &self.server.socket
    }

    /// Adds a container of pod `namespace/name` holding `devices`
    /// (`(resource_name, device_ids)`); several calls add several containers.
    pub fn add_container(
        &self,
        namespace: &str,
        name: &str,
        container: &str,
        devices: &[(&str, &[&str])],
    ) {
        let c = pr::ContainerResources {
            name: container.to_string(),
            devices: container_devices(devices),
            ..Default::default()
        };
        let mut s = lock(&self.state);
        if let Some(p) = s
            .pods
            .iter_mut()
            .find(|p| p.namespace == namespace && p.name == name)
        {
            p.containers.push(c);
        } else {
            s.pods.push(pr::PodResources {
                name: name.to_string(),
                namespace: namespace.to_string(),
                containers: vec![c],
            });
        }
    }

    /// Sets what `GetAllocatableResources` reports.
    pub fn set_allocatable(&self, devices: &[(&str, &[&str])]) {
        lock(&self.state).allocatable = container_devices(devices);
    }

    /// Makes `Get` answer Unimplemented, like a kubelet with the
    /// `KubeletPodResourcesGet` gate off.
    pub fn disable_get(&self) {
        lock(&self.state).get_unimplemented = true;
    }

    /// Calls received so far: `"List"`, `"Get ns/name"`, `"GetAllocatableResources"`.
    pub fn calls(&self) -> Vec<String> {
        lock(&self.state).calls.clone()
    }
}

/// `(resource_name, device_ids)` pairs as the kubelet reports them.
fn container_devices(devices: &[(&str, &[&str])]) -> Vec<pr::ContainerDevices> {
    devices
        .iter()
        .map(|(resource, ids)| pr::ContainerDevices {
            resource_name: (*resource).to_string(),
            device_ids: ids.iter().map(|s| (*s).to_string()).collect(),
            topology: None,
        })
        .collect()
}

#[derive(Default)]
struct RegistrationState {
    requests: Vec<dp::RegisterRequest>,
    reject: Option<String>,
}

#[derive(Clone, Default)]
struct RegistrationService(Arc<Mutex<RegistrationState>>);

#[tonic::async_trait]
impl dp::registration_server::Registration for RegistrationService {
    async fn register(
        &self,
        req: Request<dp::RegisterRequest>,
    ) -> Result<Response<dp::Empty>, Status> {
        let mut s = lock(&self.0);
        s.requests.push(req.into_inner());
        match &s.reject {
            Some(msg) => Err(Status::unknown(msg.clone())),
            None => Ok(Response::new(dp::Empty {})),
        }
    }
}

/// Fake kubelet device-plugin Registration socket
/// (`/var/lib/kubelet/device-plugins/kubelet.sock` role). Its directory
/// stands in for the device-plugins dir, so plugins put their own socket next
/// to it.
pub struct FakeRegistration {
    state: Arc<Mutex<RegistrationState>>,
    server: SocketServer,
}

impl FakeRegistration {
    /// Serves on `<tempdir>/kubelet.sock`.
    pub fn start() -> std::io::Result<Self> {
        let state = Arc::new(Mutex::new(RegistrationState::default()));
        let svc = RegistrationService(state.clone());
        let server = SocketServer::start("kubelet.sock", move || {
            tonic::transport::Server::builder()
                .add_service(dp::registration_server::RegistrationServer::new(svc))
        })?;
        Ok(Self { state, server })
    }

    /// The kubelet socket path.
    pub fn socket_path(&self) -> &Path {
        &self.server.socket
    }

    /// The device-plugins directory (parent of the socket).
    pub fn dir(&self) -> &Path {
        self.server.dir.path()
    }

    /// Makes every following `Register` fail with `msg`, as the kubelet does
    /// for an unsupported version or a taken resource name.
    pub fn reject_with(&self, msg: &str) {
        lock(&self.state).reject = Some(msg.to_string());
    }

    /// `Register` requests received so far.
    pub fn requests(&self) -> Vec<dp::RegisterRequest> {
        lock(&self.state).requests.clone()
    }

    /// Polls until at least `n` requests arrived or `timeout` passed.
    pub fn wait_for_requests(
        &self,
        n: usize,
        timeout: std::time::Duration,
    ) -> Vec<dp::RegisterRequest> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let got = self.requests();
            if got.len() >= n || std::time::Instant::now() >= deadline {
                return got;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use plexus_kubelet_api::PodResourcesClient;

    use super::*;

    #[test]
    fn get_returns_scripted_devices() {
        let fake = FakePodResources::start().unwrap();
        fake.add_container(
            "ns1",
            "pod-a",
            "app",
            &[("oracle.com/vnic", &["0000:00:05.0"])],
        );
        fake.add_container(
            "ns1",
            "pod-a",
            "side",
            &[("oracle.com/vnic", &["0000:00:04.0"])],
        );
        let client = PodResourcesClient::new(fake.socket_path(), Duration::from_secs(5));
        let got = client.get_allocated_devices("ns1", "pod-a").unwrap();
        assert_eq!(
            got,
            vec![(
                "oracle.com/vnic".to_string(),
                vec!["0000:00:04.0".to_string(), "0000:00:05.0".to_string()]
            )]
        );
        assert_eq!(fake.calls(), vec!["Get ns1/pod-a"]);
    }

    #[test]
    fn falls_back_to_list_when_get_is_disabled() {
        let fake = FakePodResources::start().unwrap();
        fake.disable_get();
        fake.add_container(
            "ns1",
            "pod-a",
            "app",
            &[("intel.com/sriov", &["0000:01:00.1"])],
        );
        fake.add_container(
            "ns1",
            "pod-b",
            "app",
            &[("intel.com/sriov", &["0000:01:00.2"])],
        );
        let client = PodResourcesClient::new(fake.socket_path(), Duration::from_secs(5));
        let got = client.get_allocated_devices("ns1", "pod-b").unwrap();
        assert_eq!(
            got,
            vec![(
                "intel.com/sriov".to_string(),
                vec!["0000:01:00.2".to_string()]
            )]
        );
        assert_eq!(fake.calls(), vec!["Get ns1/pod-b", "List"]);
    }

    #[test]
    fn unknown_pod_has_no_devices() {
        let fake = FakePodResources::start().unwrap();
        let client = PodResourcesClient::new(fake.socket_path(), Duration::from_secs(5));
        assert!(client
            .get_allocated_devices("ns1", "nope")
            .unwrap()
            .is_empty());
    }

    #[test]
    fn drop_removes_socket() {
        let fake = FakePodResources::start().unwrap();
        let path = fake.socket_path().to_path_buf();
        assert!(path.exists());
        drop(fake);
        assert!(!path.exists());
    }

    #[test]
    fn registration_records_requests_and_can_reject() {
        let fake = FakeRegistration::start().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let register = |resource: &str| {
            let path = fake.socket_path().to_path_buf();
            let resource = resource.to_string();
            rt.block_on(async move {
                let ch = plexus_kubelet_api::connect_unix(&path, Duration::from_secs(5))
                    .await
                    .unwrap();
                let mut c = dp::registration_client::RegistrationClient::new(ch);
                c.register(dp::RegisterRequest {
                    version: "v1beta1".into(),
                    endpoint: "plexus.sock".into(),
                    resource_name: resource,
                    options: None,
                })
                .await
                .map(|_| ())
                .map_err(|status| status.message().to_string())
            })
        };
        assert!(register("oracle.com/vnic").is_ok());
        fake.reject_with("resource name taken");
        let err = register("oracle.com/other").unwrap_err();
        assert_eq!(err, "resource name taken");
        let reqs = fake.requests();
        assert_eq!(reqs.len(), 2);
        assert_eq!(reqs[0].resource_name, "oracle.com/vnic");
        assert_eq!(reqs[0].endpoint, "plexus.sock");
        assert!(fake.dir().join("kubelet.sock").exists());
    }
}
