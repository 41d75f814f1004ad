//! plexus-bench: our host-device + static against the reference Go plugins
//! and against the kernel floor, side by side in one run; VERSION start-up
//! and peak RSS per plugin; `vnic` IPAM ADD latency (state file vs IMDS
//! fallback vs `static`) and `plexus-agent` memory at idle and through
//! reconciles. Prints a markdown report and, with `--write`, splices it into
//! `BENCHMARKS.md`.
//!
//! Runs as root: it creates its own namespaces (never touching the host's)
//! and runs every plugin inside the "node" namespace, as the kubelet's
//! runtime would run them on a node; the agent runs inside a namespace of
//! its own.
// A benchmark's report is its output: printing to stdout is the point here.
#![allow(clippy::print_stdout)]

mod agent;
mod report;
mod rig;
mod startup;
mod stats;
mod vnic;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use clap::{Parser, ValueEnum};
use plexus_testkit::net::{bin_dir, require_root, CniCall, REFERENCE_DIR};

use report::{CycleRow, Report, RssRow, VnicRow};
use rig::{CycleTimes, FloorVariant, Rig};
use stats::Summary;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Section {
    /// ADD+DEL of ours vs reference vs the kernel floor.
    Cycles,
    /// The floor with the changes a plugin could make (down, rename, alias).
    Variants,
    /// VERSION spawn-to-exit time.
    Startup,
    /// Peak RSS per plugin process.
    Rss,
    /// An unrelated netlink change while VF moves are running (RTNL).
    Rtnl,
    /// `vnic` IPAM ADD: state file, IMDS fallback, `static`, `/bin/true`.
    Vnic,
    /// `plexus-agent run` memory at idle and through reconciles.
    Agent,
}

#[derive(Debug, Parser)]
#[command(name = "plexus-bench", version = plexus_buildinfo::LONG, about = "Side-by-side benchmarks of Plexus' CNI plugins (run as root)")]
struct Args {
    /// Measured ADD+DEL cycles per series.
    #[arg(long, default_value_t = 200)]
    cycles: usize,
    /// Unmeasured cycles (and VERSION rounds) first.
    #[arg(long, default_value_t = 10)]
    warmup: usize,
    /// VERSION runs per binary.
    #[arg(long, default_value_t = 300)]
    version_runs: usize,
    /// IPAM ADD runs per series of the `vnic` section.
    #[arg(long, default_value_t = 300)]
    vnic_runs: usize,
    /// Our plugins (default: the directory of this binary, i.e. target/release
    /// when built with `cargo build --release`).
    #[arg(long)]
    ours: Option<PathBuf>,
    /// The reference plugins.
    #[arg(long, default_value = REFERENCE_DIR)]
    reference: PathBuf,
    /// Sections to run (default: all).
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<Section>,
    /// Also splice the report into this markdown file (e.g. BENCHMARKS.md).
    #[arg(long)]
    write: Option<PathBuf>,
}

const PLUGINS: [&str; 2] = ["host-device", "static"];

fn main() -> Result<()> {
    if std::env::args().nth(1).as_deref() == Some(startup::PROBE_ARG) {
        println!("{}", startup::probe_main()?);
        return Ok(());
    }
    let args = Args::parse();
    require_root();
    let ours = args.ours.clone().unwrap_or_else(bin_dir);
    let wants = |s: Section| args.only.is_empty() || args.only.contains(&s);
    // The floor variants need no plugin at all.
    let needs_plugins = [Section::Cycles, Section::Startup, Section::Rss]
        .into_iter()
        .any(wants);
    let dirs = if needs_plugins {
        vec![&ours, &args.reference]
    } else {
        Vec::new()
    };
    let mut needed: Vec<PathBuf> = dirs
        .into_iter()
        .flat_map(|d| PLUGINS.map(|p| d.join(p)))
        .collect();
    if wants(Section::Cycles) {
        needed.push(mover());
    }
    if wants(Section::Vnic) {
        needed.extend(["vnic", "static"].map(|p| ours.join(p)));
    }
    if wants(Section::Agent) {
        needed.push(ours.join("plexus-agent"));
    }
    if let Some(missing) = needed.iter().find(|p| !p.is_file()) {
        bail!(
            "{} missing: run `{BUILD}` (or apt-get install containernetworking-plugins \
             for the reference)",
            missing.display()
        );
    }
    if !needed.is_empty() && !ours.ends_with("release") {
        eprintln!(
            "warning: our plugins come from {}, not a release build",
            ours.display()
        );
    }

    let mut report = Report {
        command: reproduce_command(),
        environment: environment(&ours, &args.reference),
        cycles: args.cycles,
        warmup: args.warmup,
        version_runs: args.version_runs,
        ..Report::default()
    };

    let rig = Rig::new()?;
    // Every plugin runs from the node namespace, like on a real node.
    plexus_netns::run_in(rig.node_ns(), || -> Result<()> {
        if wants(Section::Cycles) {
            report.plugin_rows = measure_cycles(&rig, &args, &ours)?;
        }
        if wants(Section::Variants) {
            report.variant_rows = measure_variants(&rig, &args)?;
        }
        if wants(Section::Rtnl) {
            eprintln!(
                "rtnl: {} probes idle, {} during moves",
                args.cycles, args.cycles
            );
            let (idle, busy) = rig::rtnl_stall(args.cycles)?;
            report.rtnl = Some((Summary::of(&idle), Summary::of(&busy)));
        }
        if wants(Section::Startup) {
            report.startup = measure_startup(&args, &ours)?;
        }
        if wants(Section::Rss) {
            report.rss = measure_rss(&rig, &ours, &args.reference)?;
        }
        if wants(Section::Vnic) {
            report.vnic = measure_vnic(&args, &ours, &rig.pod_path())?;
        }
        Ok(())
    })??;
    if wants(Section::Agent) {
        eprintln!("agent: plexus-agent run in a test namespace, ~15 s");
        report.agent = Some(agent::measure(&ours.join("plexus-agent"))?);
    }

    let blocks = [
        (report::PLUGINS, report.markdown()),
        (report::NODE, report.node_markdown()),
    ];
    let mut existing = match &args.write {
        Some(path) => std::fs::read_to_string(path).unwrap_or_default(),
        None => String::new(),
    };
    for (block, md) in &blocks {
        if let Some(md) = md {
            println!("{md}");
            existing = report::splice(&existing, block, md);
        }
    }
    if let Some(path) = &args.write {
        std::fs::write(path, existing).with_context(|| format!("write {}", path.display()))?;
        eprintln!("updated {}", path.display());
    }
    Ok(())
}

