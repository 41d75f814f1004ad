//! Links: lookup, state changes, rename, and the move to another namespace.

use std::os::fd::{AsFd, AsRawFd};

use netlink_packet_core::{DefaultNla, NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage, State,
};
use netlink_packet_route::RouteNetlinkMessage;

use crate::error::{Error, Result};
use crate::socket::Handle;
use plexus_cni::MacAddr;

/// `IFLA_IFALIAS`: sent raw with an empty payload to clear an alias (the
/// typed attribute always carries a NUL, which the kernel keeps as "").
const IFLA_IFALIAS: u16 = 20;

/// What [`Handle::move_to_netns_with`] sets on arrival; `None` leaves a
/// field as it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LinkMove<'a> {
    pub name: Option<&'a str>,
    /// `Some("")` clears the alias.
    pub alias: Option<&'a str>,
    pub mtu: Option<u32>,
    /// Administrative state.
    pub up: Option<bool>,
}

/// RFC 2863 operational state (`IFLA_OPERSTATE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum OperState {
    #[default]
    Unknown,
    NotPresent,
    Down,
    LowerLayerDown,
    Testing,
    Dormant,
    Up,
}

impl From<&State> for OperState {
    fn from(s: &State) -> Self {
        match s {
            State::NotPresent => OperState::NotPresent,
            State::Down => OperState::Down,
            State::LowerLayerDown => OperState::LowerLayerDown,
            State::Testing => OperState::Testing,
            State::Dormant => OperState::Dormant,
            State::Up => OperState::Up,
            _ => OperState::Unknown,
        }
    }
}

/// A network device as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Link {
    pub index: u32,
    pub name: String,
    pub mac: Option<MacAddr>,
    /// The burnt-in address, when the driver reports one (not for veth).
    pub perm_mac: Option<MacAddr>,
    pub mtu: u32,
    /// Administrative state (`IFF_UP`).
    pub up: bool,
    pub oper_state: OperState,
    pub alias: Option<String>,
    /// `IFLA_INFO_KIND` for virtual devices (`veth`, `bridge`…); `None` for
    /// physical NICs and VFs.
    pub kind: Option<String>,
    /// Parent device, e.g. the PCI address `0000:00:04.0` of a NIC or VF.
    pub parent_dev: Option<String>,
    /// Bus of the parent device, e.g. `pci`.
    pub parent_bus: Option<String>,
}

impl Link {
    fn from_message(m: LinkMessage) -> Self {
        let mut link = Link {
            index: m.header.index,
            up: m.header.flags.contains(LinkFlags::Up),
            ..Link::default()
        };
        for attr in m.attributes {
            match attr {
                LinkAttribute::IfName(n) => link.name = n,
                LinkAttribute::Address(a) => link.mac = MacAddr::from_slice(&a),
                LinkAttribute::PermAddress(a) if a.iter().any(|b| *b != 0) => {
                    link.perm_mac = MacAddr::from_slice(&a)
                }
                LinkAttribute::Mtu(v) => link.mtu = v,
                LinkAttribute::OperState(s) => link.oper_state = OperState::from(&s),
                LinkAttribute::IfAlias(a) if !a.is_empty() => link.alias = Some(a),
                LinkAttribute::ParentDevName(p) => link.parent_dev = Some(p),
                LinkAttribute::ParentDevBusName(b) => link.parent_bus = Some(b),
                LinkAttribute::LinkInfo(infos) => {
                    for i in infos {
                        if let LinkInfo::Kind(k) = i {
                            link.kind = Some(k.to_string());
                        }
                    }
                }
                _ => {}
            }
        }
        link
    }

    /// Whether `mac` is this link's current or permanent address.
    pub fn has_mac(&self, mac: &MacAddr) -> bool {
        self.mac.as_ref() == Some(mac) || self.perm_mac.as_ref() == Some(mac)
    }
}

fn by_index(index: u32) -> LinkMessage {
    let mut m = LinkMessage::default();
    m.header.index = index;
    m
}

fn first_link(replies: Vec<RouteNetlinkMessage>) -> Option<Link> {
    replies.into_iter().find_map(|r| match r {
        RouteNetlinkMessage::NewLink(m) => Some(Link::from_message(m)),
        _ => None,
    })
}

