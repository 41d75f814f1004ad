//! The operator against the fake API server and the fake OCI API: attach,
//! status and events, shrink, foreign and primary VNICs left alone, failures
//! mid-way (429 storms, lost responses, a stuck ATTACHING, a restart between
//! attach and status), the opt-in VFIO switch, and leader election.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

mod attach;
mod leader;
mod rbac;
mod vfio;