fn row(label: &str, times: &[CycleTimes]) -> CycleRow {
    let pick = |f: fn(&CycleTimes) -> std::time::Duration| {
        Summary::of(&times.iter().map(f).collect::<Vec<_>>())
    };
    let ms = |f: fn(&CycleTimes) -> std::time::Duration| -> Vec<f64> {
        times.iter().map(|t| f(t).as_secs_f64() * 1e3).collect()
    };
    CycleRow {
        label: label.to_owned(),
        add: pick(|t| t.add),
        del: pick(|t| t.del),
        cycle: pick(|t| t.total()),
        cpu: pick(|t| t.cpu),
        cycle_ms: ms(|t| t.total()),
        cpu_ms: ms(|t| t.cpu),
    }
}

/// The floor as a program (`plexus-bench-move`), next to this binary.
fn mover() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(|d| d.join("plexus-bench-move")))
        .unwrap_or_else(|| bin_dir().join("plexus-bench-move"))
}

/// Ours, the reference, the in-process floor and the floor as a program,
/// one cycle of each per round, the order rotated every round so no series
/// always follows the same one.
fn measure_cycles(rig: &Rig, args: &Args, ours: &Path) -> Result<Vec<CycleRow>> {
    let mut series: [Vec<CycleTimes>; 4] = Default::default();
    let total = args.warmup + args.cycles;
    let mover = mover();
    for round in 0..total {
        for k in 0..4 {
            let which = (round + k) % 4;
            let t = match which {
                0 => rig.plugin_cycle(ours)?,
                1 => rig.plugin_cycle(&args.reference)?,
                2 => rig.floor_cycle(FloorVariant::Move)?,
                _ => rig.program_floor_cycle(&mover)?,
            };
            if round >= args.warmup {
                series[which].push(t);
            }
        }
        progress("cycles", round + 1, total);
    }
    Ok(vec![
        row("ours (release)", &series[0]),
        row(
            &format!("reference ({})", args.reference.display()),
            &series[1],
        ),
        row("kernel floor: move in + back", &series[2]),
        row("kernel floor as a program: 2 starts", &series[3]),
    ])
}

fn measure_variants(rig: &Rig, args: &Args) -> Result<Vec<CycleRow>> {
    let mut series: Vec<Vec<CycleTimes>> = vec![Vec::new(); FloorVariant::ALL.len()];
    let total = args.warmup + args.cycles;
    let n = FloorVariant::ALL.len();
    for round in 0..total {
        for k in 0..n {
            let which = (round + k) % n;
            let t = rig.floor_cycle(FloorVariant::ALL[which])?;
            if round >= args.warmup {
                series[which].push(t);
            }
        }
        progress("floor variants", round + 1, total);
    }
    Ok(FloorVariant::ALL
        .iter()
        .zip(&series)
        .map(|(v, times)| row(v.label(), times))
        .collect())
}

fn measure_startup(args: &Args, ours: &Path) -> Result<Vec<(String, Summary)>> {
    let mut labelled: Vec<(String, PathBuf)> = Vec::new();
    for p in PLUGINS {
        labelled.push((format!("ours {p}"), ours.join(p)));
    }
    for p in PLUGINS {
        labelled.push((format!("reference {p}"), args.reference.join(p)));
    }
    labelled.push(("/bin/true".to_owned(), PathBuf::from("/bin/true")));
    let bins: Vec<PathBuf> = labelled.iter().map(|(_, b)| b.clone()).collect();
    eprintln!(
        "startup: {} VERSION runs of {} binaries",
        args.version_runs,
        bins.len()
    );
    let samples = startup::version_times(&bins, args.warmup, args.version_runs)?;
    Ok(labelled
        .into_iter()
        .zip(samples)
        .map(|((label, _), s)| (label, Summary::of(&s)))
        .collect())
}

