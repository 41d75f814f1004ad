//! Kubernetes side of the Multus-compatible meta plugin: the
//! `NetworkAttachmentDefinition` CRD (`k8s.cni.cncf.io/v1`), the pod
//! `k8s.v1.cni.cncf.io/networks` selection annotation (comma and JSON forms),
//! the `k8s.v1.cni.cncf.io/network-status` annotation Multus writes, the
//! device-info files shared with device plugins, kubeconfig loading, and the
//! pod API seam ([`PodApi`]) with its HTTP implementation ([`HttpPodApi`]) and
//! an in-memory fake ([`testing::FakePodApi`]).
//!
//! Parsing and building are pure functions on plain data; only [`http`] (and
//! its HTTP/2 transport) and the file helpers in [`devinfo`] and
//! [`kubeconfig`] touch the outside world.

pub mod api;
pub mod devinfo;
mod h2conn;
pub mod http;
pub mod kubeconfig;
pub mod nad;
pub mod networks;
pub mod status;
pub mod testing;
mod tlsconf;

pub use api::{ApiError, Event, EventType, ObjectMeta, Pod, PodApi, PodRef};
pub use http::{HttpPodApi, RetryPolicy};
pub use kubeconfig::{ClientConfig, ClientIdentity, KubeconfigError, TokenSource};
pub use nad::{NadError, NetworkAttachmentDefinition};
pub use networks::{
    parse_networks_annotation, AnnotationError, BandwidthEntry, NetworkSelection, PortMapEntry,
};
pub use status::{
    decode_network_status, encode_network_status, network_statuses_from_cni_result,
    network_statuses_from_result, DeviceInfo, Dns, NetworkStatus, StatusError,
};

/// Pod annotation listing the secondary networks a pod asks for.
pub const NETWORKS_ANNOTATION: &str = "k8s.v1.cni.cncf.io/networks";
/// Pod annotation Multus writes after ADD with one entry per attached interface.
pub const NETWORK_STATUS_ANNOTATION: &str = "k8s.v1.cni.cncf.io/network-status";
/// Pod annotation replacing the cluster default network for one pod.
pub const DEFAULT_NETWORK_ANNOTATION: &str = "v1.multus-cni.io/default-network";
/// NAD annotation naming the device-plugin resource whose device the delegate gets.
pub const RESOURCE_NAME_ANNOTATION: &str = "k8s.v1.cni.cncf.io/resourceName";
/// Pod annotation set by the kubelet; any value but `api` marks a static pod.
pub const CONFIG_SOURCE_ANNOTATION: &str = "kubernetes.io/config.source";
