//! IP addresses on links.

use ipnet::IpNet;
use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::address::{
    AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use crate::error::Result;
use crate::socket::Handle;
use crate::types::{Family, Scope};

/// `IFA_F_NODAD`: skip IPv6 duplicate address detection.
pub const IFA_F_NODAD: u32 = 0x02;

/// An address assigned to a link.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Address {
    pub index: u32,
    /// Address with its prefix length, e.g. `198.51.100.2/24`.
    pub addr: IpNet,
    pub scope: Scope,
    /// `IFA_F_*` flags (permanent, nodad, tentative…).
    pub flags: u32,
    pub label: Option<String>,
}

impl Address {
    fn from_message(m: AddressMessage) -> Option<Self> {
        let mut local = None;
        let mut address = None;
        let mut label = None;
        let mut flags = u32::from(m.header.flags.bits());
        for a in m.attributes {
            match a {
                AddressAttribute::Local(ip) => local = Some(ip),
                AddressAttribute::Address(ip) => address = Some(ip),
                AddressAttribute::Label(l) => label = Some(l),
                AddressAttribute::Flags(f) => flags = f.bits(),
                _ => {}
            }
        }
        // IFA_LOCAL is the interface's own address; IFA_ADDRESS is the peer
        // on point-to-point links and equal to it otherwise.
        let ip = local.or(address)?;
        let addr = IpNet::new(ip, m.header.prefix_len).ok()?;
        Some(Address {
            index: m.header.index,
            addr,
            scope: Scope::from(u8::from(m.header.scope)),
            flags,
            label,
        })
    }

    /// The family of the address.
    pub fn family(&self) -> Family {
        Family::of(&self.addr.addr())
    }
}

fn message(index: u32, net: &IpNet, flags: u32) -> AddressMessage {
    let mut m = AddressMessage::default();
    m.header.family = Family::of(&net.addr()).to_af();
    m.header.prefix_len = net.prefix_len();
    m.header.index = index;
    m.header.flags = AddressHeaderFlags::from_bits_truncate(flags as u8);
    let ip = net.addr();
    if ip.is_ipv4() {
        m.attributes.push(AddressAttribute::Local(ip));
    }
    m.attributes.push(AddressAttribute::Address(ip));
    if flags > 0xff {
        m.attributes
            .push(AddressAttribute::Flags(AddressFlags::from_bits_retain(
                flags,
            )));
    }
    m
}

impl Handle {
    /// Addresses of one link (`Some(index)`) or of all links, both families.
    pub fn addresses(&self, index: Option<u32>) -> Result<Vec<Address>> {
        let mut req = AddressMessage::default();
        req.header.family = AddressFamily::Unspec;
        let replies = self.dump(RouteNetlinkMessage::GetAddress(req), "list addresses")?;
        Ok(replies
            .into_iter()
            .filter_map(|r| match r {
                RouteNetlinkMessage::NewAddress(m) => Address::from_message(m),
                _ => None,
            })
            .filter(|a| index.is_none_or(|i| a.index == i))
            .collect())
    }

    /// Adds `net` to link `index` ([`crate::Error::Exists`] if present).
    pub fn add_address(&self, index: u32, net: &IpNet) -> Result<()> {
        self.add_address_flags(index, net, 0)
    }

    /// Adds `net` with `IFA_F_*` flags, e.g. [`IFA_F_NODAD`].
    pub fn add_address_flags(&self, index: u32, net: &IpNet, flags: u32) -> Result<()> {
        self.ack(
            RouteNetlinkMessage::NewAddress(message(index, net, flags)),
            NLM_F_CREATE | NLM_F_EXCL,
            "add address",
            || format!("{net} on link #{index}"),
        )
    }

    /// Removes `net` from link `index`.
    pub fn del_address(&self, index: u32, net: &IpNet) -> Result<()> {
        self.ack(
            RouteNetlinkMessage::DelAddress(message(index, net, 0)),
            0,
            "delete address",
            || format!("{net} on link #{index}"),
        )
    }

    /// Removes every address of `family` (or all) from link `index`. An
    /// address that vanished meanwhile (e.g. a secondary removed together
    /// with its primary) is not an error.
    pub fn flush_addresses(&self, index: u32, family: Option<Family>) -> Result<()> {
        for a in self.addresses(Some(index))? {
            if family.is_some_and(|f| a.family() != f) {
                continue;
            }
            match self.del_address(index, &a.addr) {
                Err(e) if e.is_not_found() => {}
                other => other?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v4_message_sets_local_and_address() {
        let net: IpNet = "198.51.100.2/24".parse().unwrap();
        let m = message(3, &net, 0);
        assert_eq!(m.header.prefix_len, 24);
        assert_eq!(m.header.family, AddressFamily::Inet);
        assert_eq!(m.attributes.len(), 2);
        let parsed = Address::from_message(m).unwrap();
        assert_eq!(parsed.addr, net);
        assert_eq!(parsed.index, 3);
    }

    #[test]
    fn v6_message_has_only_address() {
        let net: IpNet = "2001:db8::2/64".parse().unwrap();
        let m = message(3, &net, IFA_F_NODAD);
        assert_eq!(m.header.family, AddressFamily::Inet6);
        assert_eq!(m.attributes.len(), 1);
        assert_eq!(Address::from_message(m).unwrap().flags, IFA_F_NODAD);
    }
}
