//! Policy routing rules (`ip rule`), used for per-VNIC source routing:
//! `from <ip> lookup <table>`.

use ipnet::IpNet;
use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::rule::{RuleAction, RuleAttribute, RuleMessage};
use netlink_packet_route::RouteNetlinkMessage;

use crate::error::Result;
use crate::socket::Handle;
use crate::types::Family;

/// A `lookup <table>` rule. `None` selectors match anything.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Rule {
    pub family: Family,
    pub priority: Option<u32>,
    pub table: u32,
    pub src: Option<IpNet>,
    pub dst: Option<IpNet>,
    pub iif: Option<String>,
    pub oif: Option<String>,
}

impl Rule {
    /// `from <src> lookup <table>`, the family taken from `src`.
    pub fn from_source(src: IpNet, table: u32) -> Self {
        Rule {
            family: Family::of(&src.addr()),
            priority: None,
            table,
            src: Some(src),
            dst: None,
            iif: None,
            oif: None,
        }
    }

    fn from_message(m: RuleMessage) -> Option<Self> {
        let family = Family::from_af(m.header.family)?;
        if m.header.action != RuleAction::ToTable {
            return None;
        }
        let mut r = Rule {
            family,
            priority: None,
            table: u32::from(m.header.table),
            src: None,
            dst: None,
            iif: None,
            oif: None,
        };
        for a in m.attributes {
            match a {
                RuleAttribute::Source(ip) => r.src = IpNet::new(ip, m.header.src_len).ok(),
                RuleAttribute::Destination(ip) => r.dst = IpNet::new(ip, m.header.dst_len).ok(),
                RuleAttribute::Priority(p) => r.priority = Some(p),
                RuleAttribute::Table(t) => r.table = t,
                RuleAttribute::Iifname(n) => r.iif = Some(n),
                RuleAttribute::Oifname(n) => r.oif = Some(n),
                _ => {}
            }
        }
        Some(r)
    }

    fn to_message(&self) -> RuleMessage {
        let mut m = RuleMessage::default();
        m.header.family = self.family.to_af();
        m.header.action = RuleAction::ToTable;
        m.header.table = u8::try_from(self.table).unwrap_or(0);
        m.attributes.push(RuleAttribute::Table(self.table));
        if let Some(s) = self.src {
            m.header.src_len = s.prefix_len();
            m.attributes.push(RuleAttribute::Source(s.addr()));
        }
        if let Some(d) = self.dst {
            m.header.dst_len = d.prefix_len();
            m.attributes.push(RuleAttribute::Destination(d.addr()));
        }
        if let Some(p) = self.priority {
            m.attributes.push(RuleAttribute::Priority(p));
        }
        if let Some(n) = &self.iif {
            m.attributes.push(RuleAttribute::Iifname(n.clone()));
        }
        if let Some(n) = &self.oif {
            m.attributes.push(RuleAttribute::Oifname(n.clone()));
        }
        m
    }

    fn describe(&self) -> String {
        let mut s = String::from("rule");
        if let Some(p) = self.priority {
            s.push_str(&format!(" pref {p}"));
        }
        if let Some(src) = self.src {
            s.push_str(&format!(" from {src}"));
        }
        if let Some(dst) = self.dst {
            s.push_str(&format!(" to {dst}"));
        }
        s.push_str(&format!(" lookup {}", self.table));
        s
    }
}

impl Handle {
    /// `lookup` rules of `family` (other actions are left out).
    pub fn rules(&self, family: Family) -> Result<Vec<Rule>> {
        let mut req = RuleMessage::default();
        req.header.family = family.to_af();
        let replies = self.dump(RouteNetlinkMessage::GetRule(req), "list rules")?;
        Ok(replies
            .into_iter()
            .filter_map(|r| match r {
                RouteNetlinkMessage::NewRule(m) => Rule::from_message(m),
                _ => None,
            })
            .filter(|r| r.family == family)
            .collect())
    }

    /// Adds a rule; [`crate::Error::Exists`] if an identical one exists.
    pub fn add_rule(&self, rule: &Rule) -> Result<()> {
        self.ack(
            RouteNetlinkMessage::NewRule(rule.to_message()),
            NLM_F_CREATE | NLM_F_EXCL,
            "add",
            || rule.describe(),
        )
    }

    /// Deletes the first rule matching every given selector.
    pub fn del_rule(&self, rule: &Rule) -> Result<()> {
        self.ack(
            RouteNetlinkMessage::DelRule(rule.to_message()),
            0,
            "delete",
            || rule.describe(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_round_trip_through_message() {
        let mut r = Rule::from_source("198.51.100.7/32".parse().unwrap(), 1001);
        r.priority = Some(100);
        r.iif = Some("lo".into());
        let m = r.to_message();
        assert_eq!(m.header.src_len, 32);
        assert_eq!(m.header.table, 0, "tables above 255 live only in FRA_TABLE");
        assert_eq!(Rule::from_message(m), Some(r));
    }
}
