//! An in-memory kernel for handler tests: a host and a pod namespace with
//! links, addresses and routes (with the kernel's connected IPv4 route per
//! address), and the kernel's move semantics (addresses and routes flushed,
//! the device arrives down, a name clash either fails atomically or strands
//! the device under its old name).

use std::cell::RefCell;
use std::rc::Rc;

use ipnet::IpNet;
use plexus_netlink::{Address, Error, Link, LinkMove, Route, Scope, RTPROT_KERNEL};

use crate::net::{Net, NetOpener, NetResult, Side};

/// A link and what is configured on it.
#[derive(Debug, Clone, Default)]
pub struct FakeLink {
    pub link: Link,
    pub addrs: Vec<IpNet>,
    pub routes: Vec<Route>,
}

/// Both namespaces.
#[derive(Debug, Default)]
pub struct World {
    pub host: Vec<FakeLink>,
    /// `None` once the pod namespace is gone.
    pub pod: Option<Vec<FakeLink>>,
    pub pod_path: String,
    /// Netns paths that count as alive for stale-record checks.
    pub alive: Vec<String>,
    /// Operation names (`"add_address"`, `"move_link"`...) that fail with EPERM.
    pub fail: Vec<&'static str>,
    /// Operation names that fail with EEXIST, whatever is there.
    pub fail_exists: Vec<&'static str>,
    next_index: u32,
}

impl World {
    /// A world with a pod namespace at `pod_path`.
    pub fn new(pod_path: &str) -> Self {
        World {
            pod: Some(Vec::new()),
            pod_path: pod_path.to_string(),
            alive: vec![pod_path.to_string()],
            next_index: 10,
            ..World::default()
        }
    }

    /// Adds a link to `side`; returns its index.
    pub fn add_link(&mut self, side: Side, name: &str, mac: &str, mtu: u32, up: bool) -> u32 {
        self.next_index += 1;
        let link = Link {
            index: self.next_index,
            name: name.to_string(),
            mac: mac.parse().ok(),
            mtu,
            up,
            ..Link::default()
        };
        let fl = FakeLink {
            link,
            ..FakeLink::default()
        };
        match side {
            Side::Host => self.host.push(fl),
            Side::Pod => self.pod.get_or_insert_with(Vec::new).push(fl),
        }
        self.next_index
    }

    /// The links of `side` (empty if the pod is gone).
    pub fn side(&self, side: Side) -> &[FakeLink] {
        match side {
            Side::Host => &self.host,
            Side::Pod => self.pod.as_deref().unwrap_or(&[]),
        }
    }

    /// The link `name` on `side`.
    pub fn get(&self, side: Side, name: &str) -> Option<&FakeLink> {
        self.side(side).iter().find(|l| l.link.name == name)
    }

    fn side_mut(&mut self, side: Side) -> NetResult<&mut Vec<FakeLink>> {
        match side {
            Side::Host => Ok(&mut self.host),
            Side::Pod => self.pod.as_mut().ok_or_else(|| not_found("pod")),
        }
    }

    fn link_mut(&mut self, side: Side, index: u32) -> NetResult<&mut FakeLink> {
        self.side_mut(side)?
            .iter_mut()
            .find(|l| l.link.index == index)
            .ok_or_else(|| not_found(&format!("link #{index}")))
    }
}

fn not_found(target: &str) -> Error {
    Error::NotFound {
        op: "fake",
        target: target.to_string(),
        errno: libc::ENODEV,
    }
}

fn exists(target: &str) -> Error {
    Error::Exists {
        op: "fake",
        target: target.to_string(),
    }
}

/// A [`Net`] over a shared [`World`].
#[derive(Debug, Clone)]
pub struct FakeNet {
    pub world: Rc<RefCell<World>>,
    pod: bool,
}

impl FakeNet {
    fn check(&self, op: &'static str) -> NetResult<()> {
        if self.world.borrow().fail_exists.contains(&op) {
            return Err(exists("fake"));
        }
        if self.world.borrow().fail.contains(&op) {
            return Err(Error::Kernel {
                op,
                target: "fake".into(),
                source: std::io::Error::from_raw_os_error(libc::EPERM),
            });
        }
        Ok(())
    }

    fn side_ok(&self, side: Side) -> NetResult<()> {
        if side == Side::Pod && !self.pod {
            return Err(not_found("pod"));
        }
        Ok(())
    }

    fn with<T>(
        &self,
        op: &'static str,
        side: Side,
        index: u32,
        f: impl FnOnce(&mut FakeLink) -> NetResult<T>,
    ) -> NetResult<T> {
        self.check(op)?;
        self.side_ok(side)?;
        let mut w = self.world.borrow_mut();
        f(w.link_mut(side, index)?)
    }
}

/// Opens [`FakeNet`]s.
#[derive(Debug, Clone, Default)]
pub struct FakeOpener {
    pub world: Rc<RefCell<World>>,
}

impl FakeOpener {
    pub fn new(world: World) -> Self {
        Self {
            world: Rc::new(RefCell::new(world)),
        }
    }
}

impl NetOpener for FakeOpener {
    type Net = FakeNet;

    fn open(&self, netns: &str) -> Result<(FakeNet, Option<String>), Error> {
        let w = self.world.borrow();
        let pod = !netns.is_empty() && netns == w.pod_path && w.pod.is_some();
        let why = (!pod).then(|| format!("{netns:?} is not a network namespace"));
        Ok((
            FakeNet {
                world: self.world.clone(),
                pod,
            },
            why,
        ))
    }

