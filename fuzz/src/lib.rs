//! Fuzzing of every parser Plexus runs on outside input, on stable Rust.
//!
//! libFuzzer (`cargo fuzz`) needs nightly for its sanitizer flags and
//! `bolero` falls back to the same coverage-less random loop on stable while
//! pulling in a dozen crates; `proptest` generates values from strategies,
//! which suits typed APIs but not byte and text parsers whose interesting
//! inputs are near-misses of real files. So the driver here is a small
//! coverage-less mutation loop over checked-in seed files (`corpus/<target>`),
//! with `fastrand` (already in the tree through `tempfile`) as its PRNG:
//! deterministic per seed, no new dependency.
//!
//! * [`targets`]: one entry point per parser.
//! * [`mutate`]: byte and token mutations.
//! * [`driver`]: the run loop, panic capture, hang watchdog, peak RSS.
//!
//! `tests/fuzz_short.rs` replays the corpus and `regressions/` and runs each
//! target for a bounded number of executions in CI; the `plexus-fuzz` binary
//! runs long campaigns (docs/reliability.md).

pub mod driver;
pub mod mutate;
pub mod targets;

use std::path::PathBuf;

/// `fuzz/` in the source tree (corpus and regressions live there).
pub fn fuzz_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}
