//! `host-device`: moves a host NIC or VF into the pod, config-compatible with
//! containernetworking/plugins' host-device (see `docs/host-device.md`).
//!
//! What it adds over the reference: the device's host state (name, MAC, PCI
//! address, MTU, up/down, alias; addresses and routes with
//! `useInterfaceNetwork`) is recorded before the move and restored on DEL;
//! each move carries the name, alias and link state in the same netlink
//! request;
//! a failed ADD puts everything back; DEL is idempotent and always releases
//! the IPAM allocation; an allocated `deviceID` wins over a `device` name;
//! a per-device lock serialises racing ADDs.
//!
//! Seams: [`net::NetOpener`] (kernel), [`plexus_cni::exec::Exec`] (IPAM
//! delegate; `main` runs our own `static` in-process through
//! `BuiltinExec`), and a sysfs root path. `main` builds the real ones.

pub mod config;
pub mod error;
mod logging;
pub mod net;
pub mod plan;
pub mod store;
mod teardown;
pub mod testing;

use std::path::PathBuf;

use plexus_cni::exec::{self, DelegateEnv, Exec};
use plexus_cni::{CmdArgs, CniError, CniResult, MacAddr, Plugin};
use plexus_netlink::{Link, LinkMove};
use plexus_sysfs::pci::{self, PciAddr};
use serde_json::Value;
use tracing::warn;

use config::{Config, Selector};
use error::Error;
use net::{Net, NetOpener, Side};
use store::{Record, Store};

/// The `about` text of the binary.
pub const ABOUT: &str = "Plexus host-device: moves a host network device into the pod";

/// The device ADD found on the host.
#[derive(Debug, Clone)]
enum Found {
    /// A netdev that will be moved.
    Netdev { link: Link, pci: Option<PciAddr> },
    /// A PCI function bound to a userspace driver: reported, not moved.
    Userspace { pci: PciAddr },
}

/// The per-device lock key: PCI address, else MAC, else the host name. ADD
/// and a DEL without a record must key one device alike.
pub(crate) fn device_key(pci: Option<PciAddr>, mac: Option<MacAddr>, host_name: &str) -> String {
    pci.map(|p| p.to_string())
        .or_else(|| mac.map(|m| m.to_string()))
        .unwrap_or_else(|| host_name.to_owned())
}

impl Found {
    /// The per-device lock key (see [`device_key`]).
    fn key(&self) -> String {
        match self {
            Found::Userspace { pci } => pci.to_string(),
            Found::Netdev { link, pci } => device_key(*pci, link.mac, &link.name),
        }
    }

    fn mac(&self) -> Option<MacAddr> {
        match self {
            Found::Netdev { link, .. } => link.mac,
            Found::Userspace { .. } => None,
        }
    }

    fn pci(&self) -> Option<PciAddr> {
        match self {
            Found::Netdev { pci, .. } => *pci,
            Found::Userspace { pci } => Some(*pci),
        }
    }
}

/// The plugin, generic over its seams.
#[derive(Debug)]
pub struct HostDevice<O, E> {
    pub opener: O,
    pub exec: E,
    /// "/" in production; a fixture tree in tests.
    pub sys_root: PathBuf,
}

/// What `attach` did so far, for rollback.
#[derive(Debug, Default)]
struct Progress {
    moved: bool,
    ipam_ran: bool,
}

impl<O: NetOpener, E: Exec> HostDevice<O, E> {
    // ----- ADD -----------------------------------------------------------

    fn cmd_add(&self, args: &CmdArgs) -> Result<Value, Error> {
        let conf = Config::load(&args.stdin)?;
        let net = self.open_pod(&args.netns)?;
        let store = Store::new(&conf.data_dir);
        let found = self.find_device(&conf.selector, &net, &store)?;
        let _lock = store.lock(&found.key())?;
        // Re-resolve under the lock: a racing ADD may have taken it.
        let mut found = self.find_device(&conf.selector, &net, &store)?;
        if self.check_unclaimed(&found, args, &net, &store)? {
            // A stale attachment's device was just renamed back.
            found = self.find_device(&conf.selector, &net, &store)?;
        }
        let record = self.record(&conf, args, &found, &net)?;
        store.save(&record)?;
        let mut progress = Progress::default();
        match self.attach(&conf, args, &net, &record, &found, &mut progress) {
            Ok(v) => Ok(v),
            Err(e) => {
                self.rollback(&conf, args, &net, &record, &progress);
                if let Err(re) = store.remove(&args.container_id, &args.ifname) {
                    warn!(error = %re, "rollback: cannot remove the record");
                }
                Err(e)
            }
        }
    }

