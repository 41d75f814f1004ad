//! Long fuzz campaigns: `plexus-fuzz <target|all> [--seconds N] [--seed S]
//! [--hang-ms M] [--out DIR]`. Prints one line per target; exits 1 when any
//! input panicked (inputs saved under `--out`), 3 on a hang.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use plexus_fuzz::driver::{load_corpus, run, Budget};
use plexus_fuzz::targets::{find, Target, TARGETS};

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let which = args.next().context(
        "usage: plexus-fuzz <target|all> [--seconds N] [--seed S] [--hang-ms M] [--out DIR]",
    )?;
    let mut budget = Budget {
        time: Duration::from_secs(10),
        max_execs: u64::MAX,
        hang: Duration::from_secs(5),
        seed: 1,
    };
    let mut out = PathBuf::from("target/fuzz-findings");
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--seconds" => budget.time = Duration::from_secs(value.parse()?),
            "--seed" => budget.seed = value.parse()?,
            "--hang-ms" => budget.hang = Duration::from_millis(value.parse()?),
            "--out" => out = PathBuf::from(value),
            other => bail!("unknown flag {other}"),
        }
    }
    let targets: Vec<Target> = if which == "all" {
        TARGETS.to_vec()
    } else {
        vec![find(&which).with_context(|| format!("no target {which}"))?]
    };
    let mut failed = false;
    for t in targets {
        let corpus = load_corpus(&plexus_fuzz::fuzz_dir().join("corpus").join(t.name));
        let report = run(t, &corpus, &budget, &out);
        eprintln!(
            "target={} execs={} panics={} slowest_ms={} max_rss_kib={} corpus={}",
            t.name,
            report.execs,
            report.panic_count,
            report.slowest.as_millis(),
            report.max_rss_kib,
            corpus.len()
        );
        for (i, input) in report.panics.iter().enumerate() {
            std::fs::create_dir_all(&out)?;
            let path = out.join(format!("panic-{}-{i}", t.name));
            std::fs::write(&path, input)?;
            eprintln!("  panicking input saved to {}", path.display());
        }
        failed |= report.panic_count > 0;
    }
    if failed {
        std::process::exit(1);
    }
    Ok(())
}
