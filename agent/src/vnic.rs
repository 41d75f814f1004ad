//! Host configuration of secondary VNICs: what OCI's
//! `secondary_vnic_all_configure.sh` does per VNIC, but declarative,
//! idempotent and through netlink.
//!
//! For every **secondary** VNIC in IMDS whose MAC matches exactly one link in
//! the target namespace: MTU, link up, `privateIp/prefix`, a routing table
//! `table_base + index` (index = position in the IMDS list, primary = 0, the
//! script's `ort<n>`) holding the subnet route and `default via
//! virtualRouterIp`, and a rule `from <privateIp> lookup <table>`. Without
//! that rule replies sourced from the secondary IP leave through the primary
//! VNIC and OCI's anti-spoofing drops them.
//!
//! The primary VNIC (first IMDS entry) is never touched, nor is any link
//! the main table's default route leaves through. OCI requires
//! metadata requests to leave through the primary VNIC, so while any VNIC is
//! configured a guard rule `to 169.254.169.254 lookup main` sits one
//! priority above ours: even a socket bound to a secondary IP reaches IMDS
//! through the main table.
//!
//! [`plan`] is pure: desired state (IMDS) vs current state (read from
//! netlink into [`Current`]) gives a list of [`Action`]s. [`apply`] runs them
//! through [`NetOps`]; re-planning afterwards yields nothing. Only tables in
//! `table_base..table_base+MAX_VNICS` and rules at our two priorities are
//! ever read as "ours", so [`plan_deconfigure`] removes exactly what we add.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};

use ipnet::IpNet;
use plexus_imds::NodeNic;
use serde::{Deserialize, Serialize};

/// Upper bound of VNICs per instance we reserve tables for (OCI shapes
/// allow at most 24 VNIC attachments today).
pub const MAX_VNICS: u32 = 64;
/// OCI's metadata service, which must stay reachable via the primary VNIC.
pub const METADATA_IP: Ipv4Addr = Ipv4Addr::new(169, 254, 169, 254);

/// Knobs of the host configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VnicConfig {
    /// Table of the VNIC at IMDS index `i` is `table_base + i`.
    pub table_base: u32,
    /// Priority of the `from <ip>` rules; the metadata guard uses one less.
    pub rule_priority: u32,
    /// MTU set on secondary VNIC links (OCI VNICs carry 9000).
    pub mtu: u32,
}

impl Default for VnicConfig {
    fn default() -> Self {
        Self {
            table_base: 100,
            rule_priority: 1000,
            mtu: 9000,
        }
    }
}

impl VnicConfig {
    pub fn owns_table(&self, table: u32) -> bool {
        table > self.table_base && table < self.table_base + MAX_VNICS
    }
    pub fn guard_priority(&self) -> u32 {
        self.rule_priority.saturating_sub(1)
    }
}

/// A link as read from netlink.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    pub name: String,
    /// Lower-case MAC.
    pub mac: String,
    pub mtu: u32,
    pub up: bool,
    pub addrs: Vec<IpNet>,
}

/// A route in one of our tables. `dst` 0.0.0.0/0 is the default route.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Route {
    pub table: u32,
    pub dst: IpNet,
    pub gateway: Option<IpAddr>,
    pub dev: String,
    /// Preferred source; set on the subnet route so the table is complete.
    pub src: Option<IpAddr>,
}

/// A policy rule (`from`/`to` prefix, priority, table).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Rule {
    pub priority: u32,
    pub src: Option<IpNet>,
    pub dst: Option<IpNet>,
    pub table: u32,
}

/// Current state of the target namespace, restricted to what we may own.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Current {
    pub links: Vec<Link>,
    /// Routes of tables [`VnicConfig::owns_table`] only.
    pub routes: Vec<Route>,
    /// All IPv4 rules (filtered by the planner).
    pub rules: Vec<Rule>,
    /// Links the main table's default route leaves through: the node's
    /// uplink, never configured whatever IMDS says.
    #[serde(default)]
    pub uplinks: Vec<String>,
}