    /// Move, IPAM, configure, report: everything `rollback` can undo.
    fn attach(
        &self,
        conf: &Config,
        args: &CmdArgs,
        net: &O::Net,
        record: &Record,
        found: &Found,
        progress: &mut Progress,
    ) -> Result<Value, Error> {
        if record.userspace {
            let ipam = self.run_ipam(conf, args, record, progress)?;
            let result = plan::report(
                &args.ifname,
                None,
                None,
                &args.netns,
                record.host.pci,
                ipam,
                conf.net.dns.clone(),
            );
            return Ok(result.to_json(conf.net.version())?);
        }
        let Found::Netdev { link, .. } = found else {
            return Err(Error::DeviceNotFound {
                selector: format!("device {:?}", record.host.name),
            });
        };
        let pod_link = self.move_in(net, record, link.index, &args.ifname, progress)?;
        let ipam = self.run_ipam(conf, args, record, progress)?;
        if let Some(res) = &ipam {
            self.configure(net, pod_link.index, res)?;
        }
        let result = plan::report(
            &args.ifname,
            pod_link.mac.as_ref().map(ToString::to_string),
            Some(pod_link.mtu),
            &args.netns,
            record.host.pci,
            ipam,
            conf.net.dns.clone(),
        );
        Ok(result.to_json(conf.net.version())?)
    }

    fn open_pod(&self, netns: &str) -> Result<O::Net, Error> {
        let (net, missing) = self
            .opener
            .open(netns)
            .map_err(Error::netlink("open netlink"))?;
        match missing {
            Some(why) => Err(Error::Netns {
                path: netns.to_string(),
                msg: why,
            }),
            None => Ok(net),
        }
    }

    fn pci_of(&self, link: &Link) -> Option<PciAddr> {
        self.pci_of_named(link, &link.name)
    }

    /// `link`'s PCI address, looked up in sysfs as `host_name` (the name
    /// the host knows it by) when the kernel does not report its parent.
    pub(crate) fn pci_of_named(&self, link: &Link, host_name: &str) -> Option<PciAddr> {
        // IFLA_PARENT_DEV_NAME works in any namespace; sysfs is the fallback
        // for kernels that do not report it.
        link.parent_dev
            .as_deref()
            .filter(|_| link.parent_bus.as_deref() == Some("pci"))
            .and_then(|p| p.parse().ok())
            .or_else(|| pci::pci_of_netdev(&self.sys_root, host_name).ok().flatten())
    }

    /// Resolves the selector to a host device.
    fn find_device(&self, sel: &Selector, net: &O::Net, store: &Store) -> Result<Found, Error> {
        let not_found = || self.not_found(sel, store);
        let name = match sel {
            Selector::DeviceId(a) | Selector::PciBusId(a) => {
                if !pci::pci_exists(&self.sys_root, a) {
                    return Err(not_found());
                }
                if let Some(d) = pci::driver_of_pci(&self.sys_root, a)? {
                    if pci::is_userspace_driver(&d) {
                        return Ok(Found::Userspace { pci: *a });
                    }
                }
                match pci::netdevs_of_pci(&self.sys_root, a)?.into_iter().next() {
                    Some(n) => n,
                    None => return Err(not_found()),
                }
            }
            Selector::Name(n) => n.clone(),
            Selector::Mac(m) => {
                let links = net
                    .links(Side::Host)
                    .map_err(Error::netlink("list host links"))?;
                let link = links
                    .into_iter()
                    .find(|l| l.has_mac(m))
                    .ok_or_else(not_found)?;
                let pci = self.pci_of(&link);
                return Ok(Found::Netdev { link, pci });
            }
            Selector::KernelPath(p) => pci::netdev_of_kernelpath(&self.sys_root, p)?,
        };
        let link = net
            .link_by_name(Side::Host, &name)
            .map_err(Error::netlink(format!("look up {name:?} on the host")))?
            .ok_or_else(not_found)?;
        let pci = match sel {
            Selector::DeviceId(a) | Selector::PciBusId(a) => Some(*a),
            _ => self.pci_of(&link),
        };
        Ok(Found::Netdev { link, pci })
    }

