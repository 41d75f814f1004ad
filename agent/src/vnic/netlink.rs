//! The real [`NetOps`]: rtnetlink through `plexus_netlink`, in the host or
//! a named namespace.

use std::collections::BTreeMap;

use super::{Action, Current, Link, NetOps, Route, Rule, VnicConfig, VnicError, MAIN_TABLE};

/// The real [`NetOps`]: one rtnetlink socket opened in the target namespace.
pub struct NetlinkOps {
    handle: plexus_netlink::Handle,
}

impl std::fmt::Debug for NetlinkOps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetlinkOps").finish_non_exhaustive()
    }
}

fn nl_err(context: impl Into<String>) -> impl FnOnce(plexus_netlink::Error) -> VnicError {
    let context = context.into();
    move |e| VnicError::Netlink {
        context,
        message: e.to_string(),
    }
}

/// `--netns` value: a bare name means `/run/netns/<name>`.
pub fn netns_path(arg: &str) -> std::path::PathBuf {
    if arg.contains('/') {
        std::path::PathBuf::from(arg)
    } else {
        std::path::Path::new("/run/netns").join(arg)
    }
}

impl NetlinkOps {
    /// A socket in the caller's namespace (the host in the DaemonSet).
    pub fn host() -> Result<Self, VnicError> {
        Ok(Self {
            handle: plexus_netlink::Handle::new().map_err(nl_err("open netlink socket"))?,
        })
    }

    /// A socket inside the namespace at `path`.
    pub fn in_netns(path: &std::path::Path) -> Result<Self, VnicError> {
        let ns = plexus_netns::NetNs::open(path).map_err(|e| VnicError::Netlink {
            context: format!("open netns {}", path.display()),
            message: e.to_string(),
        })?;
        Ok(Self {
            handle: plexus_netlink::Handle::open_in(&ns)
                .map_err(nl_err(format!("open netlink socket in {}", path.display())))?,
        })
    }

    fn index(&self, name: &str) -> Result<u32, VnicError> {
        self.handle
            .link_by_name(name)
            .map(|l| l.index)
            .map_err(nl_err(format!("link {name}")))
    }

    fn nl_route(&self, r: &Route) -> Result<plexus_netlink::Route, VnicError> {
        let mut nr = plexus_netlink::Route::new(r.dst);
        nr.table = r.table;
        nr.gateway = r.gateway;
        nr.oif = Some(self.index(&r.dev)?);
        nr.prefsrc = r.src;
        if r.gateway.is_none() {
            nr.scope = plexus_netlink::Scope::Link;
        }
        Ok(nr)
    }
}

fn nl_rule(r: &Rule) -> plexus_netlink::Rule {
    plexus_netlink::Rule {
        family: plexus_netlink::Family::V4,
        priority: Some(r.priority),
        table: r.table,
        src: r.src,
        dst: r.dst,
        iif: None,
        oif: None,
    }
}

/// Adding what exists or deleting what is gone is success: the planner may
/// have raced the kernel (a VF leaving for a pod takes its routes along).
fn tolerate(
    res: Result<(), plexus_netlink::Error>,
    ok_if: fn(&plexus_netlink::Error) -> bool,
    a: &Action,
) -> Result<(), VnicError> {
    match res {
        Err(e) if !ok_if(&e) => Err(nl_err(a.describe())(e)),
        _ => Ok(()),
    }
}

impl NetOps for NetlinkOps {
    fn current(&self, cfg: &VnicConfig) -> Result<Current, VnicError> {
        use plexus_netlink::Family;
        let h = &self.handle;
        let nl_links = h.links().map_err(nl_err("list links"))?;
        let addrs = h.addresses(None).map_err(nl_err("list addresses"))?;
        let names: BTreeMap<u32, String> =
            nl_links.iter().map(|l| (l.index, l.name.clone())).collect();
        let links = nl_links
            .iter()
            .filter_map(|l| {
                let mac = l.mac.as_ref()?.to_string();
                Some(Link {
                    name: l.name.clone(),
                    mac,
                    mtu: l.mtu,
                    up: l.up,
                    addrs: addrs
                        .iter()
                        .filter(|a| a.index == l.index && a.family() == Family::V4)
                        .map(|a| a.addr)
                        .collect(),
                })
            })
            .collect();
        let all_routes = h
            .routes(Some(Family::V4), None)
            .map_err(nl_err("list routes"))?;
        let uplinks = all_routes
            .iter()
            .filter(|r| r.table == MAIN_TABLE && r.dst.prefix_len() == 0)
            .filter_map(|r| names.get(&r.oif?).cloned())
            .collect();
        let routes = all_routes
            .into_iter()
            .filter(|r| cfg.owns_table(r.table))
            .filter_map(|r| {
                Some(Route {
                    table: r.table,
                    dst: r.dst,
                    gateway: r.gateway,
                    dev: names.get(&r.oif?)?.clone(),
                    src: r.prefsrc,
                })
            })
            .collect();
        let rules = h
            .rules(Family::V4)
            .map_err(nl_err("list rules"))?
            .into_iter()
            .filter(|r| r.iif.is_none() && r.oif.is_none())
            .map(|r| Rule {
                priority: r.priority.unwrap_or(0),
                src: r.src,
                dst: r.dst,
                table: r.table,
            })
            .collect();
        Ok(Current {
            links,
            routes,
            rules,
            uplinks,
        })
    }

    fn execute(&self, a: &Action) -> Result<(), VnicError> {
        use plexus_netlink::Error as E;
        let h = &self.handle;
        let ctx = || a.describe();
        match a {
            Action::SetMtu { link, mtu } => {
                h.set_mtu(self.index(link)?, *mtu).map_err(nl_err(ctx()))
            }
            Action::SetUp { link } => h
                .set_link_up(self.index(link)?, true)
                .map_err(nl_err(ctx())),
            Action::AddAddr { link, addr } => {
                tolerate(h.add_address(self.index(link)?, addr), E::is_exists, a)
            }
            Action::DelAddr { link, addr } => {
                tolerate(h.del_address(self.index(link)?, addr), E::is_not_found, a)
            }
            Action::AddRoute(r) => tolerate(h.add_route(&self.nl_route(r)?), E::is_exists, a),
            Action::DelRoute(r) => match self.nl_route(r) {
                Ok(nr) => tolerate(h.del_route(&nr), E::is_not_found, a),
                // The link is gone, and the kernel dropped its routes with it.
                Err(_) => Ok(()),
            },
            Action::AddRule(r) => tolerate(h.add_rule(&nl_rule(r)), E::is_exists, a),
            Action::DelRule(r) => tolerate(h.del_rule(&nl_rule(r)), E::is_not_found, a),
        }
    }
}