/// One change to the namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum Action {
    SetMtu { link: String, mtu: u32 },
    SetUp { link: String },
    AddAddr { link: String, addr: IpNet },
    DelAddr { link: String, addr: IpNet },
    AddRoute(Route),
    DelRoute(Route),
    AddRule(Rule),
    DelRule(Rule),
}

impl Action {
    /// The link an action belongs to, used to group failures per VNIC.
    pub fn link(&self) -> Option<&str> {
        match self {
            Action::SetMtu { link, .. }
            | Action::SetUp { link }
            | Action::AddAddr { link, .. }
            | Action::DelAddr { link, .. } => Some(link),
            Action::AddRoute(r) | Action::DelRoute(r) => Some(&r.dev),
            Action::AddRule(_) | Action::DelRule(_) => None,
        }
    }

    /// `ip`-like one-liner for the table output and logs.
    pub fn describe(&self) -> String {
        fn route(r: &Route) -> String {
            let mut s = if r.dst.prefix_len() == 0 {
                "default".to_string()
            } else {
                r.dst.to_string()
            };
            if let Some(gw) = r.gateway {
                let _ = write!(s, " via {gw}");
            }
            let _ = write!(s, " dev {} table {}", r.dev, r.table);
            if let Some(src) = r.src {
                let _ = write!(s, " src {src}");
            }
            s
        }
        fn rule(r: &Rule) -> String {
            let mut s = format!("pref {}", r.priority);
            if let Some(src) = r.src {
                let _ = write!(s, " from {src}");
            }
            if let Some(dst) = r.dst {
                let _ = write!(s, " to {dst}");
            }
            let table = match r.table {
                254 => "main".to_string(),
                t => t.to_string(),
            };
            let _ = write!(s, " lookup {table}");
            s
        }
        match self {
            Action::SetMtu { link, mtu } => format!("link set {link} mtu {mtu}"),
            Action::SetUp { link } => format!("link set {link} up"),
            Action::AddAddr { link, addr } => format!("addr add {addr} dev {link}"),
            Action::DelAddr { link, addr } => format!("addr del {addr} dev {link}"),
            Action::AddRoute(r) => format!("route add {}", route(r)),
            Action::DelRoute(r) => format!("route del {}", route(r)),
            Action::AddRule(r) => format!("rule add {}", rule(r)),
            Action::DelRule(r) => format!("rule del {}", rule(r)),
        }
    }
}

/// What the planner concluded for one IMDS VNIC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum VnicStatus {
    /// The primary VNIC: left alone.
    Primary,
    /// Matched the link of the main default route: left alone (a safety
    /// net should IMDS ever list the primary VNIC elsewhere than first).
    Uplink,
    /// Matched a link; actions (if any) bring it to the desired state.
    Configured,
    /// No link with this MAC here: not attached yet, or inside a pod.
    NoDevice,
    /// Known to be inside a pod (host-device state), so not on the host.
    InPod,
    /// Several links share the MAC (net_failover, PCA bonding): not guessed.
    Ambiguous,
    /// Same IP as an earlier VNIC (overlapping subnets): no rule, like OCI's script.
    DuplicateIp,
    /// IMDS gave no `virtualRouterIp`: address only, no default route.
    NoGateway,
}

/// Per-VNIC line of a plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VnicReport {
    pub index: u32,
    pub vnic_id: String,
    pub mac: String,
    pub ip: IpAddr,
    pub link: Option<String>,
    pub table: Option<u32>,
    pub status: VnicStatus,
}

