//! Unit tests of the report: splicing blocks into `BENCHMARKS.md` and the
//! rendered tables and verdicts (apart from the rendering code, to keep
//! each file short).

use super::*;

fn s(median: f64) -> Summary {
    Summary {
        n: 10,
        p10: median - 1.0,
        median,
        p90: median + 1.0,
    }
}

fn row(label: &str, add: f64, del: f64, cpu: f64) -> CycleRow {
    let c = add + del;
    CycleRow {
        label: label.to_owned(),
        add: s(add),
        del: s(del),
        cycle: s(c),
        cpu: s(cpu),
        cycle_ms: vec![c - 1.0, c - 0.5, c, c + 0.5, c + 1.0],
        cpu_ms: vec![cpu - 0.1, cpu, cpu, cpu, cpu + 0.1],
    }
}

const BEGIN: &str = PLUGINS.begin;
const END: &str = PLUGINS.end;

#[test]
fn splice_replaces_only_the_block() {
    let doc = format!("# T\n\nintro\n\n{BEGIN}\nold\n{END}\n\n## analysis\nkept\n");
    let out = splice(&doc, &PLUGINS, "new\n");
    assert_eq!(
        out,
        format!("# T\n\nintro\n\n{BEGIN}\nnew\n{END}\n\n## analysis\nkept\n")
    );
    assert_eq!(splice(&out, &PLUGINS, "new"), out, "idempotent");
}

#[test]
fn splice_appends_without_markers() {
    assert_eq!(
        splice("# T\n", &PLUGINS, "x"),
        format!("# T\n\n{BEGIN}\nx\n{END}\n")
    );
}

#[test]
fn node_block_goes_before_the_meta_section_and_leaves_it_alone() {
    let meta = "## plexus meta plugin\n\nmeta results\n";
    let doc = format!("# T\n\n{BEGIN}\nplugins\n{END}\n\nanalysis\n\n{meta}");
    let out = splice(&doc, &NODE, "node\n");
    let (nb, ne) = (NODE.begin, NODE.end);
    assert_eq!(
        out,
        format!(
            "# T\n\n{BEGIN}\nplugins\n{END}\n\nanalysis\n\n\
             ## vnic IPAM and the node agent\n\n{nb}\nnode\n{ne}\n\n{meta}"
        )
    );
    let again = splice(&out, &NODE, "node 2");
    assert!(
        again.ends_with(&format!("{nb}\nnode 2\n{ne}\n\n{meta}")),
        "{again}"
    );
    assert_eq!(
        splice(&again, &PLUGINS, "plugins"),
        again,
        "blocks independent"
    );
    // Without the meta section: appended.
    assert!(splice("# T\n", &NODE, "n").ends_with(&format!("agent\n\n{nb}\nn\n{ne}\n")));
}

#[test]
fn node_sections_render_targets() {
    let report = Report {
        vnic: vec![
            VnicRow {
                label: "ours vnic, state file".into(),
                time: s(1.5),
                rss_kib: Some(3072),
            },
            VnicRow {
                label: "ours static".into(),
                time: s(1.2),
                rss_kib: None,
            },
            VnicRow {
                label: "/bin/true".into(),
                time: s(0.5),
                rss_kib: None,
            },
        ],
        agent: Some(AgentRss {
            idle_kib: 8 * 1024,
            reconcile_kib: 9 * 1024,
            hwm_kib: 21 * 1024,
            ..AgentRss::default()
        }),
        ..Report::default()
    };
    assert_eq!(report.markdown(), None);
    let md = report.node_markdown().unwrap_or_default();
    assert!(
        md.contains("| ours vnic, state file | 1.50 ms | 0.50–2.50 ms | +1.00 ms | 3.0 MiB |"),
        "{md}"
    );
    assert!(md.contains(
        "1.50 ms median, spawn included (target ≤ 2 ms: met); +0.30 ms against `static`"
    ));
    assert!(md.contains("| peak over the whole run (`VmHWM`) | **21.0 MiB** |"));
    assert!(md.contains("Agent idle 8.0 MiB, peak 21.0 MiB (target ≤ 20.0 MiB: **not met**)."));
}

