//! `plexus-agent`: CLI of the node agent. Parses flags ([`flags`]), builds
//! the real seams and calls the library ([`commands`] for one-shot runs).

mod commands;
mod flags;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use plexus_agent::daemon::{self, DaemonConfig};
use plexus_agent::deviceplugin::DevicePluginConfig;
use plexus_agent::install::Installer;

use crate::commands::{after_stop, cmd_repair, cmd_status, cmd_uninstall, cmd_vnic};
use crate::flags::{InstallFlags, Paths, RunFlags, UninstallFlags, DEFAULT_READY_FILE};

#[derive(Parser, Debug)]
#[command(name = "plexus-agent", version = plexus_buildinfo::LONG, about = "Plexus node agent")]
struct Cli {
    #[command(flatten)]
    paths: Paths,
    #[command(subcommand)]
    cmd: Cmd,
}

/// Paths and endpoints shared by the subcommands.

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Install binaries, meta config, kubeconfig and token once.
    Install(InstallFlags),
    /// Run the agent: install watch, reconcile loop, device plugin, metrics.
    Run(RunFlags),
    /// Remove Plexus from this node: conflist, binaries, kubeconfig, token,
    /// ready file, VNIC configuration and state file.
    Uninstall(UninstallFlags),
    /// Secondary VNIC host configuration.
    Vnic {
        #[command(subcommand)]
        cmd: VnicCmd,
    },
    /// One row per device: interface, PCI, MAC, VNIC, IP, where it is now.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Rename stranded VFs back, restore them, collect dead pods' records.
    Repair {
        #[arg(long)]
        json: bool,
    },
    /// Exit 0 when install completed (the ready file exists), 1 otherwise:
    /// the readiness probe, since the image has no shell for `test -f`.
    Ready {
        #[arg(long, env = "PLEXUS_READY_FILE", default_value = DEFAULT_READY_FILE)]
        ready_file: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
enum VnicCmd {
    /// Show what apply would change; changes nothing.
    Plan {
        #[arg(long)]
        json: bool,
    },
    /// Configure secondary VNICs (idempotent) and write the node state file.
    Apply {
        #[arg(long)]
        json: bool,
    },
    /// Remove exactly what apply added.
    Deconfigure {
        #[arg(long)]
        json: bool,
    },
}

fn cmd_run(paths: &Paths, f: &RunFlags) -> Result<()> {
    let install = if f.no_install {
        None
    } else {
        let inst = Installer::new(paths.install(&f.install)?);
        // Nothing changes on a node the agent cannot see (mounts missing).
        inst.preflight()?;
        inst.begin()?;
        Some(inst)
    };
    let metrics_addr: Option<SocketAddr> = if f.metrics_addr.is_empty() {
        None
    } else {
        Some(f.metrics_addr.parse().context("--metrics-addr")?)
    };
    let cfg = DaemonConfig {
        reconcile: paths.reconcile()?,
        imds: paths.imds(),
        netns: paths.netns(),
        install: install.clone(),
        device_plugin: (!f.no_device_plugin).then(|| {
            let mut dp = DevicePluginConfig::new(&f.resource_name, paths.device_plugin_dir(f));
            dp.devinfo_dir =
                (!f.device_info_dir.is_empty()).then(|| PathBuf::from(&f.device_info_dir));
            dp
        }),
        metrics_addr,
        interval: Duration::from_secs(f.interval.max(1)),
        install_interval: Duration::from_secs(f.install_interval.max(1)),
    };
    tracing::info!(?cfg, "starting");
    daemon::run(cfg, Arc::new(AtomicBool::new(false)))?;
    match &install {
        Some(inst) => after_stop(paths, f, inst.config()),
        None => Ok(()),
    }
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let cli = Cli::parse();
    match &cli.cmd {
        Cmd::Install(f) => {
            let inst = Installer::new(cli.paths.install(f)?);
            inst.preflight()?;
            inst.begin()?;
            let r = inst.sync()?;
            tracing::info!(?r, "installed");
            Ok(())
        }
        Cmd::Run(f) => cmd_run(&cli.paths, f),
        Cmd::Uninstall(f) => cmd_uninstall(&cli.paths, f),
        Cmd::Vnic { cmd } => cmd_vnic(&cli.paths, cmd),
        Cmd::Status { json } => cmd_status(&cli.paths, *json),
        Cmd::Repair { json } => cmd_repair(&cli.paths, *json),
        Cmd::Ready { ready_file } => {
            if !ready_file.is_file() {
                anyhow::bail!("not ready: {} does not exist", ready_file.display());
            }
            Ok(())
        }
    }
}