/// A plan: per-VNIC findings and the actions, in execution order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Plan {
    pub vnics: Vec<VnicReport>,
    pub actions: Vec<Action>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.actions.is_empty()
    }

    /// Fixed-width table for `vnic plan` (stable, golden-tested).
    pub fn render_table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:<3} {:<17} {:<15} {:<10} {:<6} {:<12} VNIC",
            "IDX", "MAC", "IP", "LINK", "TABLE", "STATUS"
        );
        for v in &self.vnics {
            let status = serde_json::to_value(&v.status)
                .ok()
                .and_then(|s| s.as_str().map(String::from))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "{:<3} {:<17} {:<15} {:<10} {:<6} {:<12} {}",
                v.index,
                v.mac,
                v.ip.to_string(),
                v.link.as_deref().unwrap_or("-"),
                v.table.map(|t| t.to_string()).unwrap_or_else(|| "-".into()),
                status,
                v.vnic_id
            );
        }
        if self.actions.is_empty() {
            out.push_str("no changes\n");
        } else {
            let _ = writeln!(out, "{} action(s):", self.actions.len());
            for a in &self.actions {
                let _ = writeln!(out, "  {}", a.describe());
            }
        }
        out
    }
}

const MAIN_TABLE: u32 = 254;

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
fn is_our_rule(cfg: &VnicConfig, r: &Rule) -> bool {
    (r.priority == cfg.rule_priority && cfg.owns_table(r.table)) || *r == guard_rule(cfg)
}

/// Desired addressing of one secondary VNIC on one link.
struct Desired {
    link: String,
    addr: IpNet,
    routes: Vec<Route>,
    rule: Option<Rule>,
}

