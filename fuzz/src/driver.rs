//! The run loop: pick a corpus entry, mutate it, feed it to the target under
//! `catch_unwind`, and keep score (executions, panics, slowest input). A
//! watchdog thread ends the process with the offending input saved when one
//! execution outlives the hang limit, since a looping parser never returns
//! to be caught.

use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fastrand::Rng;

use crate::mutate::mutate;
use crate::targets::Target;

/// How long and how hard to run one target.
#[derive(Debug, Clone)]
pub struct Budget {
    /// Wall-clock time for the mutation loop.
    pub time: Duration,
    /// Stop earlier after this many executions.
    pub max_execs: u64,
    /// One execution longer than this is a hang.
    pub hang: Duration,
    /// PRNG seed: the same seed and corpus replay the same inputs.
    pub seed: u64,
}

/// What a run found.
#[derive(Debug, Default)]
pub struct Report {
    /// Inputs executed (corpus replay included).
    pub execs: u64,
    /// Inputs that panicked (the first few kept).
    pub panics: Vec<Vec<u8>>,
    /// Number of panicking inputs.
    pub panic_count: u64,
    /// The slowest single execution.
    pub slowest: Duration,
    /// Peak resident memory of the process, in KiB (`VmHWM`).
    pub max_rss_kib: u64,
}

/// Reads every file of `dir` (missing dir: empty corpus), sorted by name.
pub fn load_corpus(dir: &Path) -> Vec<Vec<u8>> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    paths.iter().filter_map(|p| std::fs::read(p).ok()).collect()
}

/// Runs `target` over `corpus` (each entry once, unmutated) and then over
/// mutations until the budget is spent. Hangs end the process (exit 3)
/// after writing the input to `hang_dir`.
pub fn run(target: Target, corpus: &[Vec<u8>], budget: &Budget, hang_dir: &Path) -> Report {
    let current = Arc::new(Mutex::new(Vec::<u8>::new()));
    let started_ms = Arc::new(AtomicU64::new(u64::MAX));
    let done = Arc::new(AtomicBool::new(false));
    let clock = Instant::now();
    let watchdog = spawn_watchdog(
        target.name,
        Arc::clone(&current),
        Arc::clone(&started_ms),
        Arc::clone(&done),
        clock,
        budget.hang,
        hang_dir.to_path_buf(),
    );
    let previous_hook = panic::take_hook();
    panic::set_hook(Box::new(|_| {}));
    let mut report = Report::default();
    let mut rng = Rng::with_seed(budget.seed);
    let empty: Vec<u8> = Vec::new();
    let exec = |input: Vec<u8>, report: &mut Report| {
        if let Ok(mut c) = current.lock() {
            c.clone_from(&input);
        }
        let t0 = Instant::now();
        started_ms.store(elapsed_ms(clock), Ordering::SeqCst);
        let outcome = panic::catch_unwind(AssertUnwindSafe(|| (target.run)(&input)));
        started_ms.store(u64::MAX, Ordering::SeqCst);
        report.slowest = report.slowest.max(t0.elapsed());
        report.execs += 1;
        if outcome.is_err() {
            report.panic_count += 1;
            if report.panics.len() < 16 {
                report.panics.push(input);
            }
        }
    };
    for seed in corpus {
        exec(seed.clone(), &mut report);
    }
    let deadline = Instant::now() + budget.time;
    while report.execs < budget.max_execs && Instant::now() < deadline {
        let base = pick(&mut rng, corpus).unwrap_or(&empty);
        let other = pick(&mut rng, corpus).unwrap_or(&empty);
        exec(mutate(&mut rng, base, other), &mut report);
    }
    panic::set_hook(previous_hook);
    done.store(true, Ordering::SeqCst);
    let _ = watchdog.join();
    report.max_rss_kib = max_rss_kib();
    report
}

fn pick<'a>(rng: &mut Rng, corpus: &'a [Vec<u8>]) -> Option<&'a Vec<u8>> {
    (!corpus.is_empty()).then(|| &corpus[rng.usize(0..corpus.len())])
}

fn elapsed_ms(clock: Instant) -> u64 {
    u64::try_from(clock.elapsed().as_millis()).unwrap_or(u64::MAX - 1)
}

fn spawn_watchdog(
    name: &'static str,
    current: Arc<Mutex<Vec<u8>>>,
    started_ms: Arc<AtomicU64>,
    done: Arc<AtomicBool>,
    clock: Instant,
    hang: Duration,
    hang_dir: PathBuf,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let limit = u64::try_from(hang.as_millis()).unwrap_or(u64::MAX);
        while !done.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(50));
            let start = started_ms.load(Ordering::SeqCst);
            if start != u64::MAX && elapsed_ms(clock).saturating_sub(start) > limit {
                let input = current.lock().map(|c| c.clone()).unwrap_or_default();
                let path = hang_dir.join(format!("hang-{name}-{}", std::process::id()));
                let _ = std::fs::create_dir_all(&hang_dir);
                let _ = std::fs::write(&path, &input);
                eprintln!("HANG in target {name}: input saved to {}", path.display());
                std::process::exit(3);
            }
        }
    })
}

/// Peak resident set of this process (`VmHWM` in /proc/self/status), KiB.
pub fn max_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}
