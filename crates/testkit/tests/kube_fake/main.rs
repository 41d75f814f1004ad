//! Contract tests for the fake Kubernetes API server: status codes and Status
//! bodies, the four PATCH content types, UID/resourceVersion preconditions,
//! 401/403/405/415, fault and latency injection. Plain HTTP/1.1 over std
//! sockets so what goes over the wire is exactly what we assert.

#![allow(clippy::unwrap_used, clippy::too_many_lines)] // test helpers outside #[test] fns panic by design

mod support;

mod auth_faults;
mod binary;
mod protobuf;
mod reads;
mod resources;
mod writes;