    fn netns_alive(&self, path: &str) -> bool {
        let w = self.world.borrow();
        w.alive.iter().any(|p| p == path) && (path != w.pod_path || w.pod.is_some())
    }
}

impl Net for FakeNet {
    fn has_pod(&self) -> bool {
        self.pod
    }

    fn links(&self, side: Side) -> NetResult<Vec<Link>> {
        self.side_ok(side)?;
        Ok(self
            .world
            .borrow()
            .side(side)
            .iter()
            .map(|l| l.link.clone())
            .collect())
    }

    fn link_by_name(&self, side: Side, name: &str) -> NetResult<Option<Link>> {
        self.side_ok(side)?;
        Ok(self.world.borrow().get(side, name).map(|l| l.link.clone()))
    }

    fn addresses(&self, side: Side, index: u32) -> NetResult<Vec<Address>> {
        self.with("addresses", side, index, |l| {
            Ok(l.addrs
                .iter()
                .map(|a| Address {
                    index,
                    addr: *a,
                    scope: Scope::Universe,
                    flags: 0,
                    label: None,
                })
                .collect())
        })
    }

    fn routes(&self, side: Side, index: u32) -> NetResult<Vec<Route>> {
        self.with("routes", side, index, |l| Ok(l.routes.clone()))
    }

    fn move_link(&self, from: Side, index: u32, to: &LinkMove<'_>) -> NetResult<()> {
        self.check("move_link")?;
        self.side_ok(from)?;
        self.side_ok(from.other())?;
        let mut w = self.world.borrow_mut();
        let dest = from.other();
        let pos = w
            .side(from)
            .iter()
            .position(|l| l.link.index == index)
            .ok_or_else(|| not_found(&format!("link #{index}")))?;
        let cur = w.side(from)[pos].link.name.clone();
        let name = to.name.unwrap_or(&cur).to_string();
        let name = name.as_str();
        let taken = |n: &str| w.get(dest, n).is_some();
        let (cur_taken, new_taken) = (taken(&cur), taken(name));
        if cur_taken && (new_taken || name.is_empty()) {
            return Err(exists(name));
        }
        let mut l = w.side_mut(from)?.remove(pos);
        l.addrs.clear();
        l.routes.clear();
        l.link.up = false;
        let result = if cur_taken || !new_taken {
            // Then, as the kernel does, the rest of the request: MTU, name,
            // alias, flags.
            if let Some(mtu) = to.mtu {
                l.link.mtu = mtu;
            }
            l.link.name = name.to_string();
            if let Some(a) = to.alias {
                l.link.alias = (!a.is_empty()).then(|| a.to_string());
            }
            if let Some(up) = to.up {
                l.link.up = up;
            }
            Ok(())
        } else {
            // Moved under the old name, rename refused: as the kernel does.
            Err(exists(name))
        };
        w.side_mut(dest)?.push(l);
        result
    }

    fn rename(&self, side: Side, index: u32, name: &str) -> NetResult<()> {
        self.check("rename")?;
        self.side_ok(side)?;
        let mut w = self.world.borrow_mut();
        if w.get(side, name).is_some_and(|l| l.link.index != index) {
            return Err(exists(name));
        }
        let l = w.link_mut(side, index)?;
        if l.link.up {
            return Err(Error::Busy {
                op: "rename",
                target: name.to_string(),
            });
        }
        l.link.name = name.to_string();
        Ok(())
    }

    fn set_up(&self, side: Side, index: u32, up: bool) -> NetResult<()> {
        self.with("set_up", side, index, |l| {
            l.link.up = up;
            Ok(())
        })
    }

    fn set_mtu(&self, side: Side, index: u32, mtu: u32) -> NetResult<()> {
        self.with("set_mtu", side, index, |l| {
            l.link.mtu = mtu;
            Ok(())
        })
    }

    fn set_alias(&self, side: Side, index: u32, alias: Option<&str>) -> NetResult<()> {
        self.with("set_alias", side, index, |l| {
            l.link.alias = alias.map(str::to_string);
            Ok(())
        })
    }

    fn add_address(&self, side: Side, index: u32, addr: &IpNet) -> NetResult<()> {
        self.with("add_address", side, index, |l| {
            if l.addrs.contains(addr) {
                return Err(exists(&addr.to_string()));
            }
            l.addrs.push(*addr);
            // The kernel's connected route (IPv4, link up, shorter than /32).
            if let IpNet::V4(v4) = addr {
                if l.link.up && v4.prefix_len() < 32 {
                    let mut r = Route::new(IpNet::V4(v4.trunc()));
                    r.oif = Some(index);
                    r.scope = Scope::Link;
                    r.protocol = RTPROT_KERNEL;
                    r.prefsrc = Some(addr.addr());
                    l.routes.push(r);
                }
            }
            Ok(())
        })
    }

    fn add_route(&self, side: Side, route: &Route) -> NetResult<()> {
        let index = route.oif.unwrap_or_default();
        self.with("add_route", side, index, |l| {
            // NLM_F_EXCL: any route for the same prefix, table and metric.
            if l.routes.iter().any(|r| {
                r.dst == route.dst && r.table == route.table && r.priority == route.priority
            }) {
                return Err(exists(&route.dst.to_string()));
            }
            l.routes.push(route.clone());
            Ok(())
        })
    }

    fn create_route(&self, side: Side, route: &Route) -> NetResult<()> {
        let index = route.oif.unwrap_or_default();
        self.with("create_route", side, index, |l| {
            // Without NLM_F_EXCL: only an identical route is refused.
            if l.routes.contains(route) {
                return Err(exists(&route.dst.to_string()));
            }
            l.routes.push(route.clone());
            Ok(())
        })
    }
}
