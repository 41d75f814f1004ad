//! `fake-kube-apiserver --listen 127.0.0.1:0 --port-file F [--seed F] [--token T] [--latency L]
//! [--tls-cert-file F --tls-private-key-file F]`:
//! serves the fake Kubernetes API until SIGTERM/SIGINT, for the demo,
//! benchmarks and cross-process tests. Writes the bound `host:port` to the
//! port file (atomically) and nothing to stdout.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Parser;
use plexus_testkit::kube::{load_seed, serve_with_latency, Options, VerbLatency};
use plexus_testkit::tls::ServingCert;

#[derive(Parser)]
#[command(name = "fake-kube-apiserver", version = plexus_buildinfo::LONG, about = "Fake Kubernetes API server (pods, events, NetworkAttachmentDefinitions)")]
struct Args {
    /// Loopback address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// File that receives the bound address (`127.0.0.1:PORT`) once listening.
    #[arg(long)]
    port_file: Option<PathBuf>,
    /// JSON array (or `{"items":[...]}`) of objects to load at start.
    #[arg(long)]
    seed: Option<PathBuf>,
    /// Require `Authorization: Bearer <token>`.
    #[arg(long)]
    token: Option<String>,
    /// Per-verb answer delay: `off`, `kube-1.28` (measured medians), or
    /// `get-pod=MS,get=MS,patch=MS,post=MS,write=MS`.
    #[arg(long, default_value = "off")]
    latency: String,
    /// Serve HTTPS with this certificate (PEM), ALPN `h2` and `http/1.1`
    /// (kube-apiserver's flag). Needs `--tls-private-key-file`.
    #[arg(long, requires = "tls_private_key_file")]
    tls_cert_file: Option<PathBuf>,
    /// The key of `--tls-cert-file` (PEM).
    #[arg(long, requires = "tls_cert_file")]
    tls_private_key_file: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if !args.listen.ip().is_loopback() {
        bail!("refusing to listen on non-loopback address {}", args.listen);
    }
    let latency =
        VerbLatency::parse(&args.latency).map_err(|e| anyhow::anyhow!("--latency: {e}"))?;
    let seed = match &args.seed {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            load_seed(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
        }
        None => Vec::new(),
    };
    let tls = match (&args.tls_cert_file, &args.tls_private_key_file) {
        (Some(cert), Some(key)) => Some(ServingCert {
            cert_pem: std::fs::read_to_string(cert)
                .with_context(|| format!("reading {}", cert.display()))?,
            key_pem: std::fs::read_to_string(key)
                .with_context(|| format!("reading {}", key.display()))?,
            http1_only: false,
        }),
        _ => None,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("listening on {}", args.listen))?;
        let addr = listener.local_addr()?;
        if let Some(port_file) = &args.port_file {
            let tmp = port_file.with_extension("tmp");
            std::fs::write(&tmp, addr.to_string())?;
            std::fs::rename(&tmp, port_file)?;
        }
        eprintln!("fake-kube-apiserver listening on {addr}");
        let options = Options {
            token: args.token,
            seed,
            tls,
        };
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            r = serve_with_latency(listener, options, latency) => r.context("serving")?,
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        Ok(())
    })
}
