//! `fake-oci-api --listen 127.0.0.1:0 --port-file F --seed F`: serves the
//! fake OCI Core Services API and federation endpoint until killed, for the
//! demo. The seed is JSON:
//! `{"subnets": [SubnetSeed], "instances": [InstanceSeed], "apiKeys":
//! [{"keyId", "publicKeyPem"}], "trustTenancies": [..], "attachDelayMs"}`
//! (camelCase fields of the test kit's seeds). IMDS views for fake-imds are
//! at the unsigned test path `/_fake/imds/<instance>/vnics`.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Parser;
use plexus_testkit::oci::{FakeOci, InstanceSeed, SubnetSeed};
use serde::Deserialize;

#[derive(Parser)]
#[command(about = "Fake OCI Core Services API (VNIC attachments, instances) with signature checks")]
struct Args {
    /// Loopback address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// File that receives the bound address once listening.
    #[arg(long)]
    port_file: Option<PathBuf>,
    #[arg(long)]
    seed: PathBuf,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ApiKey {
    key_id: String,
    public_key_pem: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Seed {
    #[serde(default)]
    subnets: Vec<SubnetSeed>,
    #[serde(default)]
    instances: Vec<InstanceSeed>,
    #[serde(default)]
    api_keys: Vec<ApiKey>,
    #[serde(default)]
    trust_tenancies: Vec<String>,
    #[serde(default)]
    attach_delay_ms: Option<u64>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if !args.listen.ip().is_loopback() {
        bail!("refusing to listen on non-loopback address {}", args.listen);
    }
    let text = std::fs::read_to_string(&args.seed)
        .with_context(|| format!("reading {}", args.seed.display()))?;
    let seed: Seed = serde_json::from_str(&text).context("parsing the seed")?;
    let fake = FakeOci::start_with_listener(TcpListener::bind(args.listen)?)?;
    for s in seed.subnets {
        fake.add_subnet(s);
    }
    for i in seed.instances {
        fake.add_instance(i);
    }
    for k in seed.api_keys {
        let key = plexus_oci::keys::public_key_from_pem(&k.public_key_pem)?;
        fake.add_api_key(&k.key_id, key);
    }
    for t in seed.trust_tenancies {
        fake.trust_tenancy(&t);
    }
    if let Some(ms) = seed.attach_delay_ms {
        let d = Duration::from_millis(ms);
        fake.set_delays(d, d / 2, d * 2);
    }
    if let Some(port_file) = &args.port_file {
        let tmp = port_file.with_extension("tmp");
        std::fs::write(&tmp, fake.addr().to_string())?;
        std::fs::rename(&tmp, port_file)?;
    }
    eprintln!("fake-oci-api listening on {}", fake.addr());
    loop {
        std::thread::park();
    }
}
