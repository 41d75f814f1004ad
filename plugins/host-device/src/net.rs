//! The narrow kernel seam: the few link/address/route operations host-device
//! performs, on either side of the move. [`KernelNet`] is the real one (one
//! netlink socket per namespace); `testing::FakeNet` models two namespaces
//! in memory for the handler tests.

use ipnet::IpNet;
use plexus_netlink::{Address, Handle, Link, LinkMove, Route};
use plexus_netns::NetNs;

/// Which namespace an operation targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Host,
    Pod,
}

impl Side {
    /// The other side of a move.
    pub fn other(self) -> Side {
        match self {
            Side::Host => Side::Pod,
            Side::Pod => Side::Host,
        }
    }
}

/// Result of kernel operations.
pub type NetResult<T> = Result<T, plexus_netlink::Error>;

/// Link, address and route operations in the host or the pod namespace.
pub trait Net {
    /// Whether the pod namespace is open (false on DEL after it vanished).
    fn has_pod(&self) -> bool;
    /// All links of `side`.
    fn links(&self, side: Side) -> NetResult<Vec<Link>>;
    /// The link `name`, `None` if absent.
    fn link_by_name(&self, side: Side, name: &str) -> NetResult<Option<Link>>;
    /// Addresses on link `index`.
    fn addresses(&self, side: Side, index: u32) -> NetResult<Vec<Address>>;
    /// Routes (any table) whose output interface is `index`.
    fn routes(&self, side: Side, index: u32) -> NetResult<Vec<Route>>;
    /// Moves link `index` from `from` to the other side and applies `to`
    /// (name, alias, MTU, up state) in the same request (see
    /// `plexus_netlink::Handle::move_to_netns_with`).
    fn move_link(&self, from: Side, index: u32, to: &LinkMove<'_>) -> NetResult<()>;
    fn rename(&self, side: Side, index: u32, name: &str) -> NetResult<()>;
    fn set_up(&self, side: Side, index: u32, up: bool) -> NetResult<()>;
    fn set_mtu(&self, side: Side, index: u32, mtu: u32) -> NetResult<()>;
    /// Sets (`Some`) or clears (`None`) the alias.
    fn set_alias(&self, side: Side, index: u32, alias: Option<&str>) -> NetResult<()>;
    fn add_address(&self, side: Side, index: u32, addr: &IpNet) -> NetResult<()>;
    /// Adds a route; `Exists` if one for the same prefix, table and metric
    /// is there (`NLM_F_EXCL`).
    fn add_route(&self, side: Side, route: &Route) -> NetResult<()>;
    /// Adds a route beside others for the same prefix, as the reference
    /// does; `Exists` only for a route the kernel considers identical (see
    /// `plexus_netlink::Handle::create_route`).
    fn create_route(&self, side: Side, route: &Route) -> NetResult<()>;
}

/// Opens a [`Net`] for one invocation.
pub trait NetOpener {
    type Net: Net;
    /// Host plus the pod at `netns`. An empty, vanished or non-netns path
    /// gives a host-only `Net` and the reason, so DEL can go on.
    fn open(&self, netns: &str) -> Result<(Self::Net, Option<String>), plexus_netlink::Error>;
    /// Whether `path` is still a live network namespace.
    fn netns_alive(&self, path: &str) -> bool;
}

fn no_pod() -> plexus_netlink::Error {
    plexus_netlink::Error::NotFound {
        op: "open",
        target: "pod network namespace".into(),
        errno: libc::ENOENT,
    }
}

/// The real kernel: one rtnetlink socket in the host namespace and one in
/// the pod's, opened once.
#[derive(Debug)]
pub struct KernelNet {
    host_ns: NetNs,
    host: Handle,
    pod: Option<(NetNs, Handle)>,
}

/// Opens [`KernelNet`]s.
#[derive(Debug, Default, Clone, Copy)]
pub struct KernelOpener;

impl NetOpener for KernelOpener {
    type Net = KernelNet;

    fn open(&self, netns: &str) -> Result<(KernelNet, Option<String>), plexus_netlink::Error> {
        let host_ns = NetNs::current()?;
        let host = Handle::new()?;
        let (pod, why) = if netns.is_empty() {
            (None, Some("CNI_NETNS is empty".to_string()))
        } else {
            match NetNs::open(netns) {
                Ok(ns) => {
                    let h = Handle::open_in(&ns)?;
                    (Some((ns, h)), None)
                }
                Err(e) => (None, Some(e.to_string())),
            }
        };
        Ok((KernelNet { host_ns, host, pod }, why))
    }

    fn netns_alive(&self, path: &str) -> bool {
        !path.is_empty() && plexus_netns::is_netns(path)
    }
}

impl KernelNet {
    fn h(&self, side: Side) -> NetResult<&Handle> {
        match side {
            Side::Host => Ok(&self.host),
            Side::Pod => self.pod.as_ref().map(|(_, h)| h).ok_or_else(no_pod),
        }
    }
}

fn none_if_missing<T>(r: NetResult<T>) -> NetResult<Option<T>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

impl Net for KernelNet {
    fn has_pod(&self) -> bool {
        self.pod.is_some()
    }

    fn links(&self, side: Side) -> NetResult<Vec<Link>> {
        self.h(side)?.links()
    }

    fn link_by_name(&self, side: Side, name: &str) -> NetResult<Option<Link>> {
        none_if_missing(self.h(side)?.link_by_name(name))
    }

    fn addresses(&self, side: Side, index: u32) -> NetResult<Vec<Address>> {
        self.h(side)?.addresses(Some(index))
    }

    fn routes(&self, side: Side, index: u32) -> NetResult<Vec<Route>> {
        Ok(self
            .h(side)?
            .routes(None, None)?
            .into_iter()
            .filter(|r| r.oif == Some(index))
            .collect())
    }

    fn move_link(&self, from: Side, index: u32, to: &LinkMove<'_>) -> NetResult<()> {
        let h = self.h(from)?;
        match from {
            Side::Host => {
                let (pod_ns, _) = self.pod.as_ref().ok_or_else(no_pod)?;
                h.move_to_netns_with(index, pod_ns, to)
            }
            Side::Pod => h.move_to_netns_with(index, &self.host_ns, to),
        }
    }

    fn rename(&self, side: Side, index: u32, name: &str) -> NetResult<()> {
        self.h(side)?.rename(index, name)
    }

    fn set_up(&self, side: Side, index: u32, up: bool) -> NetResult<()> {
        self.h(side)?.set_link_up(index, up)
    }

    fn set_mtu(&self, side: Side, index: u32, mtu: u32) -> NetResult<()> {
        self.h(side)?.set_mtu(index, mtu)
    }

    fn set_alias(&self, side: Side, index: u32, alias: Option<&str>) -> NetResult<()> {
        match alias {
            Some(a) => self.h(side)?.set_alias(index, a),
            None => self.h(side)?.clear_alias(index),
        }
    }

    fn add_address(&self, side: Side, index: u32, addr: &IpNet) -> NetResult<()> {
        // No DAD wait for IPv6: the address is the one IPAM assigned to
        // this pod; waiting up to seconds per ADD buys nothing here.
        let flags = if addr.addr().is_ipv6() {
            plexus_netlink::IFA_F_NODAD
        } else {
            0
        };
        self.h(side)?.add_address_flags(index, addr, flags)
    }

    fn add_route(&self, side: Side, route: &Route) -> NetResult<()> {
        self.h(side)?.add_route(route)
    }

    fn create_route(&self, side: Side, route: &Route) -> NetResult<()> {
        self.h(side)?.create_route(route)
    }
}
