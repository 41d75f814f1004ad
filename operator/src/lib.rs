//! `plexus-operator`: makes the tutorial's Task 1 declarative. A cluster-
//! scoped `VnicPool` (`plexus.io/v1alpha1`) says which nodes get how many
//! secondary VNICs in which subnet; the operator attaches and detaches them
//! through the OCI API (signed requests, idempotent retry tokens, ownership
//! tags), optionally switches paravirtualized instances to VFIO one node at
//! a time, and reports per node in the pool's status and in events. The node
//! agent then configures each VNIC from IMDS and its device plugin
//! advertises it; the operator reads that back from `node.status.allocatable`.
//!
//! Seams: [`kube::Kube`] (the API server) and `plexus_oci::Compute` (OCI),
//! built in `main`; the planning in [`plan`] is pure. One replica acts at a
//! time ([`leader`]).

pub mod crd;
pub mod kube;
pub mod leader;
pub mod plan;
pub mod reconcile;
pub mod vfio;

pub use reconcile::{Operator, Settings};