#[test]
fn cycle_table_reports_distance_to_floor() {
    let report = Report {
        command: "plexus-bench".into(),
        cycles: 200,
        warmup: 5,
        plugin_rows: vec![
            row("ours", 21.0, 20.0, 3.0),
            row("reference", 25.0, 22.0, 9.0),
            row("kernel floor", 20.0, 19.5, 0.5),
        ],
        ..Report::default()
    };
    let md = report.markdown().unwrap_or_default();
    assert!(
        md.contains(
            "| ours | 21.0 ms | 20.0 ms | **41.0 ms** | 40.0–42.0 ms | +1.5 ms | – | 3.00 ms | +2.50 ms | – |"
        ),
        "{md}"
    );
    assert!(md.contains(
        "| kernel floor | 20.0 ms | 19.5 ms | **39.5 ms** | 38.5–40.5 ms | – | – | 0.50 ms | – | – |"
    ));
    // Without a program floor the target is judged on the in-process one.
    assert!(
        md.contains("Ours above the in-process floor (target"),
        "{md}"
    );
    // The wall interval straddles 2 ms; CPU is clearly above it.
    assert!(md.contains("wall +1.5 ms (90 % CI "), "{md}");
    assert!(
        md.contains(": within noise; CPU +2.50 ms (90 % CI "),
        "{md}"
    );
    assert!(md.contains("): **not met** — the CPU figure"), "{md}");
    assert!(md.contains("The reference: wall +7.5 ms, CPU +8.50 ms."));
    assert!(md.contains("0.87×"));
}

#[test]
fn target_is_judged_against_the_program_floor() {
    let report = Report {
        plugin_rows: vec![
            row("ours", 21.0, 20.0, 3.0),
            row("reference", 25.0, 22.0, 9.0),
            row("kernel floor: move in + back", 20.0, 19.5, 0.5),
            row("kernel floor as a program: 2 starts", 20.5, 20.0, 1.5),
        ],
        ..Report::default()
    };
    let md = report.markdown().unwrap_or_default();
    assert!(
        md.contains(
            "| **41.0 ms** | 40.0–42.0 ms | +1.5 ms | +0.5 ms | 3.00 ms | +2.50 ms | +1.50 ms |"
        ),
        "{md}"
    );
    // The program floor against the in-process one: two process starts.
    assert!(
        md.contains("| **40.5 ms** | 39.5–41.5 ms | +1.0 ms | – | 1.50 ms | +1.00 ms | – |"),
        "{md}"
    );
    assert!(
        md.contains("Ours above the program floor (same number of process starts as a plugin) (target ≤ 2 ms): wall +0.5 ms"),
        "{md}"
    );
    assert!(md.contains("CPU +1.50 ms (90 % CI "), "{md}");
    assert!(md.contains("): met — the CPU figure"), "{md}");
    assert!(
        md.contains("Above the in-process floor (no process start at all): ours wall +1.5 ms"),
        "{md}"
    );
}

#[test]
fn below_the_floor_prints_a_true_minus() {
    let report = Report {
        plugin_rows: vec![
            row("ours", 19.0, 19.0, 1.0),
            row("reference", 25.0, 22.0, 9.0),
            row("kernel floor", 20.0, 20.6, 0.5),
        ],
        ..Report::default()
    };
    let md = report.markdown().unwrap_or_default();
    assert!(
        md.contains("| \u{2212}2.6 ms | – | 1.00 ms | +0.50 ms | – |"),
        "{md}"
    );
    assert!(!md.contains("+-"), "{md}");
    assert!(md.contains("wall \u{2212}2.6 ms (90 % CI "), "{md}");
}

#[test]
fn startup_and_rss_verdicts() {
    let report = Report {
        version_runs: 300,
        startup: vec![
            ("ours host-device".into(), s(2.5)),
            ("/bin/true".into(), s(0.7)),
        ],
        rss: vec![RssRow {
            label: "ours host-device".into(),
            version: 2048,
            add: Some(4096),
            del: None,
        }],
        ..Report::default()
    };
    let md = report.markdown().unwrap_or_default();
    assert_eq!(report.node_markdown(), None);
    assert!(
        md.contains("| ours host-device | 2.50 ms | 1.50–3.50 ms | +1.80 ms |"),
        "{md}"
    );
    assert!(md.contains("target ≤ 1 ms: **not met**"));
    assert!(md.contains("| ours host-device | 2.0 MiB | 4.0 MiB | – |"));
    assert!(md.contains("Ours, largest peak: 4.0 MiB (target ≤ 8.0 MiB: met)."));
}
