//! Markdown rendering of one run and splicing it into `BENCHMARKS.md`
//! between markers, so hand-written analysis around it survives re-runs.

use std::fmt::Write as _;

use crate::stats::Summary;

pub const BEGIN: &str = "<!-- BEGIN plexus-bench (generated: do not edit by hand) -->";
pub const END: &str = "<!-- END plexus-bench -->";

/// Targets from the project brief, checked in the verdict lines.
pub const TARGET_OVER_FLOOR_MS: f64 = 2.0;
pub const TARGET_OVER_TRUE_MS: f64 = 1.0;
pub const TARGET_RSS_KIB: u64 = 8 * 1024;

/// One ADD+DEL series.
#[derive(Debug, Clone)]
pub struct CycleRow {
    pub label: String,
    pub add: Summary,
    pub del: Summary,
    pub cycle: Summary,
}

/// Peak RSS of one binary, per command measured (KiB).
#[derive(Debug, Clone)]
pub struct RssRow {
    pub label: String,
    pub version: u64,
    pub add: Option<u64>,
    pub del: Option<u64>,
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
    pub fn markdown(&self) -> String {
        let mut md = String::new();
        let _ = writeln!(md, "Reproduce: `{}`  ", self.command);
        let _ = writeln!(md, "Run on: {}", self.environment);
        self.cycles_md(&mut md);
        self.variants_md(&mut md);
        self.rtnl_md(&mut md);
        self.startup_md(&mut md);
        self.rss_md(&mut md);
        md
    }

    fn cycles_md(&self, md: &mut String) {
        if self.plugin_rows.is_empty() {
            return;
        }
        let _ = writeln!(
            md,
            "\n### ADD+DEL cycle: host-device + static, veth \"VF\"\n\n\
             {} cycles after {} warm-up, series interleaved cycle by cycle; \
             wall time per plugin process from spawn to exit.\n",
            self.cycles, self.warmup
        );
        let floor = self
            .plugin_rows
            .iter()
            .find(|r| r.label.starts_with("kernel floor"));
        let _ = writeln!(
            md,
            "| what | ADD | DEL | ADD+DEL median | p10–p90 of cycle | above floor |\n|---|---|---|---|---|---|"
        );
        for r in &self.plugin_rows {
            let above = match floor {
                Some(f) if !std::ptr::eq(f, r) => {
                    format!("+{:.1} ms", r.cycle.median - f.cycle.median)
                }
                _ => "–".to_owned(),
            };
            let _ = writeln!(
                md,
                "| {} | {:.1} ms | {:.1} ms | **{:.1} ms** | {} | {} |",
                r.label,
                r.add.median,
                r.del.median,
                r.cycle.median,
                range(&r.cycle),
                above
            );
        }
        if let (Some(ours), Some(reference), Some(floor)) =
            (self.plugin_rows.first(), self.plugin_rows.get(1), floor)
        {
            let over = ours.cycle.median - floor.cycle.median;
            let _ = writeln!(
                md,
                "\nOurs is {:.2}× the reference's cycle time ({:.1} ms saved per pod). \
                 Ours above the floor: {:.1} ms (target ≤ {:.0} ms: {}); the reference: {:.1} ms.",
                ours.cycle.median / reference.cycle.median,
                reference.cycle.median - ours.cycle.median,
                over,
                TARGET_OVER_FLOOR_MS,
                verdict(over <= TARGET_OVER_FLOOR_MS),
                reference.cycle.median - floor.cycle.median
            );
        }
    }

    fn variants_md(&self, md: &mut String) {
        let Some(base) = self.variant_rows.first() else {
            return;
        };
        let _ = writeln!(
            md,
            "\n### Kernel floor variants (what a plugin could do differently)\n\n\
             | variant | into pod | back | cycle median | p10–p90 | vs plain move |\n|---|---|---|---|---|---|"
        );
        for r in &self.variant_rows {
            let _ = writeln!(
                md,
                "| {} | {:.1} ms | {:.1} ms | {:.1} ms | {} | {:+.1} ms |",
                r.label,
                r.add.median,
                r.del.median,
                r.cycle.median,
                range(&r.cycle),
                r.cycle.median - base.cycle.median
            );
        }
    }

    fn rtnl_md(&self, md: &mut String) {
        let Some((idle, busy)) = &self.rtnl else {
            return;
        };
        let _ = writeln!(
            md,
            "\n### Side effect on the node: RTNL held through the move\n\n\
             An unrelated `RTM_SETLINK` (MTU of a veth in a third namespace), \
             {} probes each.\n\n\
             | while | median | p10–p90 |\n|---|---|---|\n\
             | nothing else runs | {:.2} ms | {:.2}–{:.2} ms |\n\
             | another thread moves the VF in and out | {:.2} ms | {:.2}–{:.2} ms |",
            idle.n, idle.median, idle.p10, idle.p90, busy.median, busy.p10, busy.p90
        );
    }

