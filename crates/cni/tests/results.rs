//! Golden result fixtures: every version parses and re-renders byte-for-byte
//! equal JSON, and conversions between versions match the fixtures.

use plexus_cni::CniResult;
use rstest::rstest;
use serde_json::Value;

const ALL: &[&str] = &[
    "0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0",
];

fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/{name}.json", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn result_fixture(version: &str) -> Value {
    fixture(&format!("result-{version}"))
}

#[rstest]
fn same_version_round_trip(
    #[values("0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")] v: &str,
) {
    let golden = result_fixture(v);
    let parsed = CniResult::from_json(&golden).unwrap();
    assert_eq!(parsed.to_json(v).unwrap(), golden);
}

#[rstest]
fn down_from_1_1_matches_every_fixture(
    #[values("0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")] to: &str,
) {
    let converted = CniResult::convert(&result_fixture("1.1.0"), to).unwrap();
    assert_eq!(converted, result_fixture(to));
}

#[rstest]
fn every_pair_converts_and_comes_back(
    #[values("0.1.0", "0.2.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")] from: &str,
) {
    for to in ALL {
        let up = CniResult::convert(&result_fixture(from), to).unwrap();
        assert_eq!(up["cniVersion"], *to);
        let back = CniResult::convert(&up, from).unwrap();
        // Going through 0.x loses interfaces and 1.1 fields, so compare
        // against the fixture reduced to the poorer of the two versions.
        let poorer = if version_rank(to) < version_rank(from) {
            to
        } else {
            &from
        };
        let expected = CniResult::convert(&result_fixture(poorer), from).unwrap();
        assert_eq!(back, expected, "{from} -> {to} -> {from}");
    }
}

fn version_rank(v: &str) -> usize {
    ALL.iter().position(|x| *x == v).unwrap_or(usize::MAX)
}

#[rstest]
fn up_from_0_2_matches_fixture() {
    let up = CniResult::convert(&result_fixture("0.2.0"), "1.0.0").unwrap();
    assert_eq!(up, fixture("result-0.2.0-as-1.0.0"));
}

#[rstest]
fn modern_versions_only_differ_in_version_field(#[values("0.3.0", "0.3.1", "0.4.0")] v: &str) {
    let up = CniResult::convert(&result_fixture(v), "1.0.0").unwrap();
    assert_eq!(up, result_fixture("1.0.0"));
}
