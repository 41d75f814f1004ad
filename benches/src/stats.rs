//! Order statistics over timing samples: medians and p10/p90 rather than
//! means, because a shared 2-core VM produces long scheduling tails.

use std::time::Duration;

use nix::sys::resource::{getrusage, Usage, UsageWho};
use nix::sys::time::TimeVal;

/// Median and spread of one series, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    pub n: usize,
    pub p10: f64,
    pub median: f64,
    pub p90: f64,
}

/// The `q`-quantile (0..=1) of sorted data, interpolating between the two
/// closest ranks (the common "linear" definition).
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    match sorted.len() {
        0 => f64::NAN,
        1 => sorted[0],
        n => {
            let pos = q.clamp(0.0, 1.0) * (n - 1) as f64;
            let lo = pos.floor() as usize;
            let hi = pos.ceil() as usize;
            sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
        }
    }
}

impl Summary {
    pub fn of_ms(samples: &[f64]) -> Self {
        let mut sorted = samples.to_vec();
        sorted.sort_by(f64::total_cmp);
        Self {
            n: sorted.len(),
            p10: quantile(&sorted, 0.10),
            median: quantile(&sorted, 0.50),
            p90: quantile(&sorted, 0.90),
        }
    }

    pub fn of(samples: &[Duration]) -> Self {
        let ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e3).collect();
        Self::of_ms(&ms)
    }
}

fn cpu_of(u: &Usage) -> Duration {
    let d = |t: TimeVal| {
        Duration::new(
            u64::try_from(t.tv_sec()).unwrap_or(0),
            u32::try_from(t.tv_usec()).unwrap_or(0) * 1_000,
        )
    };
    d(u.user_time()) + d(u.system_time())
}

/// User+sys CPU of every child this process has reaped so far (and of what
/// they reaped: `wait4` folds a child's reaped descendants into its own
/// figure, so a plugin's IPAM child counts). The delta around one
/// spawn-and-wait is that call's CPU, as long as nothing else is reaped in
/// between.
pub fn children_cpu() -> Duration {
    getrusage(UsageWho::RUSAGE_CHILDREN).map_or(Duration::ZERO, |u| cpu_of(&u))
}

/// User+sys CPU of the calling thread so far.
pub fn thread_cpu() -> Duration {
    getrusage(UsageWho::RUSAGE_THREAD).map_or(Duration::ZERO, |u| cpu_of(&u))
}

/// `x` with an explicit sign, a true minus (U+2212) for negatives and
/// never a "−0.0".
pub fn signed(x: f64, decimals: usize) -> String {
    let abs = format!("{:.*}", decimals, x.abs());
    let zero = abs.chars().all(|c| c == '0' || c == '.');
    if x < 0.0 && !zero {
        format!("\u{2212}{abs}")
    } else {
        format!("+{abs}")
    }
}

/// Difference of medians `a − b` (ms) with a 90 % bootstrap interval
/// (1000 resamples, fixed seed so a report is reproducible from its data).
pub fn median_diff_ci(a: &[f64], b: &[f64]) -> (f64, f64, f64) {
    fn median(v: &mut [f64]) -> f64 {
        v.sort_by(f64::total_cmp);
        quantile(v, 0.5)
    }
    let point = median(&mut a.to_vec()) - median(&mut b.to_vec());
    if a.is_empty() || b.is_empty() {
        return (point, point, point);
    }
    // xorshift64*: enough randomness for resampling, no dependency.
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = |n: usize| {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        (state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) as usize % n
    };
    let mut diffs = Vec::with_capacity(1000);
    let (mut ra, mut rb) = (vec![0.0; a.len()], vec![0.0; b.len()]);
    for _ in 0..1000 {
        for x in ra.iter_mut() {
            *x = a[next(a.len())];
        }
        for x in rb.iter_mut() {
            *x = b[next(b.len())];
        }
        diffs.push(median(&mut ra) - median(&mut rb));
    }
    diffs.sort_by(f64::total_cmp);
    (point, quantile(&diffs, 0.05), quantile(&diffs, 0.95))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate() {
        let s = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert_eq!(quantile(&s, 0.5), 3.0);
        assert_eq!(quantile(&s, 0.0), 1.0);
        assert_eq!(quantile(&s, 1.0), 5.0);
        assert!((quantile(&s, 0.1) - 1.4).abs() < 1e-9);
        assert!((quantile(&[1.0, 2.0], 0.5) - 1.5).abs() < 1e-9);
        assert!(quantile(&[], 0.5).is_nan());
    }

    #[test]
    fn signs_use_a_true_minus() {
        assert_eq!(signed(-2.6, 1), "\u{2212}2.6");
        assert_eq!(signed(1.5, 1), "+1.5");
        assert_eq!(signed(-0.01, 1), "+0.0");
        assert_eq!(signed(0.0, 2), "+0.00");
    }

    #[test]
    fn median_diff_interval_brackets_the_point() {
        let a: Vec<f64> = (0..100).map(|i| 40.0 + f64::from(i % 9)).collect();
        let b: Vec<f64> = (0..100).map(|i| 38.0 + f64::from(i % 7)).collect();
        let (d, lo, hi) = median_diff_ci(&a, &b);
        assert!((d - 3.0).abs() < 1e-9, "{d}");
        assert!(lo <= d && d <= hi, "{lo} {d} {hi}");
        let (d, lo, hi) = median_diff_ci(&a, &a);
        assert!(d == 0.0 && lo <= 0.0 && hi >= 0.0, "{lo} {d} {hi}");
    }

    #[test]
    fn summary_sorts_first() {
        let s = Summary::of_ms(&[9.0, 1.0, 5.0]);
        assert_eq!((s.n, s.median), (3, 5.0));
        let d = Summary::of(&[Duration::from_millis(2), Duration::from_millis(4)]);
        assert!((d.median - 3.0).abs() < 1e-9);
    }
}