fn measure_rss(rig: &Rig, ours: &Path, reference: &Path) -> Result<Vec<RssRow>> {
    let mut rows = Vec::new();
    for (who, dir) in [("ours", ours), ("reference", reference)] {
        // host-device: a real ADD and DEL on the rig.
        rig.reset()?;
        let add = startup::peak_rss_kib(&rig.call(dir, "ADD"))?;
        let del = startup::peak_rss_kib(&rig.call(dir, "DEL"))?;
        let hd = dir.join("host-device");
        rows.push(RssRow {
            label: format!("{who} host-device"),
            version: startup::peak_rss_kib(&startup::version_call(&hd))?,
            add: Some(add),
            del: Some(del),
        });
        // static alone: the same config, IPAM only touches no kernel state.
        let st = dir.join("static");
        let mut call = rig.call(dir, "ADD");
        call.bin = st.clone();
        let st_add = startup::peak_rss_kib(&call)?;
        let st_del = startup::peak_rss_kib(&call.with_command("DEL"))?;
        rows.push(RssRow {
            label: format!("{who} static"),
            version: startup::peak_rss_kib(&startup::version_call(&st))?,
            add: Some(st_add),
            del: Some(st_del),
        });
    }
    rows.push(RssRow {
        label: "/bin/true".to_owned(),
        version: startup::peak_rss_kib(&CniCall::new("/bin/true", "VERSION"))?,
        add: None,
        del: None,
    });
    Ok(rows)
}

/// `vnic` ADD from the state file and from IMDS, `static` ADD and
/// `/bin/true`, one of each per round in rotating order; then one call each
/// under the RSS helper.
fn measure_vnic(args: &Args, ours: &Path, netns: &Path) -> Result<Vec<VnicRow>> {
    let fx = vnic::VnicFixture::new()?;
    let stat = vnic::VnicFixture::static_call(ours, netns);
    let mut truth = stat.clone();
    truth.bin = PathBuf::from("/bin/true");
    let series = [
        ("ours vnic, state file", fx.state_call(ours, netns)),
        ("ours vnic, IMDS fallback", fx.imds_call(ours, netns)),
        ("ours static", stat),
        ("/bin/true", truth),
    ];
    // Each path does what its label says: the state file never asks IMDS.
    vnic::check_result(&series[0].1.run(), "vnic from the state file")?;
    if fx.imds.request_count() != 0 {
        bail!("vnic asked IMDS although the state file has the VF");
    }
    vnic::check_result(&series[1].1.run(), "vnic from IMDS")?;
    if fx.imds.request_count() == 0 {
        bail!("vnic answered without the state file or IMDS");
    }
    vnic::check_result(&series[2].1.run(), "static")?;
    eprintln!(
        "vnic: {} IPAM ADD runs of {} series",
        args.vnic_runs,
        series.len()
    );
    let calls: Vec<CniCall> = series.iter().map(|(_, c)| c.clone()).collect();
    let samples = startup::spawn_times(&calls, args.warmup, args.vnic_runs)?;
    series
        .iter()
        .zip(samples)
        .map(|((label, call), s)| {
            Ok(VnicRow {
                label: (*label).to_owned(),
                time: Summary::of(&s),
                rss_kib: Some(startup::peak_rss_kib(call)?),
            })
        })
        .collect()
}

fn progress(what: &str, done: usize, total: usize) {
    if done % 50 == 0 || done == total {
        eprintln!("{what}: {done}/{total}");
    }
}

/// Builds everything the default run needs, the way the image is built
/// (static-pie; see the script).
const BUILD: &str = "scripts/build-release.sh";

/// The exact command line, to be quoted in BENCHMARKS.md.
fn reproduce_command() -> String {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut cmd = format!("{BUILD} && sudo target/x86_64-unknown-linux-gnu/release/plexus-bench");
    for a in args {
        cmd.push(' ');
        cmd.push_str(&a);
    }
    cmd
}

/// Kernel, CPUs and reference package version: enough to compare runs.
fn environment(ours: &Path, reference: &Path) -> String {
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "?".to_owned());
    let cpus = std::thread::available_parallelism().map_or(0, usize::from);
    let date = command_line_output("date", &["-u", "+%Y-%m-%d %H:%M UTC"]);
    let debian = command_line_output(
        "dpkg-query",
        &["-W", "-f", "${Version}", "containernetworking-plugins"],
    );
    format!(
        "{date}, kernel {kernel}, {cpus} CPUs; ours from `{}`, reference from `{}` \
         (Debian containernetworking-plugins {debian})",
        ours.display(),
        reference.display()
    )
}

fn command_line_output(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "?".to_owned())
}
