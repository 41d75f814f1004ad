//! Running a plan through [`NetOps`], and the one-shot `vnic` commands.

use std::collections::{BTreeMap, BTreeSet};

use plexus_imds::NodeNic;

use super::{plan, plan_deconfigure, Action, Current, Plan, VnicConfig};

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