impl Handle {
    /// All links of the namespace.
    pub fn links(&self) -> Result<Vec<Link>> {
        let replies = self.dump(
            RouteNetlinkMessage::GetLink(LinkMessage::default()),
            "list links",
        )?;
        Ok(replies
            .into_iter()
            .filter_map(|r| match r {
                RouteNetlinkMessage::NewLink(m) => Some(Link::from_message(m)),
                _ => None,
            })
            .collect())
    }

    /// The link called `name`.
    pub fn link_by_name(&self, name: &str) -> Result<Link> {
        let mut m = LinkMessage::default();
        m.attributes.push(LinkAttribute::IfName(name.to_string()));
        let target = || format!("link {name:?}");
        let replies = self.get(RouteNetlinkMessage::GetLink(m), "get", target)?;
        first_link(replies).ok_or_else(|| Error::from_errno(libc::ENODEV, "get", target()))
    }

    /// The link with ifindex `index`.
    pub fn link_by_index(&self, index: u32) -> Result<Link> {
        let target = || format!("link #{index}");
        let replies = self.get(RouteNetlinkMessage::GetLink(by_index(index)), "get", target)?;
        first_link(replies).ok_or_else(|| Error::from_errno(libc::ENODEV, "get", target()))
    }

    /// The first link whose current or permanent address is `mac`.
    pub fn link_by_mac(&self, mac: &MacAddr) -> Result<Link> {
        self.links()?
            .into_iter()
            .find(|l| l.has_mac(mac))
            .ok_or_else(|| Error::from_errno(libc::ENODEV, "get", format!("link with MAC {mac}")))
    }

    fn set_link(&self, m: LinkMessage, op: &'static str) -> Result<()> {
        let index = m.header.index;
        self.ack(RouteNetlinkMessage::SetLink(m), 0, op, || {
            format!("link #{index}")
        })
    }

    /// Sets the administrative state (`ip link set up/down`).
    pub fn set_link_up(&self, index: u32, up: bool) -> Result<()> {
        let mut m = by_index(index);
        m.header.change_mask = LinkFlags::Up;
        if up {
            m.header.flags = LinkFlags::Up;
        }
        self.set_link(m, if up { "set up" } else { "set down" })
    }

    /// Sets the MTU.
    pub fn set_mtu(&self, index: u32, mtu: u32) -> Result<()> {
        let mut m = by_index(index);
        m.attributes.push(LinkAttribute::Mtu(mtu));
        self.set_link(m, "set mtu")
    }

    /// Sets `IFLA_IFALIAS` (`ip link set alias`).
    pub fn set_alias(&self, index: u32, alias: &str) -> Result<()> {
        if alias.is_empty() {
            return self.clear_alias(index);
        }
        let mut m = by_index(index);
        m.attributes.push(LinkAttribute::IfAlias(alias.to_string()));
        self.set_link(m, "set alias")
    }

    /// Removes the alias.
    pub fn clear_alias(&self, index: u32) -> Result<()> {
        let mut m = by_index(index);
        m.attributes.push(LinkAttribute::Other(DefaultNla::new(
            IFLA_IFALIAS,
            Vec::new(),
        )));
        self.set_link(m, "clear alias")
    }

    /// Renames a link (the kernel refuses with EBUSY while it is up).
    pub fn rename(&self, index: u32, name: &str) -> Result<()> {
        let mut m = by_index(index);
        m.attributes.push(LinkAttribute::IfName(name.to_string()));
        let target = || format!("link #{index} to {name:?}");
        self.ack(RouteNetlinkMessage::SetLink(m), 0, "rename", target)
    }

    /// Moves a link into the namespace `ns` and sets `with` in the same
    /// request, so the move and everything the caller wants on arrival take
    /// RTNL once. The kernel (`do_setlink`) moves first, then applies MTU,
    /// name, alias and flags in that order inside the target; a failure
    /// after the move leaves the link moved with only the earlier ones
    /// applied (see [`Handle::move_to_netns`] for the name semantics).
    pub fn move_to_netns_with(&self, index: u32, ns: impl AsFd, with: &LinkMove<'_>) -> Result<()> {
        let mut m = by_index(index);
        m.attributes
            .push(LinkAttribute::NetNsFd(ns.as_fd().as_raw_fd()));
        if let Some(mtu) = with.mtu {
            m.attributes.push(LinkAttribute::Mtu(mtu));
        }
        if let Some(n) = with.name {
            m.attributes.push(LinkAttribute::IfName(n.to_string()));
        }
        match with.alias {
            None => {}
            Some("") => m.attributes.push(LinkAttribute::Other(DefaultNla::new(
                IFLA_IFALIAS,
                Vec::new(),
            ))),
            Some(a) => m.attributes.push(LinkAttribute::IfAlias(a.to_string())),
        }
        if let Some(up) = with.up {
            m.header.change_mask = LinkFlags::Up;
            if up {
                m.header.flags = LinkFlags::Up;
            }
        }
        let target = || match with.name {
            Some(n) => format!("link #{index} as {n:?}"),
            None => format!("link #{index}"),
        };
        self.ack(RouteNetlinkMessage::SetLink(m), 0, "move to netns", target)
    }