    fn startup_md(&self, md: &mut String) {
        let Some((_, truth)) = self.startup.last() else {
            return;
        };
        let _ = writeln!(
            md,
            "\n### VERSION start-up (spawn → exit, {} runs each, interleaved)\n\n\
             | binary | median | p10–p90 | above `/bin/true` |\n|---|---|---|---|",
            self.version_runs
        );
        for (label, s) in &self.startup {
            let _ = writeln!(
                md,
                "| {label} | {:.2} ms | {:.2}–{:.2} ms | {:+.2} ms |",
                s.median,
                s.p10,
                s.p90,
                s.median - truth.median
            );
        }
        let ours: Vec<&(String, Summary)> = self
            .startup
            .iter()
            .filter(|(l, _)| l.starts_with("ours"))
            .collect();
        if let Some(worst) = ours
            .iter()
            .map(|(_, s)| s.median - truth.median)
            .reduce(f64::max)
        {
            let _ = writeln!(
                md,
                "\nOurs, worst above `/bin/true`: {worst:+.2} ms (target ≤ {:.0} ms: {}).",
                TARGET_OVER_TRUE_MS,
                verdict(worst <= TARGET_OVER_TRUE_MS)
            );
        }
    }

    fn rss_md(&self, md: &mut String) {
        if self.rss.is_empty() {
            return;
        }
        let _ = writeln!(
            md,
            "\n### Peak RSS per plugin process (`ru_maxrss`)\n\n\
             host-device ADD/DEL include the static IPAM child they run (the \
             larger of the two). `ru_maxrss` also counts the image of the \
             process that forked the plugin (Linux records the pre-exec \
             memory's high-water mark at exec), so every figure is an upper \
             bound: the `/bin/true` row is this method's floor.\n\n\
             | binary | VERSION | ADD | DEL |\n|---|---|---|---|"
        );
        let cell = |v: Option<u64>| v.map_or_else(|| "–".to_owned(), mib);
        for r in &self.rss {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} |",
                r.label,
                mib(r.version),
                cell(r.add),
                cell(r.del)
            );
        }
        let worst = self
            .rss
            .iter()
            .filter(|r| r.label.starts_with("ours"))
            .flat_map(|r| [Some(r.version), r.add, r.del])
            .flatten()
            .max();
        if let Some(worst) = worst {
            let _ = writeln!(
                md,
                "\nOurs, largest peak: {} (target ≤ {}: {}).",
                mib(worst),
                mib(TARGET_RSS_KIB),
                verdict(worst <= TARGET_RSS_KIB)
            );
        }
    }
}

/// `existing` with the generated block replaced by `generated`; when the
/// markers are missing the block is appended.
pub fn splice(existing: &str, generated: &str) -> String {
    let block = format!("{BEGIN}\n{}\n{END}", generated.trim_end());
    match (existing.find(BEGIN), existing.find(END)) {
        (Some(b), Some(e)) if e > b => {
            format!("{}{block}{}", &existing[..b], &existing[e + END.len()..])
        }
        _ => {
            let sep = if existing.is_empty() || existing.ends_with("\n\n") {
                ""
            } else if existing.ends_with('\n') {
                "\n"
            } else {
                "\n\n"
            };
            format!("{existing}{sep}{block}\n")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(median: f64) -> Summary {
        Summary {
            n: 10,
            p10: median - 1.0,
            median,
            p90: median + 1.0,
        }
    }

    fn row(label: &str, add: f64, del: f64) -> CycleRow {
        CycleRow {
            label: label.to_owned(),
            add: s(add),
            del: s(del),
            cycle: s(add + del),
        }
    }

    #[test]
    fn splice_replaces_only_the_block() {
        let doc = format!("# T\n\nintro\n\n{BEGIN}\nold\n{END}\n\n## analysis\nkept\n");
        let out = splice(&doc, "new\n");
        assert_eq!(
            out,
            format!("# T\n\nintro\n\n{BEGIN}\nnew\n{END}\n\n## analysis\nkept\n")
        );
        assert_eq!(splice(&out, "new"), out, "idempotent");
    }

    #[test]
    fn splice_appends_without_markers() {
        assert_eq!(splice("# T\n", "x"), format!("# T\n\n{BEGIN}\nx\n{END}\n"));
    }

    #[test]
    fn cycle_table_reports_distance_to_floor() {
        let report = Report {
            command: "plexus-bench".into(),
            cycles: 200,
            warmup: 5,
            plugin_rows: vec![
                row("ours", 21.0, 20.0),
                row("reference", 25.0, 22.0),
                row("kernel floor", 20.0, 19.5),
            ],
            ..Report::default()
        };
        let md = report.markdown();
        assert!(
            md.contains("| ours | 21.0 ms | 20.0 ms | **41.0 ms** | 40.0–42.0 ms | +1.5 ms |"),
            "{md}"
        );
        assert!(
            md.contains("| kernel floor | 20.0 ms | 19.5 ms | **39.5 ms** | 38.5–40.5 ms | – |")
        );
        assert!(md
            .contains("Ours above the floor: 1.5 ms (target ≤ 2 ms: met); the reference: 7.5 ms."));
        assert!(md.contains("0.87×"));
    }

    #[test]
    fn startup_and_rss_verdicts() {
        let report = Report {
            version_runs: 300,
            startup: vec![
                ("ours host-device".into(), s(2.5)),
                ("/bin/true".into(), s(0.7)),
            ],
            rss: vec![RssRow {
                label: "ours host-device".into(),
                version: 2048,
                add: Some(4096),
                del: None,
            }],
            ..Report::default()
        };
        let md = report.markdown();
        assert!(
            md.contains("| ours host-device | 2.50 ms | 1.50–3.50 ms | +1.80 ms |"),
            "{md}"
        );
        assert!(md.contains("target ≤ 1 ms: **not met**"));
        assert!(md.contains("| ours host-device | 2.0 MiB | 4.0 MiB | – |"));
        assert!(md.contains("Ours, largest peak: 4.0 MiB (target ≤ 8.0 MiB: met)."));
    }
}