/// Pure: the actions that bring `current` to the state IMDS asks for.
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
    let mut reports = Vec::new();
    let mut desired: Vec<Desired> = Vec::new();
    let mut seen_ips = BTreeSet::new();
    let primary_mac = vnics.first().map(|v| v.mac.clone());

    for (i, v) in vnics.iter().enumerate() {
        let index = u32::try_from(i).unwrap_or(u32::MAX);
        let mac = v.mac.clone();
        let mut links: Vec<&Link> = current.links.iter().filter(|l| l.mac == mac).collect();
        if links.len() > 1 {
            if let Some(hinted) = link_hints.get(&mac) {
                let picked: Vec<&Link> = links
                    .iter()
                    .copied()
                    .filter(|l| hinted.contains(&l.name))
                    .collect();
                if picked.len() == 1 {
                    links = picked;
                }
            }
        }
        let mut report = VnicReport {
            index,
            vnic_id: v.id.clone(),
            mac: mac.clone(),
            ip: v.address.ip,
            link: links.first().map(|l| l.name.clone()),
            table: None,
            status: VnicStatus::Configured,
        };
        if i == 0 || Some(&mac) == primary_mac.as_ref() {
            report.status = VnicStatus::Primary;
            reports.push(report);
            continue;
        }
        if index >= MAX_VNICS {
            // Beyond our table range; cannot happen on OCI shapes.
            report.status = VnicStatus::Ambiguous;
            reports.push(report);
            continue;
        }
        let link = match links.as_slice() {
            [] => {
                report.status = if in_pod_macs.contains(&mac) {
                    VnicStatus::InPod
                } else {
                    VnicStatus::NoDevice
                };
                reports.push(report);
                continue;
            }
            [one] => *one,
            _ => {
                report.status = VnicStatus::Ambiguous;
                report.link = Some(
                    links
                        .iter()
                        .map(|l| l.name.as_str())
                        .collect::<Vec<_>>()
                        .join(","),
                );
                reports.push(report);
                continue;
            }
        };
        if current.uplinks.contains(&link.name) {
            report.status = VnicStatus::Uplink;
            reports.push(report);
            continue;
        }
        let table = cfg.table_base + index;
        report.table = Some(table);
        let addr = v.address.cidr();
        let mut routes = vec![Route {
            table,
            dst: v.address.subnet.trunc(),
            gateway: None,
            dev: link.name.clone(),
            src: Some(v.address.ip),
        }];
        match v.address.gateway {
            Some(gw) => routes.push(Route {
                table,
                dst: default_dst(),
                gateway: Some(gw),
                dev: link.name.clone(),
                src: None,
            }),
            None => report.status = VnicStatus::NoGateway,
        }
        let rule = if seen_ips.insert(v.address.ip) {
            Some(Rule {
                priority: cfg.rule_priority,
                src: Some(host_net(v.address.ip)),
                dst: None,
                table,
            })
        } else {
            report.status = VnicStatus::DuplicateIp;
            None
        };
        desired.push(Desired {
            link: link.name.clone(),
            addr,
            routes,
            rule,
        });
        reports.push(report);
    }

    let want_routes: BTreeSet<&Route> = desired.iter().flat_map(|d| d.routes.iter()).collect();
    let mut want_rules: BTreeSet<Rule> = desired.iter().filter_map(|d| d.rule.clone()).collect();
    if !desired.is_empty() {
        want_rules.insert(guard_rule(cfg));
    }

    let mut actions = Vec::new();
    // 1. Stale entries first (detached VNICs, changed gateways, VFs gone to
    //    pods), so a new route never collides with an old one.
    let mut stale_rules: Vec<&Rule> = current
        .rules
        .iter()
        .filter(|r| is_our_rule(cfg, r) && !want_rules.contains(r))
        .collect();
    stale_rules.sort();
    stale_rules.dedup();
    actions.extend(stale_rules.into_iter().cloned().map(Action::DelRule));
    let mut stale_routes: Vec<&Route> = current
        .routes
        .iter()
        .filter(|r| cfg.owns_table(r.table) && !want_routes.contains(r))
        .collect();
    stale_routes.sort();
    // Default routes before subnet routes, mirroring the add order.
    stale_routes.sort_by_key(|r| std::cmp::Reverse(r.gateway.is_some()));
    actions.extend(stale_routes.into_iter().cloned().map(Action::DelRoute));

    // 2. Per VNIC: link, address, routes (subnet before default, so the
    //    gateway is reachable inside the table), rule last so traffic is
    //    steered only into a complete table.
    let by_name: BTreeMap<&str, &Link> =
        current.links.iter().map(|l| (l.name.as_str(), l)).collect();
    for d in &desired {
        let Some(link) = by_name.get(d.link.as_str()) else {
            continue;
        };
        if link.mtu != cfg.mtu {
            actions.push(Action::SetMtu {
                link: d.link.clone(),
                mtu: cfg.mtu,
            });
        }
        if !link.up {
            actions.push(Action::SetUp {
                link: d.link.clone(),
            });
        }
        if !link.addrs.contains(&d.addr) {
            actions.push(Action::AddAddr {
                link: d.link.clone(),
                addr: d.addr,
            });
        }
        for r in &d.routes {
            if !current.routes.contains(r) {
                actions.push(Action::AddRoute(r.clone()));
            }
        }
        if let Some(rule) = &d.rule {
            if !current.rules.contains(rule) {
                actions.push(Action::AddRule(rule.clone()));
            }
        }
    }
    let guard = guard_rule(cfg);
    if want_rules.contains(&guard) && !current.rules.contains(&guard) {
        actions.push(Action::AddRule(guard));
    }
    Plan {
        vnics: reports,
        actions,
    }
}

