//! plexus-bench-api: what one plugin process's Kubernetes requests cost on
//! the fake API, per transport, with kube-apiserver v1.28's per-verb delays
//! (`--api-latency`). Each round makes a fresh client per series, as every
//! CNI call is a new process: GET pod (connect and TLS handshake included),
//! GET NAD, then the status PATCH with the events alongside (as plexus
//! `Kube::publish`). Series, interleaved round by round:
//!
//! 1. `h2`: HTTPS, ALPN picks HTTP/2; every request a stream on one
//!    connection (the client's default for kube-apiserver);
//! 2. `https, server without h2`: the server offers only `http/1.1` in
//!    ALPN (a proxy in front of the API server): the client's probe
//!    handshake, then its ureq path;
//! 3. `https http/1.1 (ureq)`: HTTPS straight through the ureq path, as the
//!    client did before HTTP/2 (forced by calling from inside a tokio
//!    runtime context, where the client does not block on its own runtime);
//! 4. `http`: plain HTTP/1.1 (no TLS), the floor.
// A benchmark's report is its output: printing to stdout is the point here.
#![allow(clippy::print_stdout)]

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Parser;
use plexus_netattach::{ClientConfig, Event, HttpPodApi, PodApi, PodRef, RetryPolicy};
use plexus_testkit::kube::{FakeApiServer, Options, VerbLatency};
use plexus_testkit::tls::TestCa;
use serde_json::json;

#[derive(Debug, Parser)]
#[command(name = "plexus-bench-api", version = plexus_buildinfo::LONG, about = "Kubernetes API request cost per transport on the fake API")]
struct Args {
    /// Fresh clients per series.
    #[arg(long, default_value_t = 200)]
    rounds: usize,
    /// Events posted alongside the PATCH.
    #[arg(long, default_value_t = 2)]
    events: usize,
    /// The fake API's per-verb answer delay (as plexus-bench-meta).
    #[arg(long, default_value = "kube-1.28")]
    api_latency: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    H2,
    Fallback,
    TlsHttp1,
    Plain,
}

/// One fake API server seeded with the pod and a NAD.
struct Target {
    api: FakeApiServer,
    ca_pem: Option<Vec<u8>>,
    pod: PodRef,
}

impl Target {
    fn start(ca: Option<&TestCa>, http1_only: bool, latency: Option<VerbLatency>) -> Result<Self> {
        let mut tls = ca.map(TestCa::loopback_cert).transpose()?;
        if let Some(cert) = &mut tls {
            cert.http1_only = http1_only;
        }
        let api = FakeApiServer::start_with(Options {
            tls,
            ..Options::default()
        })?;
        let pod = api
            .put_pod(json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "p", "namespace": "default"}, "spec": {}}))
            .map_err(anyhow::Error::msg)?;
        api.put_nad("default", "n", r#"{"cniVersion":"1.0.0","type":"static"}"#)
            .map_err(anyhow::Error::msg)?;
        api.set_verb_latency(latency);
        let uid = pod["metadata"]["uid"]
            .as_str()
            .context("no uid")?
            .to_owned();
        Ok(Self {
            api,
            ca_pem: ca.map(|c| c.cert_pem().into_bytes()),
            pod: PodRef {
                namespace: "default".into(),
                name: "p".into(),
                uid,
            },
        })
    }

    fn client(&self) -> HttpPodApi {
        HttpPodApi::new(ClientConfig {
            server: self.api.url(),
            ca_pem: self.ca_pem.clone(),
            insecure_skip_tls_verify: false,
            tls_server_name: None,
            token: None,
            identity: None,
            namespace: None,
        })
        .with_retry(RetryPolicy::none())
    }
}

/// Phase times of one client: GET pod, GET NAD, PATCH + events, all.
type Phases = [Duration; 4];

fn one_client(
    t: &Target,
    events: &[Event],
    rt: Option<&tokio::runtime::Runtime>,
) -> Result<Phases> {
    let api = t.client();
    let _ctx = rt.map(tokio::runtime::Runtime::enter);
    let t0 = Instant::now();
    api.get_pod("default", "p")?;
    let t1 = Instant::now();
    api.get_nad("default", "n")?;
    let t2 = Instant::now();
    std::thread::scope(|s| {
        let posted = s.spawn(|| {
            let _ctx = rt.map(tokio::runtime::Runtime::enter);
            api.create_events(&t.pod, events)
        });
        let patched = api.patch_network_status("default", "p", &t.pod.uid, "[]");
        let posted = posted.join().unwrap_or_default();
        patched.and(posted.into_iter().collect::<Result<Vec<()>, _>>())
    })?;
    let t3 = Instant::now();
    Ok([t1 - t0, t2 - t1, t3 - t2, t3 - t0])
}

fn cell(samples: &mut [Duration]) -> String {
    samples.sort_unstable();
    let q = |f: f64| samples[((samples.len() - 1) as f64 * f).round() as usize].as_secs_f64() * 1e3;
    format!("{:.2} ({:.2}–{:.2})", q(0.5), q(0.1), q(0.9))
}

fn main() -> Result<()> {
    let args = Args::parse();
    let latency = VerbLatency::parse(&args.api_latency).map_err(anyhow::Error::msg)?;
    let ca = TestCa::new()?;
    let https = Target::start(Some(&ca), false, latency)?;
    let no_h2 = Target::start(Some(&ca), true, latency)?;
    let plain = Target::start(None, false, latency)?;
    let rt = tokio::runtime::Builder::new_current_thread().build()?;
    let events: Vec<Event> = (0..args.events)
        .map(|i| Event::added_interface(&format!("net{}", i + 1), &[], "default/n"))
        .collect();
    let modes = [
        (Mode::H2, "h2 (HTTPS)"),
        (Mode::Fallback, "https, server without h2"),
        (Mode::TlsHttp1, "https http/1.1 (ureq, as before)"),
        (Mode::Plain, "http (no TLS)"),
    ];
    let mut times: Vec<Vec<Phases>> = vec![Vec::new(); modes.len()];
    let mut conns = [0usize; 4];
    for round in 0..args.rounds.max(1) {
        for k in 0..modes.len() {
            let i = (round + k) % modes.len();
            let (mode, _) = modes[i];
            let t = match mode {
                Mode::Plain => &plain,
                Mode::Fallback => &no_h2,
                Mode::H2 | Mode::TlsHttp1 => &https,
            };
            let before = t.api.connections().len();
            let r = one_client(t, &events, (mode == Mode::TlsHttp1).then_some(&rt))?;
            conns[i] += t.api.connections().len() - before;
            times[i].push(r);
        }
    }
    println!(
        "### Kubernetes API requests of one client — {} fresh clients per series, latency `{}`, {} events\n",
        args.rounds, args.api_latency, args.events
    );
    println!("ms, median (p10–p90)\n");
    println!("| series | GET pod (+ connect, TLS) | GET NAD | PATCH + events | all | connections per client |");
    println!("|---|---|---|---|---|---|");
    for (i, (_, label)) in modes.iter().enumerate() {
        let col = |p: usize| cell(&mut times[i].iter().map(|t| t[p]).collect::<Vec<_>>());
        println!(
            "| {label} | {} | {} | {} | {} | {:.2} |",
            col(0),
            col(1),
            col(2),
            col(3),
            conns[i] as f64 / times[i].len() as f64
        );
    }
    Ok(())
}
