//! CI's short fuzz run: for every target, replay its seed corpus and every
//! saved regression input, then run a bounded number of mutations with a
//! fixed seed (a few seconds per target). Any panic fails the test and
//! prints the input.

use std::time::Duration;

use plexus_fuzz::driver::{load_corpus, run, Budget};
use plexus_fuzz::fuzz_dir;
use plexus_fuzz::targets::{find, TARGETS};
use rstest::rstest;

fn short(name: &str) {
    let target = find(name).unwrap_or_else(|| panic!("no fuzz target {name}"));
    let mut corpus = load_corpus(&fuzz_dir().join("corpus").join(name));
    assert!(!corpus.is_empty(), "fuzz/corpus/{name} has no seed files");
    corpus.extend(load_corpus(&fuzz_dir().join("regressions").join(name)));
    let budget = Budget {
        time: Duration::from_secs(3),
        max_execs: 20_000,
        hang: Duration::from_secs(5),
        seed: 0x5eed,
    };
    let out = std::env::temp_dir().join(format!("plexus-fuzz-hangs-{}", std::process::id()));
    let report = run(target, &corpus, &budget, &out);
    let shown: Vec<String> = report
        .panics
        .iter()
        .map(|p| String::from_utf8_lossy(p).chars().take(300).collect())
        .collect();
    assert_eq!(
        report.panic_count, 0,
        "{name}: panicking inputs: {shown:#?}"
    );
    assert!(
        report.execs > corpus.len() as u64,
        "{name}: no mutations ran"
    );
}

#[rstest]
fn every_target_has_a_test() {
    assert_eq!(TARGETS.len(), 16, "add the new target to the cases below");
}

#[rstest]
#[case("netconf")]
#[case("conflist")]
#[case("cni_result")]
#[case("cni_args")]
#[case("networks_annotation")]
#[case("nad")]
#[case("network_status")]
#[case("kubeconfig")]
#[case("imds")]
#[case("device_info")]
#[case("host_device_record")]
#[case("plexus_cache")]
#[case("node_state")]
#[case("plugin_configs")]
#[case("pod_resources")]
#[case("device_plugin")]
fn fuzz_short(#[case] name: &str) {
    short(name);
}