/// Pure: remove exactly what [`plan`] adds — our rules (incl. the guard),
/// every route in our tables, and each secondary VNIC's IMDS address on its
/// link. MTU and link state are left as they are: we cannot know what they
/// were before, and a down VF is worse than a 9000-byte one.
pub fn plan_deconfigure(cfg: &VnicConfig, vnics: &[NodeNic], current: &Current) -> Plan {
    let mut p = plan(cfg, vnics, current, &BTreeSet::new());
    let mut actions = Vec::new();
    let mut rules: Vec<&Rule> = current
        .rules
        .iter()
        .filter(|r| is_our_rule(cfg, r))
        .collect();
    rules.sort();
    rules.dedup();
    actions.extend(rules.into_iter().cloned().map(Action::DelRule));
    let mut routes: Vec<&Route> = current
        .routes
        .iter()
        .filter(|r| cfg.owns_table(r.table))
        .collect();
    routes.sort();
    routes.sort_by_key(|r| std::cmp::Reverse(r.gateway.is_some()));
    actions.extend(routes.into_iter().cloned().map(Action::DelRoute));
    for v in vnics.iter().skip(1) {
        let mac = &v.mac;
        let addr = v.address.cidr();
        for l in current.links.iter().filter(|l| l.mac == *mac) {
            if Some(mac) != vnics.first().map(|p| &p.mac) && l.addrs.contains(&addr) {
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

/// Side effects of [`apply`]: a netlink handle opened in the target namespace.
pub trait NetOps {
    /// Links, routes of our tables and rules, as the planner needs them.
    fn current(&self, cfg: &VnicConfig) -> Result<Current, VnicError>;
    /// Performs one action.
    fn execute(&self, action: &Action) -> Result<(), VnicError>;
}

/// Errors of VNIC configuration, naming the action or link involved.
#[derive(Debug, thiserror::Error)]
pub enum VnicError {
    #[error("reading instance metadata: {0}")]
    Metadata(#[from] plexus_imds::ImdsError),
    #[error("netlink: {context}: {message}")]
    Netlink { context: String, message: String },
    #[error("{failed} of {total} action(s) failed: {}", .errors.join("; "))]
    Partial {
        failed: usize,
        total: usize,
        errors: Vec<String>,
    },
}

/// What [`apply`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ApplyReport {
    pub applied: Vec<Action>,
    pub failed: Vec<(Action, String)>,
    pub skipped: Vec<Action>,
}

/// Runs the plan's actions. A failure stops the remaining actions of the
/// same link (its table would be incomplete) but not those of other VNICs,
/// so one broken VF does not keep the others unconfigured.
pub fn apply(ops: &dyn NetOps, plan: &Plan) -> ApplyReport {
    let mut report = ApplyReport::default();
    let mut broken_links: BTreeSet<String> = BTreeSet::new();
    // Rules reference a table, not a link: find the link of the table.
    let table_link: BTreeMap<u32, String> = plan
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::AddRoute(r) => Some((r.table, r.dev.clone())),
            _ => None,
        })
        .collect();
    for a in &plan.actions {
        let link = a.link().map(String::from).or_else(|| match a {
            Action::AddRule(r) => table_link.get(&r.table).cloned(),
            _ => None,
        });
        if link.as_ref().is_some_and(|l| broken_links.contains(l)) {
            report.skipped.push(a.clone());
            continue;
        }
        match ops.execute(a) {
            Ok(()) => report.applied.push(a.clone()),
            Err(e) => {
                tracing::warn!(action = %a.describe(), error = %e, "vnic action failed");
                if let Some(l) = link {
                    broken_links.insert(l);
                }
                report.failed.push((a.clone(), e.to_string()));
            }
        }
    }
    report
}

impl ApplyReport {
    /// `Ok` when every action succeeded, else a [`VnicError::Partial`].
    pub fn into_result(self) -> Result<Vec<Action>, VnicError> {
        if self.failed.is_empty() && self.skipped.is_empty() {
            return Ok(self.applied);
        }
        let total = self.applied.len() + self.failed.len() + self.skipped.len();
        Err(VnicError::Partial {
            failed: self.failed.len() + self.skipped.len(),
            total,
            errors: self
                .failed
                .iter()
                .map(|(a, e)| format!("{}: {e}", a.describe()))
                .collect(),
        })
    }
}

pub mod testing {
    //! In-memory [`NetOps`] that applies actions to a [`Current`], for
    //! handler tests and the reconcile loop's tests.

    use std::sync::Mutex;

    use super::*;

    #[derive(Debug, Default)]
    pub struct FakeNet {
        pub state: Mutex<Current>,
        /// Actions on these links fail.
        pub fail_links: BTreeSet<String>,
    }

    impl FakeNet {
        pub fn new(current: Current) -> Self {
            Self {
                state: Mutex::new(current),
                fail_links: BTreeSet::new(),
            }
        }
        pub fn snapshot(&self) -> Current {
            self.state.lock().map(|s| s.clone()).unwrap_or_default()
        }
    }

    fn err(a: &Action, m: &str) -> VnicError {
        VnicError::Netlink {
            context: a.describe(),
            message: m.into(),
        }
    }

    impl NetOps for FakeNet {
        fn current(&self, cfg: &VnicConfig) -> Result<Current, VnicError> {
            let mut c = self.snapshot();
            c.routes.retain(|r| cfg.owns_table(r.table));
            Ok(c)
        }

        fn execute(&self, a: &Action) -> Result<(), VnicError> {
            if a.link().is_some_and(|l| self.fail_links.contains(l)) {
                return Err(err(a, "injected failure"));
            }
            let mut s = self.state.lock().map_err(|_| err(a, "poisoned"))?;
            let link = |s: &mut Current, name: &str| {
                s.links
                    .iter_mut()
                    .position(|l| l.name == name)
                    .ok_or_else(|| err(a, "no such link"))
            };
            match a {
                Action::SetMtu { link: l, mtu } => {
                    let i = link(&mut s, l)?;
                    s.links[i].mtu = *mtu;
                }
                Action::SetUp { link: l } => {
                    let i = link(&mut s, l)?;
                    s.links[i].up = true;
                }
                Action::AddAddr { link: l, addr } => {
                    let i = link(&mut s, l)?;
                    if s.links[i].addrs.contains(addr) {
                        return Err(err(a, "File exists"));
                    }
                    s.links[i].addrs.push(*addr);
                }
                Action::DelAddr { link: l, addr } => {
                    let i = link(&mut s, l)?;
                    s.links[i].addrs.retain(|x| x != addr);
                }
                Action::AddRoute(r) => {
                    if s.routes.contains(r) {
                        return Err(err(a, "File exists"));
                    }
                    s.routes.push(r.clone());
                }
                Action::DelRoute(r) => s.routes.retain(|x| x != r),
                Action::AddRule(r) => s.rules.push(r.clone()),
                Action::DelRule(r) => {
                    if let Some(i) = s.rules.iter().position(|x| x == r) {
                        s.rules.remove(i);
                    }
                }
            }
            Ok(())
        }
    }
}

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

/// Which of `plan`/`apply`/`deconfigure` to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Plan,
    Apply,
    Deconfigure,
}

/// Fetches IMDS, reads the namespace, plans and (unless [`Mode::Plan`])
/// applies. IMDS is read first: when it is down nothing is touched.
pub fn run(
    mode: Mode,
    cfg: &VnicConfig,
    metadata: &dyn plexus_imds::MetadataSource,
    ops: &dyn NetOps,
    in_pod_macs: &BTreeSet<String>,
) -> Result<(Plan, ApplyReport), VnicError> {
    let vnics = metadata.nics()?;
    run_with(mode, cfg, &vnics, ops, in_pod_macs)
}

/// [`run`] on VNICs the caller already fetched.
pub fn run_with(
    mode: Mode,
    cfg: &VnicConfig,
    vnics: &[NodeNic],
    ops: &dyn NetOps,
    in_pod_macs: &BTreeSet<String>,
) -> Result<(Plan, ApplyReport), VnicError> {
    let current = ops.current(cfg)?;
    let p = match mode {
        Mode::Deconfigure => plan_deconfigure(cfg, vnics, &current),
        Mode::Plan | Mode::Apply => plan(cfg, vnics, &current, in_pod_macs),
    };
    let report = match mode {
        Mode::Plan => ApplyReport::default(),
        Mode::Apply | Mode::Deconfigure => apply(ops, &p),
    };
    Ok((p, report))
}
