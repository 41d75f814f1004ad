//! Markdown rendering of one run and splicing it into `BENCHMARKS.md`
//! between markers, so hand-written analysis around it survives re-runs.
//!
//! Two generated blocks: the plugins' (host-device + static against the
//! reference) and the node's (`vnic` IPAM and the agent). A run rewrites
//! only the blocks it measured, so `--only vnic,agent --write` leaves the
//! plugin tables alone; everything outside the markers (analysis, the meta
//! plugin's section) is never touched.
//!
//! The plugins' sections render in `plugins.rs`, the node's in `node.rs`.

mod node;
mod plugins;
#[cfg(test)]
mod tests;

use crate::agent::AgentRss;
use crate::stats::Summary;

/// Where a generated block lives in the markdown file.
#[derive(Debug, Clone, Copy)]
pub struct Block {
    pub begin: &'static str,
    pub end: &'static str,
    /// Written above the block the first time it is inserted.
    pub heading: Option<&'static str>,
    /// The first insertion goes before this heading line when the file has
    /// it (so a later section keeps its place), else at the end.
    pub before: Option<&'static str>,
}

pub const PLUGINS: Block = Block {
    begin: "<!-- BEGIN plexus-bench (generated: do not edit by hand) -->",
    end: "<!-- END plexus-bench -->",
    heading: None,
    before: None,
};

pub const NODE: Block = Block {
    begin: "<!-- BEGIN plexus-bench vnic+agent (generated: do not edit by hand) -->",
    end: "<!-- END plexus-bench vnic+agent -->",
    heading: Some("## vnic IPAM and the node agent"),
    before: Some("## plexus meta plugin"),
};

/// Targets from the project brief, checked in the verdict lines.
pub const TARGET_OVER_FLOOR_MS: f64 = 2.0;
pub const TARGET_OVER_TRUE_MS: f64 = 1.0;
pub const TARGET_RSS_KIB: u64 = 8 * 1024;
pub const TARGET_VNIC_ADD_MS: f64 = 2.0;
pub const TARGET_AGENT_RSS_KIB: u64 = 20 * 1024;

/// One ADD+DEL series.
#[derive(Debug, Clone)]
pub struct CycleRow {
    pub label: String,
    pub add: Summary,
    pub del: Summary,
    pub cycle: Summary,
    /// User+sys CPU per cycle.
    pub cpu: Summary,
    /// The samples behind `cycle` and `cpu` (ms), for the intervals of the
    /// differences to the floor.
    pub cycle_ms: Vec<f64>,
    pub cpu_ms: Vec<f64>,
}

/// Peak RSS of one binary, per command measured (KiB).
#[derive(Debug, Clone)]
pub struct RssRow {
    pub label: String,
    pub version: u64,
    pub add: Option<u64>,
    pub del: Option<u64>,
}

/// One IPAM ADD series of the `vnic` section.
#[derive(Debug, Clone)]
pub struct VnicRow {
    pub label: String,
    pub time: Summary,
    /// `ru_maxrss` of one call (KiB).
    pub rss_kib: Option<u64>,
}

/// Everything one run measured, plus how it was produced.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub command: String,
    pub environment: String,
    pub cycles: usize,
    pub warmup: usize,
    /// ours, reference, floor (in that order) when measured.
    pub plugin_rows: Vec<CycleRow>,
    pub variant_rows: Vec<CycleRow>,
    pub version_runs: usize,
    /// (label, summary); the last row is `/bin/true`.
    pub startup: Vec<(String, Summary)>,
    pub rss: Vec<RssRow>,
    /// An unrelated RTM_SETLINK: (idle, while VF moves run).
    pub rtnl: Option<(Summary, Summary)>,
    /// vnic from the state file, vnic from IMDS, static, `/bin/true` (last).
    pub vnic: Vec<VnicRow>,
    pub agent: Option<AgentRss>,
}

fn range(s: &Summary) -> String {
    format!("{:.1}–{:.1} ms", s.p10, s.p90)
}

fn verdict(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "**not met**"
    }
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

impl Report {
    fn header(&self) -> String {
        format!(
            "Reproduce: `{}`  \nRun on: {}\n",
            self.command, self.environment
        )
    }

    /// The plugins' block, `None` when this run measured none of it.
    pub fn markdown(&self) -> Option<String> {
        let mut md = String::new();
        self.cycles_md(&mut md);
        self.variants_md(&mut md);
        self.rtnl_md(&mut md);
        self.startup_md(&mut md);
        self.rss_md(&mut md);
        (!md.is_empty()).then(|| self.header() + &md)
    }

    /// The node's block (`vnic` IPAM, agent), `None` when not measured.
    pub fn node_markdown(&self) -> Option<String> {
        let mut md = String::new();
        self.vnic_md(&mut md);
        self.agent_md(&mut md);
        (!md.is_empty()).then(|| self.header() + &md)
    }
}

/// `existing` with `block`'s generated text replaced by `generated`; when
/// its markers are missing the block (under its heading) is inserted before
/// `block.before` if that heading is there, else appended.
pub fn splice(existing: &str, block: &Block, generated: &str) -> String {
    let (begin, end) = (block.begin, block.end);
    let text = format!("{begin}\n{}\n{end}", generated.trim_end());
    if let (Some(b), Some(e)) = (existing.find(begin), existing.find(end)) {
        if e > b {
            return format!("{}{text}{}", &existing[..b], &existing[e + end.len()..]);
        }
    }
    let new = match block.heading {
        Some(h) => format!("{h}\n\n{text}\n"),
        None => format!("{text}\n"),
    };
    let before = block.before.and_then(|h| {
        existing
            .match_indices(h)
            .map(|(i, _)| i)
            .find(|&i| i == 0 || existing[..i].ends_with('\n'))
    });
    if let Some(i) = before {
        return format!("{}{new}\n{}", &existing[..i], &existing[i..]);
    }
    let sep = if existing.is_empty() || existing.ends_with("\n\n") {
        ""
    } else if existing.ends_with('\n') {
        "\n"
    } else {
        "\n\n"
    };
    format!("{existing}{sep}{new}")
}
