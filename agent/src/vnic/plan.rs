//! The pure planner: the node's NICs (desired) against what netlink shows
//! (current) give the per-VNIC findings and the ordered actions.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnet::IpNet;
use plexus_imds::NodeNic;

use super::{
    Action, Current, Link, Plan, Route, Rule, VnicConfig, VnicReport, VnicStatus, MAIN_TABLE,
    MAX_VNICS, METADATA_IP,
};

fn default_dst() -> IpNet {
    IpNet::V4(ipnet::Ipv4Net::default())
}

fn host_net(ip: IpAddr) -> IpNet {
    IpNet::from(ip)
}

fn guard_rule(cfg: &VnicConfig) -> Rule {
    Rule {
        priority: cfg.guard_priority(),
        src: None,
        dst: Some(host_net(IpAddr::V4(METADATA_IP))),
        table: MAIN_TABLE,
    }
}

/// Whether a rule is one we manage: our priority and one of our tables, or
/// the metadata guard.
pub(super) fn is_our_rule(cfg: &VnicConfig, r: &Rule) -> bool {
    (r.priority == cfg.rule_priority && cfg.owns_table(r.table)) || *r == guard_rule(cfg)
}

/// Desired addressing of one secondary VNIC on one link.
struct Desired {
    link: String,
    addr: IpNet,
    routes: Vec<Route>,
    rule: Option<Rule>,
}

/// Pure: the actions that bring `current` to the state the NICs ask for.
///
/// `in_pod_macs` are MACs host-device reports as moved into pods; they are
/// reported as [`VnicStatus::InPod`] rather than missing.
pub fn plan(
    cfg: &VnicConfig,
    vnics: &[NodeNic],
    current: &Current,
    in_pod_macs: &BTreeSet<String>,
) -> Plan {
    plan_with_hints(cfg, vnics, current, in_pod_macs, &BTreeMap::new())
}

/// [`plan`] with `link_hints`: for a MAC shared by several links (a
/// net_failover master and its VF and standby), the link names the
/// inventory matched to the VNIC by PCI identity. When exactly one of the
/// links is hinted it is configured; otherwise the VNIC stays ambiguous.
pub fn plan_with_hints(
    cfg: &VnicConfig,
    vnics: &[NodeNic],
    current: &Current,
    in_pod_macs: &BTreeSet<String>,
    link_hints: &BTreeMap<String, BTreeSet<String>>,
) -> Plan {
    let planner = Planner {
        cfg,
        current,
        in_pod_macs,
        link_hints,
        primary_mac: vnics.first().map(|v| v.mac.as_str()),
    };
    let mut reports = Vec::new();
    let mut desired = Vec::new();
    let mut seen_ips = BTreeSet::new();
    for (i, nic) in vnics.iter().enumerate() {
        let (report, want) = planner.assess(i, nic, &mut seen_ips);
        reports.push(report);
        desired.extend(want);
    }
    Plan {
        vnics: reports,
        actions: planner.actions(&desired),
    }
}

struct Planner<'a> {
    cfg: &'a VnicConfig,
    current: &'a Current,
    in_pod_macs: &'a BTreeSet<String>,
    link_hints: &'a BTreeMap<String, BTreeSet<String>>,
    primary_mac: Option<&'a str>,
}

