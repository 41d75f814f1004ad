//! The one-shot subcommands: each builds its seams from the flags, calls the
//! library and prints the result (the only stdout of the agent).

use anyhow::{bail, Context, Result};
use plexus_agent::install::InstallConfig;
use plexus_agent::inventory;
use plexus_agent::metrics::Metrics;
use plexus_agent::reconcile;
use plexus_agent::repair::{apply_repair, known_vfs, plan_repair, RepairOps};
use plexus_agent::status;
use plexus_agent::uninstall::{self, Verdict};
use plexus_agent::vnic::{self, Mode};
use plexus_imds::node_state::NodeState;

use crate::flags::{Paths, RunFlags, UninstallFlags};
use crate::VnicCmd;

/// The one place that writes to stdout: command results (tables, JSON).
#[allow(clippy::print_stdout)]
pub(crate) fn emit(text: &str) {
    print!("{text}");
    if !text.ends_with('\n') {
        println!();
    }
}

fn json<T: serde::Serialize>(v: &T) -> Result<String> {
    Ok(serde_json::to_string_pretty(v)?)
}

/// `vnic apply`: configure, then write the state file as `run` does.
pub(crate) fn cmd_vnic_apply(paths: &Paths, as_json: bool) -> Result<()> {
    let cfg = paths.reconcile()?;
    let imds = paths.metadata();
    let ops = paths.netlink()?;
    let r = reconcile::apply_once(&cfg, imds.as_ref(), &ops, &Metrics::new())?;
    let written = r.state.as_ref().ok().copied();
    if as_json {
        emit(&json(&serde_json::json!({
            "plan": r.plan,
            "applied": r.applied.applied.len(),
            "failed": r.applied.failed.iter().map(|(a, e)| serde_json::json!({"action": a, "error": e})).collect::<Vec<_>>(),
            "state_file": {
                "path": cfg.state_path,
                "written": written,
                "error": r.state.as_ref().err().map(ToString::to_string),
            },
        }))?);
    } else {
        emit(&r.plan.render_table());
        emit(&format!(
            "applied {} action(s), {} failed",
            r.applied.applied.len(),
            r.applied.failed.len()
        ));
        emit(&format!(
            "state file {}: {}",
            cfg.state_path.display(),
            match &r.state {
                Ok(true) => "written".to_string(),
                Ok(false) => "unchanged".to_string(),
                Err(e) => format!("write failed: {e}"),
            }
        ));
    }
    r.applied.into_result()?;
    r.state.context("writing the node state file")?;
    Ok(())
}

pub(crate) fn cmd_vnic(paths: &Paths, cmd: &VnicCmd) -> Result<()> {
    let (mode, as_json) = match cmd {
        VnicCmd::Plan { json } => (Mode::Plan, *json),
        VnicCmd::Apply { json } => return cmd_vnic_apply(paths, *json),
        VnicCmd::Deconfigure { json } => (Mode::Deconfigure, *json),
    };
    let imds = paths.metadata();
    let ops = paths.netlink()?;
    let (plan, report) = vnic::run(
        mode,
        &paths.vnic_config(),
        imds.as_ref(),
        &ops,
        &paths.in_pod_macs()?,
    )?;
    if as_json {
        emit(&json(&serde_json::json!({
            "plan": plan,
            "applied": report.applied.len(),
            "failed": report.failed.iter().map(|(a, e)| serde_json::json!({"action": a, "error": e})).collect::<Vec<_>>(),
        }))?);
    } else {
        emit(&plan.render_table());
        if mode != Mode::Plan {
            emit(&format!(
                "applied {} action(s), {} failed",
                report.applied.len(),
                report.failed.len()
            ));
        }
    }
    report.into_result()?;
    Ok(())
}

