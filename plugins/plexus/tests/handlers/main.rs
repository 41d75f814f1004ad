//! Handler tests with fakes: delegate order and interface names, capability
//! filtering, CNI_ARGS, rollback, DEL from the cache without the API, CHECK
//! of every attachment, GC, namespace isolation, default routes, device IDs,
//! and the bad-input catalogue. Every test runs across cniVersion 0.3.1,
//! 0.4.0, 1.0.0 and 1.1.0.

#[path = "../common/mod.rs"]
mod common;
mod support;

mod add;
mod check_gc;
mod del;
mod devices;
mod errors;
mod networks;
