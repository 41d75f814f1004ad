//! plexus-bench-concurrency's samples and its markdown report.

use std::path::Path;
use std::time::Duration;

use crate::stats::quantile;

/// What the report says about the run.
pub struct Meta<'a> {
    pub rounds: usize,
    pub warmup: usize,
    pub ours: &'a Path,
    pub load: &'a str,
    pub took: Duration,
    pub api_latency: &'a str,
}

/// All samples of one series at one level.
#[derive(Default)]
pub struct Cell {
    pub add: Vec<f64>,
    pub del: Vec<f64>,
    pub add_wall: Vec<f64>,
    pub del_wall: Vec<f64>,
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

pub fn q(v: &[f64], p: f64) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    quantile(&s, p)
}

/// `/proc/loadavg`'s 1-minute figure: the report says how busy the machine was.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}

/// Prints the markdown report: one row per level and series, then the
/// serialisation table. `cells[series][level]`; `reference` is the series
/// the ratios are taken against.
pub fn print(
    m: &Meta<'_>,
    labels: &[&str],
    reference: Option<usize>,
    levels: &[usize],
    cells: &[Vec<Cell>],
) {
    println!(
        "### N concurrent ADDs, then N concurrent DELs — {} rounds after {} warm-up, ours from `{}`\n",
        m.rounds,
        m.warmup,
        m.ours.display()
    );
    println!(
        "Load average (1 min) {}; run took {:.0} s; fake API latency `{}`. \
         Throughput = N / wall time from the first start to the last exit of the \
         batch (median over rounds); per-pod latency is spawn → exit of each call \
         (p99 over all pods of all rounds).\n",
        m.load,
        m.took.as_secs_f64(),
        m.api_latency
    );
    println!("| N | series | ADD pods/s | ADD p50 | ADD p99 | DEL pods/s | DEL p50 | DEL p99 | ADD p50 vs reference | ADD pods/s vs reference |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for (li, &n) in levels.iter().enumerate() {
        let rate = |w: &[f64]| n as f64 * 1e3 / q(w, 0.5);
        for (ki, label) in labels.iter().enumerate() {
            let c = &cells[ki][li];
            let (vs_p50, vs_rate) = match reference {
                Some(r) if r != ki => {
                    let rc = &cells[r][li];
                    (
                        format!("{:.2}×", q(&c.add, 0.5) / q(&rc.add, 0.5)),
                        format!("{:.2}×", rate(&c.add_wall) / rate(&rc.add_wall)),
                    )
                }
                _ => ("–".into(), "–".into()),
            };
            println!(
                "| {n} | {} | {:.1} | {:.1} ms | {:.1} ms | {:.1} | {:.1} ms | {:.1} ms | {vs_p50} | {vs_rate} |",
                label,
                rate(&c.add_wall),
                q(&c.add, 0.5),
                q(&c.add, 0.99),
                rate(&c.del_wall),
                q(&c.del, 0.5),
                q(&c.del, 0.99),
            );
        }
    }
    println!();
    // How close to serial each series is: wall of N at once over N × the
    // single-pod median (1.0 = fully serial, 1/N = fully parallel).
    if let Some(l1) = levels.iter().position(|&n| n == 1) {
        println!("Serialisation: ADD batch wall at N ÷ (N × ADD p50 at N = 1); 1.00 = one at a time, 1/N = fully parallel.\n");
        let header: Vec<String> = levels.iter().map(|n| format!("N = {n}")).collect();
        println!("| series | {} |", header.join(" | "));
        println!("|---|{}", "---|".repeat(levels.len()));
        for (ki, label) in labels.iter().enumerate() {
            let single = q(&cells[ki][l1].add, 0.5);
            let row: Vec<String> = levels
                .iter()
                .enumerate()
                .map(|(li, &n)| {
                    format!(
                        "{:.2}",
                        q(&cells[ki][li].add_wall, 0.5) / (n as f64 * single)
                    )
                })
                .collect();
            println!("| {label} | {} |", row.join(" | "));
        }
        println!();
    }
}
