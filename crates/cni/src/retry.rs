//! The one retry loop every short-lived HTTP client of the project uses (the
//! pod API client, the meta plugin's bounded API use, the metadata client):
//! attempts bounded by count and by a time budget, the wait chosen by the
//! caller per failure (backoff, jitter, a server's `Retry-After`), and the
//! sleep behind [`Sleeper`] so tests never wait.

use std::time::{Duration, Instant};

/// Sleeps between attempts; the real one is [`ThreadSleeper`].
pub trait Sleeper {
    fn sleep(&self, d: Duration);
}

/// Blocks the thread.
#[derive(Debug, Clone, Copy, Default)]
pub struct ThreadSleeper;

impl Sleeper for ThreadSleeper {
    fn sleep(&self, d: Duration) {
        std::thread::sleep(d);
    }
}

/// When to give up regardless of the error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Total attempts including the first (`u32::MAX`: budget only).
    pub max_attempts: u32,
    /// No attempt is scheduled whose wait would end past this, counted from
    /// the first attempt.
    pub budget: Duration,
}

/// The last error and how many attempts were made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GaveUp<E> {
    pub error: E,
    pub attempts: u32,
}

/// Runs `call(attempt)` (1-based) until it succeeds, `wait(&error, retry)`
/// says `None` (not retryable; `retry` is 0 before the first retry), or the
/// limits are reached. Time spent counts both the clock and our own waits,
/// so a fake sleeper still exhausts the budget.
pub fn retry<T, E>(
    limits: Limits,
    sleeper: &dyn Sleeper,
    mut call: impl FnMut(u32) -> Result<T, E>,
    mut wait: impl FnMut(&E, u32) -> Option<Duration>,
) -> Result<T, GaveUp<E>> {
    let start = Instant::now();
    let mut waited = Duration::ZERO;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let error = match call(attempt) {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        let give_up = |error| {
            Err(GaveUp {
                error,
                attempts: attempt,
            })
        };
        if attempt >= limits.max_attempts.max(1) {
            return give_up(error);
        }
        let Some(delay) = wait(&error, attempt - 1) else {
            return give_up(error);
        };
        if start.elapsed().max(waited) + delay > limits.budget {
            return give_up(error);
        }
        sleeper.sleep(delay);
        waited += delay;
    }
}

/// `initial * 2^retry`, capped at `max`.
pub fn exponential(initial: Duration, max: Duration, retry: u32) -> Duration {
    initial
        .saturating_mul(1u32.checked_shl(retry).unwrap_or(u32::MAX))
        .min(max)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    #[derive(Default)]
    struct Recorder(RefCell<Vec<Duration>>);
    impl Sleeper for Recorder {
        fn sleep(&self, d: Duration) {
            self.0.borrow_mut().push(d);
        }
    }

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn stops_at_the_attempt_limit_the_budget_or_a_final_error() {
        let s = Recorder::default();
        let limits = Limits {
            max_attempts: 3,
            budget: Duration::from_secs(60),
        };
        let r: Result<(), _> = retry(
            limits,
            &s,
            |_| Err("busy"),
            |_, n| Some(exponential(100 * MS, 150 * MS, n)),
        );
        assert_eq!(
            r,
            Err(GaveUp {
                error: "busy",
                attempts: 3
            })
        );
        assert_eq!(*s.0.borrow(), [100 * MS, 150 * MS]);

        let s = Recorder::default();
        let limits = Limits {
            max_attempts: u32::MAX,
            budget: 350 * MS,
        };
        let r: Result<(), _> = retry(
            limits,
            &s,
            |_| Err(()),
            |_, n| Some(exponential(100 * MS, Duration::from_secs(1), n)),
        );
        // 100 + 200 ms fit in 350 ms; the next 400 ms does not.
        assert_eq!(r.unwrap_err().attempts, 3);
        assert_eq!(s.0.borrow().len(), 2);

        let s = Recorder::default();
        let r: Result<(), _> = retry(limits, &s, |_| Err("forbidden"), |_, _| None);
        assert_eq!(r.unwrap_err().attempts, 1);
        assert!(s.0.borrow().is_empty());
    }

    #[test]
    fn succeeds_after_retries() {
        let s = Recorder::default();
        let limits = Limits {
            max_attempts: 5,
            budget: Duration::from_secs(1),
        };
        let got = retry(
            limits,
            &s,
            |n| if n < 3 { Err(()) } else { Ok(n) },
            |_, _| Some(MS),
        );
        assert_eq!(got, Ok(3));
    }
}
