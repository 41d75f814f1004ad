//! `plexus-agent run`: the DaemonSet's long-running process.
//!
//! One current-thread tokio runtime serves the device plugin; one blocking
//! thread owns the netlink sockets (they are not `Sync`) and runs the
//! install watch (every `install_interval`: binaries, meta config, token)
//! and the reconcile pass (every `interval`), publishing the VF list to the
//! device plugin over a `watch` channel; the metrics endpoint has its own
//! thread. Everything stops on SIGTERM/SIGINT.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use plexus_imds::ClientConfig;
use tokio::sync::watch;

use crate::deviceplugin::{DevicePluginConfig, VfDevice};
use crate::install::{InstallError, Installer};
use crate::metrics::Metrics;
use crate::reconcile::{reconcile_once, ReconcileConfig, Seams};
use crate::repair::NetlinkRepair;
use crate::vnic::{NetlinkOps, VnicError};

/// Everything `run` needs.
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    pub reconcile: ReconcileConfig,
    pub imds: ClientConfig,
    /// Configure inside this namespace instead of the caller's (tests).
    pub netns: Option<PathBuf>,
    pub install: Option<Installer>,
    pub device_plugin: Option<DevicePluginConfig>,
    pub metrics_addr: Option<SocketAddr>,
    pub interval: Duration,
    pub install_interval: Duration,
}

/// Fatal start-up errors; per-pass errors are logged and counted instead.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("metrics endpoint {addr}: {source}")]
    Metrics {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Netlink(#[from] VnicError),
    #[error("tokio runtime: {0}")]
    Runtime(std::io::Error),
}

fn open_netlink(netns: Option<&PathBuf>) -> Result<(NetlinkOps, NetlinkRepair), VnicError> {
    let handle = |ctx: &str| {
        let res = match netns {
            Some(p) => plexus_netns::NetNs::open(p)
                .map_err(|e| e.to_string())
                .and_then(|ns| plexus_netlink::Handle::open_in(&ns).map_err(|e| e.to_string())),
            None => plexus_netlink::Handle::new().map_err(|e| e.to_string()),
        };
        res.map_err(|message| VnicError::Netlink {
            context: ctx.to_string(),
            message,
        })
    };
    let ops = match netns {
        Some(p) => NetlinkOps::in_netns(p)?,
        None => NetlinkOps::host()?,
    };
    Ok((ops, NetlinkRepair::new(handle("open repair socket")?)))
}

/// Install watch + reconcile loop; returns when `stop` is set.
fn control_loop(
    cfg: &DaemonConfig,
    metrics: &Arc<Metrics>,
    devices: &watch::Sender<Vec<VfDevice>>,
    stop: &AtomicBool,
) -> Result<(), DaemonError> {
    let (ops, repair) = open_netlink(cfg.netns.as_ref())?;
    let imds = plexus_imds::connect(cfg.imds.clone(), metrics.clone());
    let seams = Seams {
        metadata: imds.as_ref(),
        metrics,
        net: &ops,
        repair: &repair,
    };
    let mut next_install = Instant::now();
    let mut next_pass = Instant::now();
    while !stop.load(Ordering::SeqCst) {
        let now = Instant::now();
        if let Some(inst) = &cfg.install {
            if now >= next_install {
                next_install = now + cfg.install_interval;
                match inst.sync() {
                    Ok(r) if r.changed() => tracing::info!(?r, "install updated"),
                    Ok(_) => {}
                    Err(InstallError::NoPrimary { dir }) => {
                        // Without a primary our wrapper would break every pod.
                        if inst.remove_conf().unwrap_or(false) {
                            tracing::warn!(dir = %dir.display(), "primary CNI config gone; removed ours until it returns");
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "install sync failed"),
                }
            }
        }
        if now >= next_pass {
            next_pass = now + cfg.interval;
            let started = Instant::now();
            match reconcile_once(&cfg.reconcile, &seams) {
                Ok(r) => {
                    metrics.set_vf_counts(r.counts);
                    if !r.applied.failed.is_empty() || !r.repair_failures.is_empty() {
                        metrics.inc_reconcile_errors();
                    }
                    if !r.applied.applied.is_empty() || !r.repair.is_empty() {
                        tracing::info!(
                            applied = r.applied.applied.len(),
                            failed = r.applied.failed.len(),
                            repaired = r.repair.actions.len(),
                            "reconciled"
                        );
                    }
                    devices.send_if_modified(|d| {
                        let changed = *d != r.devices;
                        if changed {
                            *d = r.devices.clone();
                        }
                        changed
                    });
                    tracing::debug!(elapsed = ?started.elapsed(), "reconcile pass");
                }
                Err(e) => {
                    metrics.inc_reconcile_errors();
                    tracing::warn!(error = %e, "reconcile pass failed; nothing changed");
                }
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(())
}

/// Runs until SIGTERM/SIGINT (or `stop` is set by the caller).
pub fn run(cfg: DaemonConfig, stop: Arc<AtomicBool>) -> Result<(), DaemonError> {
    let metrics = Arc::new(Metrics::new());
    let _metrics_server = match cfg.metrics_addr {
        Some(addr) => Some(
            crate::metrics::serve(addr, metrics.clone())
                .map_err(|source| DaemonError::Metrics { addr, source })?,
        ),
        None => None,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(DaemonError::Runtime)?;
    let (dev_tx, dev_rx) = watch::channel(Vec::new());
    let (stop_tx, stop_rx) = watch::channel(false);
    rt.block_on(async move {
        let plugin = cfg.device_plugin.clone().map(|dp| {
            let rx = stop_rx.clone();
            tokio::spawn(async move {
                if let Err(e) = crate::deviceplugin::serve(dp, dev_rx, rx).await {
                    tracing::error!(error = %e, "device plugin stopped");
                }
            })
        });
        let loop_stop = stop.clone();
        let control =
            tokio::task::spawn_blocking(move || control_loop(&cfg, &metrics, &dev_tx, &loop_stop));
        let signals = async {
            use tokio::signal::unix::{signal, SignalKind};
            match signal(SignalKind::terminate()) {
                Ok(mut term) => {
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = tokio::signal::ctrl_c() => {}
                    }
                }
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        };
        let poll_stop = async {
            while !stop.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        };
        tokio::pin!(control);
        let res = tokio::select! {
            _ = signals => None,
            _ = poll_stop => None,
            r = &mut control => Some(r),
        };
        tracing::info!("shutting down");
        stop.store(true, Ordering::SeqCst);
        let _ = stop_tx.send(true);
        let res = match res {
            Some(r) => r,
            None => control.await,
        };
        if let Some(p) = plugin {
            let _ = p.await;
        }
        match res {
            Ok(r) => r,
            Err(e) => Err(DaemonError::Runtime(std::io::Error::other(e.to_string()))),
        }
    })
}
