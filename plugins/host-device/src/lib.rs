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
pub mod testing;

use std::path::PathBuf;

use plexus_cni::exec::{self, DelegateEnv, Exec};
use plexus_cni::{CmdArgs, CniError, CniResult, Plugin};
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

impl Found {
    /// The per-device lock key: PCI address, else MAC, else name.
    fn key(&self) -> String {
        match self {
            Found::Userspace { pci } => pci.to_string(),
            Found::Netdev { link, pci } => pci
                .map(|p| p.to_string())
                .or_else(|| link.mac.as_ref().map(ToString::to_string))
                .unwrap_or_else(|| link.name.clone()),
        }
    }

    fn mac(&self) -> Option<String> {
        match self {
            Found::Netdev { link, .. } => link.mac.as_ref().map(ToString::to_string),
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
        // IFLA_PARENT_DEV_NAME works in any namespace; sysfs is the fallback
        // for kernels that do not report it.
        link.parent_dev
            .as_deref()
            .filter(|_| link.parent_bus.as_deref() == Some("pci"))
            .and_then(|p| p.parse().ok())
            .or_else(|| {
                pci::pci_of_netdev(&self.sys_root, &link.name)
                    .ok()
                    .flatten()
            })
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
                Selector::Mac(m) => r.host.mac.as_deref() == Some(m.to_string().as_str()),
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
            if !r.same_device(mac.as_deref(), pci.as_ref()) {
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

    /// Undoes a failed ADD: device back on the host as found, IPAM released.
    fn rollback(&self, conf: &Config, args: &CmdArgs, net: &O::Net, record: &Record, p: &Progress) {
        if p.moved {
            if let Err(e) = self.restore(net, record) {
                warn!(device = %record.host.name, error = %e, "rollback: cannot restore the device");
            }
        }
        if p.ipam_ran {
            if let Some(ipam) = &conf.ipam_type {
                let env = DelegateEnv::from(args);
                if let Err(e) = exec::delegate_del(ipam, &args.stdin, &env, &self.exec) {
                    warn!(error = %e, "rollback: IPAM DEL failed");
                }
            }
        }
    }

    // ----- DEL -----------------------------------------------------------

    fn cmd_del(&self, args: &CmdArgs) -> Result<(), Error> {
        let conf = Config::load(&args.stdin)?;
        let store = Store::new(&conf.data_dir);
        // A vanished or empty netns is normal on DEL: look on the host only.
        let (net, _missing) = self
            .opener
            .open(&args.netns)
            .map_err(Error::netlink("open netlink"))?;
        let record = store.load(&args.container_id, &args.ifname)?;
        let mut errors: Vec<String> = Vec::new();
        match &record {
            Some(r) => {
                let key = r.host.pci.map(|p| p.to_string()).or(r.host.mac.clone());
                let _lock = key.map(|k| store.lock(&k)).transpose()?;
                if let Err(e) = self.restore(&net, r) {
                    errors.push(e.to_string());
                }
            }
            None => {
                if let Err(e) = self.restore_by_alias(&net, &args.ifname) {
                    errors.push(e.to_string());
                }
            }
        }
        if let Some(ipam) = &conf.ipam_type {
            if let Err(e) =
                exec::delegate_del(ipam, &args.stdin, &DelegateEnv::from(args), &self.exec)
            {
                errors.push(format!("IPAM DEL: {e}"));
            }
        }
        if errors.is_empty() {
            store.remove(&args.container_id, &args.ifname)
        } else {
            // Keep the record: the runtime retries DEL, which can then finish.
            Err(CniError::generic(errors.join("; ")).into())
        }
    }

    /// Puts the recorded device back on the host as it was found. Looks in
    /// the pod (by name, then MAC) and on the host (by original name, MAC,
    /// PCI address: a netns destroyed under it returns it as e.g. `net1`).
    /// A device found nowhere is gone: nothing to do.
    fn restore(&self, net: &O::Net, r: &Record) -> Result<(), Error> {
        if r.userspace {
            return Ok(());
        }
        if net.has_pod() {
            if let Some(link) = self.find_in_pod(net, r)? {
                // Name, MTU, alias and up state as found, in the move's own
                // request: nothing is left to do on the host after it.
                let h = &r.host;
                let back = LinkMove {
                    name: Some(&h.name),
                    alias: Some(h.alias.as_deref().unwrap_or("")),
                    mtu: (h.mtu != 0).then_some(h.mtu),
                    up: Some(h.up),
                };
                match net.move_link(Side::Pod, link.index, &back) {
                    Ok(()) if !r.use_interface_network => return Ok(()),
                    Ok(()) => {}
                    // Refused outright (both names taken on the host, or
                    // the move itself failed): it is still in the pod and
                    // DEL must fail so the retry can finish. Otherwise it
                    // moved and a later step failed (e.g. the rename
                    // clashed): the host side below finishes it step by
                    // step.
                    Err(e) => {
                        if self.find_in_pod(net, r)?.is_some() {
                            let why = if e.is_exists() {
                                format!(
                                    "move {:?} back to the host: name {:?} is taken there",
                                    link.name, h.name
                                )
                            } else {
                                format!("move {:?} back to the host as {:?}", link.name, h.name)
                            };
                            return Err(Error::netlink(why)(e));
                        }
                    }
                }
            }
        }
        self.restore_on_host(net, r)
    }

    fn find_in_pod(&self, net: &O::Net, r: &Record) -> Result<Option<Link>, Error> {
        let mac_ok = |l: &Link| match &r.host.mac {
            Some(m) => {
                l.mac.as_ref().is_some_and(|x| x.to_string() == *m)
                    || l.perm_mac.as_ref().is_some_and(|x| x.to_string() == *m)
            }
            None => true,
        };
        if let Some(l) = net
            .link_by_name(Side::Pod, &r.ifname)
            .map_err(Error::netlink("look up the pod interface"))?
            .filter(|l| mac_ok(l))
        {
            return Ok(Some(l));
        }
        if r.host.mac.is_none() {
            return Ok(None);
        }
        // Renamed inside the pod: find it by MAC.
        Ok(net
            .links(Side::Pod)
            .map_err(Error::netlink("list pod links"))?
            .into_iter()
            .find(|l| l.name != "lo" && mac_ok(l)))
    }

    /// The host half of [`Self::restore`]: name, MTU, alias, up state and,
    /// with `useInterfaceNetwork`, addresses and routes.
    fn restore_on_host(&self, net: &O::Net, r: &Record) -> Result<(), Error> {
        let h = &r.host;
        let Some(link) = self.find_on_host(net, r)? else {
            warn!(device = %h.name, "not found anywhere; nothing to restore");
            return Ok(());
        };
        let err = |what: &str| Error::netlink(format!("restore {} of {:?}", what, h.name));
        if link.name != h.name {
            net.set_up(Side::Host, link.index, false)
                .map_err(err("state"))?;
            net.rename(Side::Host, link.index, &h.name)
                .map_err(err("name"))?;
        }
        if h.mtu != 0 && link.mtu != h.mtu {
            net.set_mtu(Side::Host, link.index, h.mtu)
                .map_err(err("MTU"))?;
        }
        if link.alias != h.alias {
            net.set_alias(Side::Host, link.index, h.alias.as_deref())
                .map_err(err("alias"))?;
        }
        if h.up || link.up {
            net.set_up(Side::Host, link.index, h.up)
                .map_err(err("state"))?;
        }
        if r.use_interface_network {
            for a in &h.addresses {
                match net.add_address(Side::Host, link.index, a) {
                    Err(e) if !e.is_exists() => return Err(err("addresses")(e)),
                    _ => {}
                }
            }
            for route in plan::host_routes(h, link.index) {
                match net.add_route(Side::Host, &route) {
                    Err(e) if !e.is_exists() => return Err(err("routes")(e)),
                    _ => {}
                }
            }
        }
        Ok(())
    }

    fn find_on_host(&self, net: &O::Net, r: &Record) -> Result<Option<Link>, Error> {
        let h = &r.host;
        let mac_ok = |l: &Link| {
            h.mac.as_ref().is_none_or(|m| {
                l.mac.as_ref().is_some_and(|x| x.to_string() == *m)
                    || l.perm_mac.as_ref().is_some_and(|x| x.to_string() == *m)
            })
        };
        // The usual case, without listing every link of the node.
        if let Some(l) = net
            .link_by_name(Side::Host, &h.name)
            .map_err(Error::netlink("look up the host device"))?
            .filter(|l| mac_ok(l))
        {
            return Ok(Some(l));
        }
        let links = net
            .links(Side::Host)
            .map_err(Error::netlink("list host links"))?;
        let by_mac = |l: &&Link| {
            h.mac.as_ref().is_some_and(|m| {
                l.mac.as_ref().is_some_and(|x| x.to_string() == *m)
                    || l.perm_mac.as_ref().is_some_and(|x| x.to_string() == *m)
            })
        };
        if let Some(l) = links
            .iter()
            .find(|l| l.name == h.name && (h.mac.is_none() || by_mac(l)))
        {
            return Ok(Some(l.clone()));
        }
        if let Some(l) = links.iter().find(by_mac) {
            return Ok(Some(l.clone()));
        }
        if let Some(p) = &h.pci {
            if let Ok(names) = pci::netdevs_of_pci(&self.sys_root, p) {
                if let Some(l) = links.iter().find(|l| names.contains(&l.name)) {
                    return Ok(Some(l.clone()));
                }
            }
        }
        Ok(None)
    }

    /// DEL without a record (e.g. an attachment made by the reference
    /// plugin): the pod interface's alias holds the host name.
    fn restore_by_alias(&self, net: &O::Net, ifname: &str) -> Result<(), Error> {
        if !net.has_pod() {
            return Ok(());
        }
        let Some(link) = net
            .link_by_name(Side::Pod, ifname)
            .map_err(Error::netlink("look up the pod interface"))?
        else {
            return Ok(());
        };
        let Some(alias) = link.alias.clone() else {
            return Ok(());
        };
        let back = LinkMove {
            name: Some(&alias),
            alias: Some(""),
            mtu: None,
            up: None,
        };
        net.move_link(Side::Pod, link.index, &back)
            .map_err(Error::netlink(format!("move {ifname:?} back as {alias:?}")))
    }

    // ----- CHECK, STATUS, GC ---------------------------------------------

    fn cmd_check(&self, args: &CmdArgs) -> Result<(), Error> {
        let conf = Config::load(&args.stdin)?;
        let prev = conf
            .net
            .parse_prev_result()?
            .ok_or_else(|| Error::Check("Required prevResult missing".into()))?;
        if let Some(ipam) = &conf.ipam_type {
            exec::delegate_check(ipam, &args.stdin, &DelegateEnv::from(args), &self.exec)?;
        }
        let record = Store::new(&conf.data_dir).load(&args.container_id, &args.ifname)?;
        if record.as_ref().is_some_and(|r| r.userspace) {
            return Ok(());
        }
        let net = self.open_pod(&args.netns)?;
        let (idx, iface) = prev
            .interfaces
            .iter()
            .enumerate()
            .find(|(_, i)| i.name == args.ifname && i.sandbox == args.netns)
            .ok_or_else(|| Error::Check(format!("interface {} not in prevResult", args.ifname)))?;
        let link = net
            .link_by_name(Side::Pod, &args.ifname)
            .map_err(Error::netlink("look up the pod interface"))?
            .ok_or_else(|| {
                Error::Check(format!("interface {} not found in the pod", args.ifname))
            })?;
        let mac = link
            .mac
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default();
        if !iface.mac.is_empty() && !iface.mac.eq_ignore_ascii_case(&mac) {
            return Err(Error::Check(format!(
                "interface {} has MAC {mac}, expected {}",
                args.ifname, iface.mac
            )));
        }
        let addrs = net
            .addresses(Side::Pod, link.index)
            .map_err(Error::netlink("list pod addresses"))?;
        for ip in prev.ips.iter().filter(|ip| ip.interface == Some(idx)) {
            if !addrs.iter().any(|a| a.addr == ip.address) {
                return Err(Error::Check(format!(
                    "address {} not found on {}",
                    ip.address, args.ifname
                )));
            }
        }
        let routes = net
            .routes(Side::Pod, link.index)
            .map_err(Error::netlink("list pod routes"))?;
        for want in &prev.routes {
            let ok = routes.iter().any(|r| {
                r.dst == want.dst
                    && want
                        .gw
                        .filter(|g| !g.is_unspecified())
                        .is_none_or(|g| r.gateway == Some(g))
            });
            if !ok {
                return Err(Error::Check(format!("route to {} not found", want.dst)));
            }
        }
        Ok(())
    }

    fn cmd_status(&self, args: &CmdArgs) -> Result<(), Error> {
        let conf = Config::load(&args.stdin)?;
        if let Some(ipam) = &conf.ipam_type {
            exec::delegate_status(ipam, &args.stdin, &DelegateEnv::from(args), &self.exec)?;
        }
        Ok(())
    }

    /// Drops the records (restoring their devices) of attachments the
    /// runtime no longer lists, then forwards GC to IPAM. Goes on past
    /// single failures and reports them all.
    fn cmd_gc(&self, args: &CmdArgs) -> Result<(), Error> {
        let conf = Config::load(&args.stdin)?;
        let store = Store::new(&conf.data_dir);
        let valid = conf.net.valid_attachments()?.unwrap_or_default();
        let mut errors = Vec::new();
        for r in store.list()? {
            let listed = valid
                .iter()
                .any(|a| a.container_id == r.container_id && a.ifname == r.ifname);
            if listed {
                continue;
            }
            let restored = self
                .opener
                .open(&r.netns)
                .map_err(Error::netlink("open netlink"))
                .and_then(|(net, _)| self.restore(&net, &r));
            match restored.and_then(|()| store.remove(&r.container_id, &r.ifname)) {
                Ok(()) => {}
                Err(e) => errors.push(format!("{}/{}: {e}", r.container_id, r.ifname)),
            }
        }
        if let Some(ipam) = &conf.ipam_type {
            if let Err(e) =
                exec::delegate_gc(ipam, &args.stdin, &DelegateEnv::from(args), &self.exec)
            {
                errors.push(format!("IPAM GC: {e}"));
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(CniError::generic(errors.join("; ")).into())
        }
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