impl Planner<'_> {
    /// Links carrying `mac`, narrowed to the inventory's hint when that
    /// leaves exactly one.
    fn links(&self, mac: &str) -> Vec<&Link> {
        let links: Vec<&Link> = self.current.links.iter().filter(|l| l.mac == mac).collect();
        let hinted = self.link_hints.get(mac).filter(|_| links.len() > 1);
        let picked: Vec<&Link> = hinted.map_or_else(Vec::new, |names| {
            links
                .iter()
                .copied()
                .filter(|l| names.contains(&l.name))
                .collect()
        });
        if picked.len() == 1 {
            picked
        } else {
            links
        }
    }

    /// The finding for NIC `i` and, when it is ours to configure, what it needs.
    fn assess(
        &self,
        i: usize,
        nic: &NodeNic,
        seen_ips: &mut BTreeSet<IpAddr>,
    ) -> (VnicReport, Option<Desired>) {
        let index = u32::try_from(i).unwrap_or(u32::MAX);
        let links = self.links(&nic.mac);
        let mut report = VnicReport {
            index,
            vnic_id: nic.id.clone(),
            mac: nic.mac.clone(),
            ip: nic.address.ip,
            link: links.first().map(|l| l.name.clone()),
            table: None,
            status: VnicStatus::Configured,
        };
        let link = match self.skip_reason(i, nic, &links) {
            Some(status) => {
                if status == VnicStatus::Ambiguous && links.len() > 1 && index < MAX_VNICS {
                    let names: Vec<&str> = links.iter().map(|l| l.name.as_str()).collect();
                    report.link = Some(names.join(","));
                }
                report.status = status;
                return (report, None);
            }
            None => links[0],
        };
        let table = self.cfg.table_base + index;
        report.table = Some(table);
        let want = self.desire(nic, link, table, seen_ips, &mut report);
        (report, Some(want))
    }

    /// Why NIC `i` is left alone, or `None` when exactly one link is ours.
    fn skip_reason(&self, i: usize, nic: &NodeNic, links: &[&Link]) -> Option<VnicStatus> {
        if i == 0 || Some(nic.mac.as_str()) == self.primary_mac {
            return Some(VnicStatus::Primary);
        }
        if u32::try_from(i).map_or(true, |i| i >= MAX_VNICS) {
            // Beyond our table range; cannot happen on OCI shapes.
            return Some(VnicStatus::Ambiguous);
        }
        match links {
            [] if self.in_pod_macs.contains(&nic.mac) => Some(VnicStatus::InPod),
            [] => Some(VnicStatus::NoDevice),
            [one] if self.current.uplinks.contains(&one.name) => Some(VnicStatus::Uplink),
            [_] => None,
            _ => Some(VnicStatus::Ambiguous),
        }
    }

    /// Address, table routes and source rule of a NIC on `link`.
    fn desire(
        &self,
        nic: &NodeNic,
        link: &Link,
        table: u32,
        seen_ips: &mut BTreeSet<IpAddr>,
        report: &mut VnicReport,
    ) -> Desired {
        let a = &nic.address;
        let mut routes = vec![Route {
            table,
            dst: a.subnet.trunc(),
            gateway: None,
            dev: link.name.clone(),
            src: Some(a.ip),
        }];
        match a.gateway {
            Some(gw) => routes.push(Route {
                table,
                dst: default_dst(),
                gateway: Some(gw),
                dev: link.name.clone(),
                src: None,
            }),
            None => report.status = VnicStatus::NoGateway,
        }
        let rule = if seen_ips.insert(a.ip) {
            Some(Rule {
                priority: self.cfg.rule_priority,
                src: Some(host_net(a.ip)),
                dst: None,
                table,
            })
        } else {
            report.status = VnicStatus::DuplicateIp;
            None
        };
        Desired {
            link: link.name.clone(),
            addr: a.cidr(),
            routes,
            rule,
        }
    }

    /// Stale entries first (detached VNICs, changed gateways, VFs gone to
    /// pods), so a new route never collides with an old one; then per VNIC
    /// link, address, routes and rule; the metadata guard last.
    fn actions(&self, desired: &[Desired]) -> Vec<Action> {
        let want_routes: BTreeSet<&Route> = desired.iter().flat_map(|d| &d.routes).collect();
        let mut want_rules: BTreeSet<Rule> =
            desired.iter().filter_map(|d| d.rule.clone()).collect();
        if !desired.is_empty() {
            want_rules.insert(guard_rule(self.cfg));
        }
        let mut actions = deletions(self.cfg, self.current, &want_rules, &want_routes);
        let by_name: BTreeMap<&str, &Link> = (self.current.links.iter())
            .map(|l| (l.name.as_str(), l))
            .collect();
        for d in desired {
            if let Some(link) = by_name.get(d.link.as_str()) {
                actions.extend(self.additions(d, link));
            }
        }
        let guard = guard_rule(self.cfg);
        if want_rules.contains(&guard) && !self.current.rules.contains(&guard) {
            actions.push(Action::AddRule(guard));
        }
        actions
    }

    /// One VNIC: link, address, routes (subnet before default, so the
    /// gateway is reachable inside the table), rule last so traffic is
    /// steered only into a complete table.
    fn additions(&self, d: &Desired, link: &Link) -> Vec<Action> {
        let mut out = Vec::new();
        let name = || d.link.clone();
        if link.mtu != self.cfg.mtu {
            out.push(Action::SetMtu {
                link: name(),
                mtu: self.cfg.mtu,
            });
        }
        if !link.up {
            out.push(Action::SetUp { link: name() });
        }
        if !link.addrs.contains(&d.addr) {
            out.push(Action::AddAddr {
                link: name(),
                addr: d.addr,
            });
        }
        let routes = d.routes.iter().filter(|r| !self.current.routes.contains(r));
        out.extend(routes.cloned().map(Action::AddRoute));
        let rule = d.rule.as_ref().filter(|r| !self.current.rules.contains(r));
        out.extend(rule.cloned().map(Action::AddRule));
        out
    }
}

/// Deletes our rules and routes not in `keep_*`: rules first, then default
/// routes before subnet routes, mirroring the add order.
fn deletions(
    cfg: &VnicConfig,
    current: &Current,
    keep_rules: &BTreeSet<Rule>,
    keep_routes: &BTreeSet<&Route>,
) -> Vec<Action> {
    let mut rules: Vec<&Rule> = (current.rules.iter())
        .filter(|r| is_our_rule(cfg, r) && !keep_rules.contains(r))
        .collect();
    rules.sort();
    rules.dedup();
    let mut routes: Vec<&Route> = (current.routes.iter())
        .filter(|r| cfg.owns_table(r.table) && !keep_routes.contains(r))
        .collect();
    routes.sort();
    routes.sort_by_key(|r| std::cmp::Reverse(r.gateway.is_some()));
    let mut actions: Vec<Action> = rules.into_iter().cloned().map(Action::DelRule).collect();
    actions.extend(routes.into_iter().cloned().map(Action::DelRoute));
    actions
}

/// Pure: remove exactly what [`plan`] adds — our rules (incl. the guard),
/// every route in our tables, and each secondary VNIC's address on its
/// link. MTU and link state are left as they are: we cannot know what they
/// were before, and a down VF is worse than a 9000-byte one.
pub fn plan_deconfigure(cfg: &VnicConfig, vnics: &[NodeNic], current: &Current) -> Plan {
    let mut p = plan(cfg, vnics, current, &BTreeSet::new());
    let mut actions = deletions(cfg, current, &BTreeSet::new(), &BTreeSet::new());
    let primary = vnics.first().map(|p| &p.mac);
    for v in vnics.iter().skip(1).filter(|v| Some(&v.mac) != primary) {
        let addr = v.address.cidr();
        for l in current.links.iter().filter(|l| l.mac == v.mac) {
            if l.addrs.contains(&addr) {
                actions.push(Action::DelAddr {
                    link: l.name.clone(),
                    addr,
                });
            }
        }
    }
    p.actions = actions;
    p
}
