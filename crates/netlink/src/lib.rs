//! Synchronous rtnetlink for Plexus: links, addresses, routes (any table) and
//! policy rules as plain domain types.
//!
//! Every CNI call is a fresh process that sends a handful of requests, so this
//! is a blocking request/ack layer on one socket, with no async runtime to
//! start. A [`Handle`] is bound to the namespace it was opened in
//! ([`Handle::open_in`] enters the namespace only for the `socket(2)` call),
//! and can then be used from any thread: no `setns` per operation.
//!
//! This is the only crate that imports `netlink-packet-*`; callers see
//! [`Link`], [`Address`], [`Route`], [`Rule`] and [`Error`].

mod addr;
mod error;
mod link;
mod route;
mod rule;
mod socket;
mod types;

pub use addr::{Address, IFA_F_NODAD};
pub use error::{Error, Result};
pub use link::{Link, LinkMove, OperState};
pub use route::{Route, RouteKind};
pub use rule::Rule;
pub use socket::Handle;
pub use types::{Family, Scope};

/// Protocol number the kernel uses for routes it derives from addresses.
pub const RTPROT_KERNEL: u8 = 2;
/// Protocol number for routes added by an administrator (`ip route` default).
pub const RTPROT_BOOT: u8 = 3;
/// The main routing table.
pub const RT_TABLE_MAIN: u32 = 254;
/// The local routing table (local and broadcast routes).
pub const RT_TABLE_LOCAL: u32 = 255;
