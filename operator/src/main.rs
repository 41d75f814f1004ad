//! `plexus-operator`: builds the real seams (API server client, OCI client
//! with instance-principal or API-key credentials) and runs the leader-
//! elected reconcile loop. Logs go to stderr.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, ValueEnum};
use plexus_netattach::ClientConfig;
use plexus_oci::auth::{CredentialSource, InstancePrincipal, PrincipalConfig};
use plexus_oci::{ApiKeySource, OciClient, Policy};
use plexus_operator::kube::HttpKube;
use plexus_operator::leader::Elector;
use plexus_operator::{Operator, Settings};

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Auth {
    /// The node's identity from IMDS (OCI dynamic group + policy).
    InstancePrincipal,
    /// A user API key from an OCI config file (outside OCI).
    ApiKey,
}

#[derive(Parser, Debug)]
#[command(about = "Attaches OCI secondary VNICs to nodes as VnicPools ask")]
struct Args {
    /// kubeconfig; in-cluster service account when absent.
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "instance-principal")]
    auth: Auth,
    /// OCI config file for --auth api-key.
    #[arg(long, default_value = "~/.oci/config")]
    oci_config: String,
    #[arg(long, default_value = "DEFAULT")]
    oci_profile: String,
    /// Core Services endpoint; default `https://iaas.<region>.oraclecloud.com`.
    #[arg(long, env = "PLEXUS_OCI_ENDPOINT")]
    oci_endpoint: Option<String>,
    /// Auth (federation) endpoint; default `https://auth.<region>.<realm>`.
    #[arg(long, env = "PLEXUS_OCI_AUTH_ENDPOINT")]
    auth_endpoint: Option<String>,
    /// IMDS base URL.
    #[arg(long, default_value = "http://169.254.169.254")]
    imds: String,
    /// Lease namespace and name for leader election.
    #[arg(long, env = "POD_NAMESPACE", default_value = "kube-system")]
    lease_namespace: String,
    #[arg(long, default_value = "plexus-operator")]
    lease_name: String,
    /// This replica's identity in the Lease.
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    #[arg(long, default_value = "15")]
    lease_seconds: u64,
    /// Full resync period, and the faster one while anything is in flight.
    #[arg(long, default_value = "60")]
    resync_seconds: u64,
    #[arg(long, default_value = "3")]
    busy_resync_seconds: u64,
    #[arg(long, default_value = "300")]
    attach_timeout_seconds: u64,
    /// Minimum spacing between OCI calls (client-side rate limit).
    #[arg(long, default_value = "100")]
    oci_min_interval_ms: u64,
}

fn credentials(args: &Args) -> anyhow::Result<Arc<dyn CredentialSource>> {
    Ok(match args.auth {
        Auth::InstancePrincipal => Arc::new(InstancePrincipal::new(PrincipalConfig {
            imds_base: args.imds.clone(),
            auth_base: args.auth_endpoint.clone(),
            ..PrincipalConfig::default()
        })),
        Auth::ApiKey => {
            let home = PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/root".into()));
            let path = match args.oci_config.strip_prefix("~/") {
                Some(rest) => home.join(rest),
                None => PathBuf::from(&args.oci_config),
            };
            Arc::new(ApiKeySource::from_file(&path, &args.oci_profile, &home)?)
        }
    })
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    let config = ClientConfig::from_kubeconfig_or_in_cluster(args.kubeconfig.as_deref())
        .context("Kubernetes client configuration")?;
    let kube = Arc::new(HttpKube::new(config, "plexus-operator")?);
    let creds = credentials(&args)?;
    let endpoint = match &args.oci_endpoint {
        Some(e) => e.clone(),
        None => OciClient::endpoint_for(&creds.region().context("OCI region")?),
    };
    let policy = Policy {
        min_interval: Duration::from_millis(args.oci_min_interval_ms),
        ..Policy::default()
    };
    let compute = Arc::new(OciClient::new(&endpoint, creds, policy));
    let settings = Settings {
        attach_timeout: Duration::from_secs(args.attach_timeout_seconds),
    };
    let operator = Operator::new(kube.clone(), compute, settings);
    let identity = args
        .identity
        .clone()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| format!("plexus-operator-{}", std::process::id()));
    let leading = Arc::new(AtomicBool::new(false));
    let lease = Duration::from_secs(args.lease_seconds);
    {
        let (leading, kube) = (leading.clone(), kube.clone());
        let mut elector = Elector::new(&args.lease_namespace, &args.lease_name, &identity, lease);
        std::thread::Builder::new()
            .name("leader".into())
            .spawn(move || loop {
                let lead = elector.try_lead(kube.as_ref());
                if leading.swap(lead, Ordering::SeqCst) && !lead {
                    // As client-go: a replica that lost the lease stops at once
                    // and is restarted as a fresh candidate.
                    tracing::error!("lost the lease; exiting");
                    std::process::exit(1);
                }
                std::thread::sleep(lease / 3);
            })?;
    }
    tracing::info!(%identity, %endpoint, "plexus-operator started");
    loop {
        let mut wait = Duration::from_secs(1);
        if leading.load(Ordering::SeqCst) {
            wait = match operator.reconcile_all() {
                Ok(true) => Duration::from_secs(args.busy_resync_seconds),
                Ok(false) => Duration::from_secs(args.resync_seconds),
                Err(e) => {
                    tracing::warn!(error = %e, "reconcile pass failed");
                    Duration::from_secs(args.busy_resync_seconds)
                }
            };
        }
        std::thread::sleep(wait);
    }
}