pub(crate) fn cmd_repair(paths: &Paths, as_json: bool) -> Result<()> {
    let imds = paths.metadata();
    let nics = imds.nics()?;
    let state = NodeState::read(&paths.state_file).ok().flatten();
    let ops = paths.repair_ops()?;
    let links = ops.links().map_err(anyhow::Error::msg)?;
    let caches = paths.caches().read()?;
    let plan = plan_repair(
        &links,
        &known_vfs(&nics, state.as_ref()),
        &caches.host_device_records(),
        &caches.meta_records(),
    );
    let failed = apply_repair(&ops, &plan);
    // Renamed VFs get their host configuration back through the VNIC path.
    let net = paths.netlink()?;
    let (_, restored) = vnic::run(
        Mode::Apply,
        &paths.vnic_config(),
        imds.as_ref(),
        &net,
        &caches.in_pod_macs(),
    )?;
    if as_json {
        emit(&json(&serde_json::json!({
            "repair": plan,
            "failed": failed.iter().map(|(a, e)| serde_json::json!({"action": a, "error": e})).collect::<Vec<_>>(),
            "restored": restored.applied,
        }))?);
    } else {
        for a in &plan.actions {
            emit(&format!("{a:?}"));
        }
        for n in &plan.notes {
            emit(&format!("note: {}: {}", n.link, n.reason));
        }
        emit(&format!(
            "{} repair action(s), {} failed; {} VNIC action(s) to restore",
            plan.actions.len(),
            failed.len(),
            restored.applied.len()
        ));
    }
    if !failed.is_empty() {
        bail!("{} repair action(s) failed", failed.len());
    }
    restored.into_result()?;
    Ok(())
}

pub(crate) fn cmd_status(paths: &Paths, as_json: bool) -> Result<()> {
    let imds = paths.metadata();
    let previous = NodeState::read(&paths.state_file).ok().flatten();
    let inv = inventory::build(
        &paths.host_root()?,
        imds.as_ref(),
        &paths.caches(),
        previous.as_ref(),
    )?;
    let agent = plexus_buildinfo::line("plexus-agent");
    emit(&if as_json {
        status::render_json(&inv, &agent)
    } else {
        status::render_table(&inv, &agent)
    });
    Ok(())
}

/// Takes Plexus off the node (see `plexus_agent::uninstall`).
fn remove_node(paths: &Paths, install: &InstallConfig) -> Result<uninstall::NodeRemoval> {
    let ops = paths.netlink()?;
    let metadata = paths.metadata();
    let r = uninstall::remove_node(&uninstall::Removal {
        install,
        vnic: &paths.vnic_config(),
        state_path: &paths.state_file,
        ops: &ops,
        metadata: metadata.as_ref(),
    })?;
    tracing::info!(?r, "uninstalled");
    Ok(r)
}

pub(crate) fn cmd_uninstall(paths: &Paths, f: &UninstallFlags) -> Result<()> {
    let mut flags = f.install.clone();
    // The uninstall makes no API call.
    flags.api_server.get_or_insert_with(String::new);
    let r = remove_node(paths, &paths.install(&flags)?)?;
    if f.json {
        emit(&json(&r)?);
    }
    let problems = r.problems();
    if !problems.is_empty() {
        bail!("uninstall incomplete: {}", problems.join("; "));
    }
    if let Some(done) = &f.wait_with_done_file {
        std::fs::write(done, b"uninstalled\n").with_context(|| done.display().to_string())?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(async {
            use tokio::signal::unix::{signal, SignalKind};
            signal(SignalKind::terminate())?.recv().await;
            std::io::Result::Ok(())
        })?;
    }
    Ok(())
}

/// On SIGTERM: uninstall only when the API says our DaemonSet is going.
pub(crate) fn after_stop(paths: &Paths, f: &RunFlags, install: &InstallConfig) -> Result<()> {
    let (Some(name), Some(ns)) = (&f.daemonset, &f.namespace) else {
        return Ok(());
    };
    let api = uninstall::owner_api(install);
    match uninstall::decide(&api, ns, name) {
        Verdict::Keep(why) => tracing::info!(%why, "stopping; node keeps Plexus"),
        Verdict::Remove(why) => {
            tracing::warn!(%why, "DaemonSet is being removed; uninstalling from this node");
            let problems = remove_node(paths, install)?.problems();
            if !problems.is_empty() {
                bail!("uninstall incomplete: {}", problems.join("; "));
            }
        }
    }
    Ok(())
}
