//! Order statistics over timing samples: medians and p10/p90 rather than
//! means, because a shared 2-core VM produces long scheduling tails.

use std::time::Duration;

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
    fn summary_sorts_first() {
        let s = Summary::of_ms(&[9.0, 1.0, 5.0]);
        assert_eq!((s.n, s.median), (3, 5.0));
        let d = Summary::of(&[Duration::from_millis(2), Duration::from_millis(4)]);
        assert!((d.median - 3.0).abs() < 1e-9);
    }
}