    /// Device absent: say who holds it when a record knows.
    fn not_found(&self, sel: &Selector, store: &Store) -> Error {
        let holder = store.list().ok().and_then(|rs| {
            rs.into_iter().find(|r| match sel {
                Selector::Name(n) => &r.host.name == n,
                Selector::Mac(m) => r.host.mac.as_ref() == Some(m),
                Selector::DeviceId(a) | Selector::PciBusId(a) => r.host.pci.as_ref() == Some(a),
                Selector::KernelPath(_) => false,
            })
        });
        match holder {
            Some(r) => Error::InUse {
                device: sel.to_string(),
                container: r.container_id,
                ifname: r.ifname,
            },
            None => Error::DeviceNotFound {
                selector: sel.to_string(),
            },
        }
    }

    /// Fails if another live attachment holds the device; a record whose pod
    /// namespace is gone is stale: its device is restored and it is dropped.
    /// Returns whether anything was restored.
    fn check_unclaimed(
        &self,
        found: &Found,
        args: &CmdArgs,
        net: &O::Net,
        store: &Store,
    ) -> Result<bool, Error> {
        let mac = found.mac();
        let pci = found.pci();
        let mut restored = false;
        for r in store.list()? {
            let same_attachment = r.container_id == args.container_id && r.ifname == args.ifname;
            if !r.same_device(mac.as_ref(), pci.as_ref()) {
                continue;
            }
            if !same_attachment && self.opener.netns_alive(&r.netns) {
                return Err(Error::InUse {
                    device: found_name(found),
                    container: r.container_id,
                    ifname: r.ifname,
                });
            }
            // Stale (or a retried ADD of this attachment): the device is on
            // the host, maybe under its pod name; put it back first.
            if let Err(e) = self.restore_on_host(net, &r) {
                warn!(container = %r.container_id, error = %e, "stale record: cannot restore the device");
            }
            store.remove(&r.container_id, &r.ifname)?;
            restored = true;
        }
        Ok(restored)
    }

    fn record(
        &self,
        conf: &Config,
        args: &CmdArgs,
        found: &Found,
        net: &O::Net,
    ) -> Result<Record, Error> {
        let host = match found {
            Found::Userspace { pci } => store::HostState {
                name: String::new(),
                mac: None,
                pci: Some(*pci),
                mtu: 0,
                up: false,
                alias: None,
                addresses: Vec::new(),
                routes: Vec::new(),
            },
            // The kernel flushes addresses and routes on the move; they are
            // only worth two dumps when `useInterfaceNetwork` puts them back.
            Found::Netdev { link, pci } if !conf.use_interface_network => {
                plan::host_state(link, *pci, &[], &[])
            }
            Found::Netdev { link, pci } => {
                let during = || format!("read host config of {:?}", link.name);
                let addrs = net
                    .addresses(Side::Host, link.index)
                    .map_err(Error::netlink(during()))?;
                let routes = net
                    .routes(Side::Host, link.index)
                    .map_err(Error::netlink(during()))?;
                plan::host_state(link, *pci, &addrs, &routes)
            }
        };
        Ok(Record {
            container_id: args.container_id.clone(),
            ifname: args.ifname.clone(),
            netns: args.netns.clone(),
            host,
            userspace: matches!(found, Found::Userspace { .. }),
            use_interface_network: conf.use_interface_network,
        })
    }

