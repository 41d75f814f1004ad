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
//! [`plan()`] is pure: desired state (the node's NICs) vs current state (read from
//! netlink into [`Current`]) gives a list of [`Action`]s. [`apply`] runs them
//! through [`NetOps`]; re-planning afterwards yields nothing. Only tables in
//! `table_base..table_base+MAX_VNICS` and rules at our two priorities are
//! ever read as "ours", so [`plan_deconfigure`] removes exactly what we add.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

mod apply;
mod netlink;
mod plan;
pub mod testing;

pub use apply::{apply, run, run_with, ApplyReport, Mode, NetOps, VnicError};
pub use netlink::{netns_path, NetlinkOps};
pub use plan::{plan, plan_deconfigure, plan_with_hints};

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

/// The kernel's main routing table.
const MAIN_TABLE: u32 = 254;
