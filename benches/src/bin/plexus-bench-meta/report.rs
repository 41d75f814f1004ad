//! The markdown report of one run: per-series timing summaries, the
//! overhead of plexus over its delegates against the targets, peak RSS and
//! the API requests per call.

use std::path::Path;
use std::time::Duration;

use crate::series::{ApiLog, Series};
use crate::Args;

/// Targets from the issue.
const TARGET_OVERHEAD_MS: f64 = 2.0;
const TARGET_RSS_KIB: u64 = 15 * 1024;

/// Median and spread of one series, in milliseconds.
#[derive(Debug, Clone, Copy)]
struct Summary {
    p10: f64,
    median: f64,
    p90: f64,
}

/// Linear-interpolation quantile of sorted data.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    match sorted.len() {
        0 => f64::NAN,
        1 => sorted[0],
        n => {
            let pos = q * (n - 1) as f64;
            let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
            sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
        }
    }
}

impl Summary {
    fn of(samples: &[Duration]) -> Self {
        let mut ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e3).collect();
        ms.sort_by(f64::total_cmp);
        Self {
            p10: quantile(&ms, 0.10),
            median: quantile(&ms, 0.50),
            p90: quantile(&ms, 0.90),
        }
    }

    fn cell(&self) -> String {
        format!("{:.2} ({:.2}–{:.2})", self.median, self.p10, self.p90)
    }
}

/// `x` with an explicit sign and a true minus (U+2212), never "−0.00".
fn signed(x: f64) -> String {
    let abs = format!("{:.2}", x.abs());
    if x < 0.0 && abs != "0.00" {
        format!("\u{2212}{abs}")
    } else {
        format!("+{abs}")
    }
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

pub fn report(
    args: &Args,
    ours: &Path,
    load: &str,
    series: &[Series],
    rss: &[(&str, u64, u64)],
    add_logs: &[ApiLog],
    del_logs: &[ApiLog],
) {
    println!(
        "### Meta plugin (plexus) — {} cycles per series, {} warm-up, binaries in `{}`, \
         fake API over {} with latency `{}`\n",
        args.cycles,
        args.warmup,
        ours.display(),
        args.api_scheme,
        args.api_latency
    );
    println!(
        "Wall time per call sequence in ms, median (p10–p90); CPU is user+sys of \
         the calls' processes and the delegates they reap (`getrusage(RUSAGE_CHILDREN)` \
         delta), median (p10–p90). Series with a VF move wait ~16 ms per move in the \
         kernel's `rcu_barrier()`, asleep and quantised to 4 ms ticks, so their wall \
         medians move by ±4 ms between runs; that wait costs no CPU, so the CPU delta \
         is the meta plugin's own work. 1-minute load average {load} ({} cores).\n",
        std::thread::available_parallelism().map_or(0, usize::from)
    );
    println!("| series | ADD | DEL | ADD+DEL | ADD+DEL CPU |");
    println!("|---|---|---|---|---|");
    for s in series {
        println!(
            "| {} | {} | {} | {} | {} |",
            s.label,
            Summary::of(&s.add_times).cell(),
            Summary::of(&s.del_times).cell(),
            Summary::of(&s.cycle_times).cell(),
            Summary::of(&s.cycle_cpu).cell()
        );
    }
    let med = |s: &Series| Summary::of(&s.cycle_times).median;
    let cpu = |s: &Series| Summary::of(&s.cycle_cpu).median;
    println!(
        "\n| plexus on top of its delegates (ADD+DEL medians) | extra wall ms | ratio | \
         extra CPU ms | CPU ratio | ≤ {TARGET_OVERHEAD_MS} ms: wall / CPU |"
    );
    println!("|---|---|---|---|---|---|");
    for (label, base, meta) in [
        ("no API (1 → 2)", 0, 1),
        ("no API, delegate exec'd (1 → 3)", 0, 2),
        ("fake API, host-device NAD (4 → 5)", 3, 4),
        ("fake API, host-device NAD, exec'd (4 → 6)", 3, 5),
        ("API-bound, static NAD (1 → 7)", 0, 6),
        ("API-bound, static NAD, exec'd (1 → 8)", 0, 7),
        ("tutorial shape, 4 moves (9 → 10)", 8, 9),
    ] {
        let (b, m) = (med(&series[base]), med(&series[meta]));
        let (bc, mc) = (cpu(&series[base]), cpu(&series[meta]));
        let verdict = |extra: f64| {
            if extra <= TARGET_OVERHEAD_MS {
                "met"
            } else {
                "missed"
            }
        };
        println!(
            "| {label} | {} | {:.2}× | {} | {:.2}× | {} / {} |",
            signed(m - b),
            m / b,
            signed(mc - bc),
            mc / bc,
            verdict(m - b),
            verdict(mc - bc)
        );
    }
    println!(
        "\nPeak RSS (`ru_maxrss` of the call's process tree, max of {} runs):\n",
        args.rss_runs
    );
    println!("| call | ADD | DEL |");
    println!("|---|---|---|");
    for (label, add, del) in rss {
        println!("| {label} | {} | {} |", mib(*add), mib(*del));
    }
    let plexus_peak = rss
        .iter()
        .filter(|r| r.0.starts_with("plexus"))
        .map(|r| r.1.max(r.2))
        .max()
        .unwrap_or(0);
    println!(
        "\nplexus peak: {} (target ≤ {}: {})",
        mib(plexus_peak),
        mib(TARGET_RSS_KIB),
        if plexus_peak <= TARGET_RSS_KIB {
            "met"
        } else {
            "missed"
        }
    );
    let dist = |logs: &[ApiLog]| {
        let mut totals: Vec<usize> = logs.iter().map(ApiLog::total).collect();
        totals.sort_unstable();
        (
            totals.first().copied().unwrap_or(0),
            totals.last().copied().unwrap_or(0),
        )
    };
    println!(
        "\nKubernetes API requests per call (fake API request log, {} calls each):\n",
        add_logs.len()
    );
    println!("| call | requests (min–max) | of which events | connections (min–max) | protocol | requests |");
    println!("|---|---|---|---|---|---|");
    for (label, logs) in [("ADD", add_logs), ("DEL", del_logs)] {
        let (lo, hi) = dist(logs);
        let first = logs.first().cloned().unwrap_or(ApiLog {
            core: Vec::new(),
            events: 0,
            connections: 0,
            protocol: None,
        });
        let mut conns: Vec<usize> = logs.iter().map(|l| l.connections).collect();
        conns.sort_unstable();
        let conns = format!(
            "{}–{}",
            conns.first().copied().unwrap_or(0),
            conns.last().copied().unwrap_or(0)
        );
        let protocol = first.protocol.clone().unwrap_or_else(|| "—".into());
        let list = if first.core.is_empty() {
            "none".to_string()
        } else {
            first.core.join(", ")
        };
        println!(
            "| {label} | {lo}–{hi} | {} | {conns} | {protocol} | {list} |",
            first.events
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate_between_ranks() {
        let ms = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert_eq!(quantile(&ms, 0.5), 3.0);
        assert!((quantile(&ms, 0.1) - 1.4).abs() < 1e-9);
        assert!(quantile(&[], 0.5).is_nan());
        let s = Summary::of(&[Duration::from_millis(4), Duration::from_millis(2)]);
        assert!((s.median - 3.0).abs() < 1e-9);
    }
}