    /// Moves host link `index` (resolved under the device lock) into the
    /// pod under `ifname`, marked with its host name (`IFLA_IFALIAS`, as the
    /// reference does) and up, all in the move's own request.
    fn move_in(
        &self,
        net: &O::Net,
        record: &Record,
        index: u32,
        ifname: &str,
        progress: &mut Progress,
    ) -> Result<Link, Error> {
        let host = &record.host;
        let taken = net
            .link_by_name(Side::Pod, ifname)
            .map_err(Error::netlink("look up the pod interface"))?;
        if taken.is_some() {
            return Err(Error::IfnameTaken {
                ifname: ifname.to_string(),
            });
        }
        let arrival = LinkMove {
            name: Some(ifname),
            alias: Some(&host.name),
            mtu: None,
            up: Some(true),
        };
        if let Err(e) = net.move_link(Side::Host, index, &arrival) {
            // The kernel renames after moving unless the old name clashes
            // too, and sets alias and state after that: an error may come
            // from a device already in the pod (under either name), so the
            // rollback looks there; it changes nothing when it is not.
            progress.moved = true;
            return Err(if e.is_exists() {
                Error::IfnameTaken {
                    ifname: ifname.to_string(),
                }
            } else {
                Error::netlink(format!("move {:?} into the pod as {ifname:?}", host.name))(e)
            });
        }
        progress.moved = true;
        // The ifindex may change on the move; MAC and MTU go in the result.
        net.link_by_name(Side::Pod, ifname)
            .map_err(Error::netlink("look up the moved interface"))?
            .ok_or_else(|| Error::DeviceNotFound {
                selector: format!("device {ifname:?} in the pod"),
            })
    }

    /// The addresses and routes for the pod: the host's own
    /// (`useInterfaceNetwork`), the IPAM plugin's, or both merged.
    fn run_ipam(
        &self,
        conf: &Config,
        args: &CmdArgs,
        record: &Record,
        progress: &mut Progress,
    ) -> Result<Option<CniResult>, Error> {
        let mut out = conf
            .use_interface_network
            .then(|| plan::interface_network(&record.host));
        if let Some(ipam) = &conf.ipam_type {
            progress.ipam_ran = true;
            let res = exec::delegate_add(ipam, &args.stdin, &DelegateEnv::from(args), &self.exec)?;
            if res.ips.is_empty() {
                return Err(Error::NoIpConfig);
            }
            out = Some(match out {
                Some(mut own) => {
                    own.ips.extend(res.ips);
                    own.routes.extend(res.routes);
                    own.dns = res.dns;
                    own
                }
                None => res,
            });
        }
        Ok(out)
    }

    fn configure(&self, net: &O::Net, index: u32, res: &CniResult) -> Result<(), Error> {
        let (addrs, routes) = plan::pod_config(res, index);
        for a in &addrs {
            net.add_address(Side::Pod, index, a)
                .map_err(Error::netlink(format!("add address {a}")))?;
        }
        // The link came up with the move: routes through a gateway need it.
        // Routes go in beside any others for their prefix, as the
        // reference's: the tutorial's `<subnet> gw 0.0.0.0` becomes a second
        // route next to the kernel's connected one.
        for r in &routes {
            match net.create_route(Side::Pod, r) {
                Ok(()) => {}
                // The kernel refuses only a route it already has (listed
                // twice, or by both `useInterfaceNetwork` and IPAM); keep it
                // if it is exactly the one asked for, else fail (rollback).
                Err(e) if e.is_exists() => {
                    let have = net
                        .routes(Side::Pod, index)
                        .map_err(Error::netlink("list pod routes"))?;
                    if !have.iter().any(|h| plan::same_route(r, h)) {
                        return Err(Error::RouteConflict {
                            route: plan::describe_route(r),
                        });
                    }
                }
                Err(e) => {
                    let during = format!("add route {}", plan::describe_route(r));
                    return Err(Error::netlink(during)(e));
                }
            }
        }
        Ok(())
    }
}

fn found_name(f: &Found) -> String {
    match f {
        Found::Netdev { link, .. } => link.name.clone(),
        Found::Userspace { pci } => pci.to_string(),
    }
}

impl<O: NetOpener, E: Exec> Plugin for HostDevice<O, E> {
    fn add(&self, args: &CmdArgs) -> Result<Value, CniError> {
        logging::init();
        self.cmd_add(args).map_err(CniError::from)
    }

    fn del(&self, args: &CmdArgs) -> Result<(), CniError> {
        logging::init();
        self.cmd_del(args).map_err(CniError::from)
    }

    fn check(&self, args: &CmdArgs) -> Result<(), CniError> {
        logging::init();
        self.cmd_check(args).map_err(CniError::from)
    }

    fn status(&self, args: &CmdArgs) -> Result<(), CniError> {
        logging::init();
        self.cmd_status(args).map_err(CniError::from)
    }

    fn gc(&self, args: &CmdArgs) -> Result<(), CniError> {
        logging::init();
        self.cmd_gc(args).map_err(CniError::from)
    }
}
