//! Test support shared by the workspace's tests, demo and benchmarks: network
//! namespace fixtures, and faithful fakes of the services Plexus talks to (the
//! Kubernetes API, the kubelet PodResources/device-plugin sockets, OCI IMDS, the OCI Core
//! Services API).
//! Never linked into a shipped binary.

pub mod imds;
// The fake API server's router is one long match of routes (test support).
#[allow(clippy::too_many_lines)]
pub mod kube;
pub mod net;
pub mod oci;
pub mod podresources;
mod serve;
pub mod tls;