    /// Moves a link into the namespace `ns` and, with `new_name`, renames it
    /// in the same request.
    ///
    /// Kernel semantics (`do_setlink`, verified by the privileged tests): the
    /// name is applied atomically with the move only when the link's current
    /// name is taken in the target; then a clash fails the whole request with
    /// EEXIST and the link stays put. Otherwise the link is moved first and
    /// renamed inside the target, so a clash there leaves it *moved under its
    /// old name* with an EEXIST error. Callers that must not strand a device
    /// check the target name first and move it back on EEXIST.
    /// The ifindex may change in the target when it is taken there.
    pub fn move_to_netns(&self, index: u32, ns: impl AsFd, new_name: Option<&str>) -> Result<()> {
        let mut m = by_index(index);
        m.attributes
            .push(LinkAttribute::NetNsFd(ns.as_fd().as_raw_fd()));
        if let Some(n) = new_name {
            m.attributes.push(LinkAttribute::IfName(n.to_string()));
        }
        let target = || match new_name {
            Some(n) => format!("link #{index} as {n:?}"),
            None => format!("link #{index}"),
        };
        self.ack(RouteNetlinkMessage::SetLink(m), 0, "move to netns", target)
    }

    /// Deletes a link (for veth, both ends).
    pub fn delete_link(&self, index: u32) -> Result<()> {
        let target = || format!("link #{index}");
        self.ack(
            RouteNetlinkMessage::DelLink(by_index(index)),
            0,
            "delete",
            target,
        )
    }

    /// Creates a veth pair `name` <-> `peer` (test fixtures, the agent).
    pub fn add_veth(&self, name: &str, peer: &str) -> Result<()> {
        let mut peer_msg = LinkMessage::default();
        peer_msg
            .attributes
            .push(LinkAttribute::IfName(peer.to_string()));
        let mut m = LinkMessage::default();
        m.attributes.push(LinkAttribute::IfName(name.to_string()));
        m.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Veth),
            LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer_msg))),
        ]));
        let target = || format!("veth {name:?}/{peer:?}");
        self.ack(
            RouteNetlinkMessage::NewLink(m),
            NLM_F_CREATE | NLM_F_EXCL,
            "create",
            target,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_link_message() {
        let mut m = LinkMessage::default();
        m.header.index = 7;
        m.header.flags = LinkFlags::Up | LinkFlags::Broadcast;
        m.attributes = vec![
            LinkAttribute::IfName("ens5".into()),
            LinkAttribute::Address(vec![2, 0, 0, 0, 0, 1]),
            LinkAttribute::PermAddress(vec![0; 6]),
            LinkAttribute::Mtu(9000),
            LinkAttribute::OperState(State::Up),
            LinkAttribute::IfAlias("secondary".into()),
            LinkAttribute::ParentDevName("0000:00:04.0".into()),
            LinkAttribute::ParentDevBusName("pci".into()),
            LinkAttribute::LinkInfo(vec![LinkInfo::Kind(InfoKind::Veth)]),
        ];
        let l = Link::from_message(m);
        assert_eq!(l.index, 7);
        assert_eq!(l.name, "ens5");
        assert_eq!(
            l.mac.as_ref().map(ToString::to_string).as_deref(),
            Some("02:00:00:00:00:01")
        );
        assert_eq!(l.perm_mac, None, "all-zero permanent address means none");
        assert_eq!(l.mtu, 9000);
        assert!(l.up);
        assert_eq!(l.oper_state, OperState::Up);
        assert_eq!(l.alias.as_deref(), Some("secondary"));
        assert_eq!(l.kind.as_deref(), Some("veth"));
        assert_eq!(l.parent_dev.as_deref(), Some("0000:00:04.0"));
        assert!(l.has_mac(&"02:00:00:00:00:01".parse().unwrap()));
    }
}
