//! DEL, CHECK, STATUS and GC of host-device, and the restore of a device
//! to the host as it was recorded before the move (used by DEL, a failed
//! ADD's rollback and a stale record's cleanup).

use plexus_cni::exec::{self, DelegateEnv, Exec};
use plexus_cni::{CmdArgs, CniError};
use plexus_netlink::{Link, LinkMove};
use plexus_sysfs::pci;
use tracing::warn;

use crate::config::Config;
use crate::error::Error;
use crate::net::{Net, NetOpener, Side};
use crate::store::{Record, Store};
use crate::Progress;
use crate::{device_key, plan, HostDevice};

impl<O: NetOpener, E: Exec> HostDevice<O, E> {
    /// Undoes a failed ADD: device back on the host as found, IPAM released.
    pub(crate) fn rollback(
        &self,
        conf: &Config,
        args: &CmdArgs,
        net: &O::Net,
        record: &Record,
        p: &Progress,
    ) {
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

    pub(crate) fn cmd_del(&self, args: &CmdArgs) -> Result<(), Error> {
        let conf = Config::load(&args.stdin)?;
        let store = Store::new(&conf.data_dir);
        // A vanished or empty netns is normal on DEL: look on the host only.
        let (net, _missing) = self
            .opener
            .open(&args.netns)
            .map_err(Error::netlink("open netlink"))?;
        let record = store.load(&args.container_id, &args.ifname)?;
        let mut errors: Vec<String> = Vec::new();
        // Whether a record saved from now on is this DEL's to remove.
        let mut owns_record = true;
        match &record {
            Some(r) => {
                let _lock = store.lock(&device_key(r.host.pci, r.host.mac, &r.host.name))?;
                if let Err(e) = self.restore(&net, r) {
                    errors.push(e.to_string());
                }
            }
            None => match self.restore_unrecorded(&net, &store, args) {
                Ok(handled) => owns_record = handled,
                Err(e) => errors.push(e.to_string()),
            },
        }
        if let Some(ipam) = &conf.ipam_type {
            if let Err(e) =
                exec::delegate_del(ipam, &args.stdin, &DelegateEnv::from(args), &self.exec)
            {
                errors.push(format!("IPAM DEL: {e}"));
            }
        }
        if errors.is_empty() && owns_record {
            store.remove(&args.container_id, &args.ifname)
        } else if errors.is_empty() {
            store.remove_stale_temps(&args.container_id, &args.ifname)
        } else {
            // Keep the record: the runtime retries DEL, which can then finish.
            Err(CniError::generic(errors.join("; ")).into())
        }
    }

    /// Puts the recorded device back on the host as it was found. Looks in
    /// the pod (by name, then MAC) and on the host (by original name, MAC,
    /// PCI address: a netns destroyed under it returns it as e.g. `net1`).
    /// A device found nowhere is gone: nothing to do.
    pub(crate) fn restore(&self, net: &O::Net, r: &Record) -> Result<(), Error> {
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

    pub(crate) fn find_in_pod(&self, net: &O::Net, r: &Record) -> Result<Option<Link>, Error> {
        let mac_ok = |l: &Link| r.host.mac.as_ref().is_none_or(|m| l.has_mac(m));
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
    pub(crate) fn restore_on_host(&self, net: &O::Net, r: &Record) -> Result<(), Error> {
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

    pub(crate) fn find_on_host(&self, net: &O::Net, r: &Record) -> Result<Option<Link>, Error> {
        let h = &r.host;
        let mac_ok = |l: &Link| h.mac.as_ref().is_none_or(|m| l.has_mac(m));
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
        let by_mac = |l: &&Link| h.mac.as_ref().is_some_and(|m| l.has_mac(m));
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
    /// plugin): the pod interface's alias holds the host name. An ADD of
    /// the same container may be running right now: it saves its record
    /// under the device lock before it moves the device, so a device found
    /// in the pod is locked (keyed as the ADD keyed it) and a record that
    /// appeared meanwhile wins over the alias. False when nothing was in the
    /// pod: a record saved after the look belongs to that ADD, not to this DEL.
    fn restore_unrecorded(
        &self,
        net: &O::Net,
        store: &Store,
        args: &CmdArgs,
    ) -> Result<bool, Error> {
        let Some((link, alias)) = self.aliased_pod_link(net, &args.ifname)? else {
            return Ok(false);
        };
        let key = device_key(self.pci_of_named(&link, &alias), link.mac, &alias);
        let _lock = store.lock(&key)?;
        match store.load(&args.container_id, &args.ifname)? {
            Some(r) => self.restore(net, &r)?,
            None => self.restore_by_alias(net, &link, &alias)?,
        }
        Ok(true)
    }

    /// The pod's `ifname` and its alias (the host name it had), when both
    /// exist.
    fn aliased_pod_link(
        &self,
        net: &O::Net,
        ifname: &str,
    ) -> Result<Option<(Link, String)>, Error> {
        if !net.has_pod() {
            return Ok(None);
        }
        let Some(link) = net
            .link_by_name(Side::Pod, ifname)
            .map_err(Error::netlink("look up the pod interface"))?
        else {
            return Ok(None);
        };
        Ok(link.alias.clone().map(|alias| (link, alias)))
    }

    /// Moves an unrecorded device back under the name its alias kept (its
    /// other settings are not known).
    fn restore_by_alias(&self, net: &O::Net, link: &Link, alias: &str) -> Result<(), Error> {
        let back = LinkMove {
            name: Some(alias),
            alias: Some(""),
            mtu: None,
            up: None,
        };
        net.move_link(Side::Pod, link.index, &back)
            .map_err(Error::netlink(format!(
                "move {:?} back as {alias:?}",
                link.name
            )))
    }

    // ----- CHECK, STATUS, GC ---------------------------------------------

    pub(crate) fn cmd_check(&self, args: &CmdArgs) -> Result<(), Error> {
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

    pub(crate) fn cmd_status(&self, args: &CmdArgs) -> Result<(), Error> {
        let conf = Config::load(&args.stdin)?;
        if let Some(ipam) = &conf.ipam_type {
            exec::delegate_status(ipam, &args.stdin, &DelegateEnv::from(args), &self.exec)?;
        }
        Ok(())
    }

    /// Drops the records (restoring their devices) of attachments the
    /// runtime no longer lists, then forwards GC to IPAM. Goes on past
    /// single failures and reports them all.
    pub(crate) fn cmd_gc(&self, args: &CmdArgs) -> Result<(), Error> {
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
