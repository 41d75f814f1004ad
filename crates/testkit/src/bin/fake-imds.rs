//! `fake-imds --listen ADDR --vnics FILE [--instance FILE]`: serves the fake
//! OCI metadata service until killed, for the demo and manual testing.
//! With `--oci-api URL --instance-id OCID` the VNIC list follows what a
//! running `fake-oci-api` attached to that instance.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use plexus_testkit::imds::FakeImds;

#[derive(Parser)]
#[command(name = "fake-imds", version = plexus_buildinfo::LONG, about = "Fake OCI instance metadata service (IMDS v2)")]
struct Args {
    /// Address to listen on, e.g. 127.0.0.1:8169 or 169.254.169.254:80 in a netns.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// JSON file with the `/opc/v2/vnics/` array.
    #[arg(long)]
    vnics: PathBuf,
    /// JSON file with the `/opc/v2/instance/` document (default: a VM example).
    #[arg(long)]
    instance: Option<PathBuf>,
    /// A fake-oci-api base URL whose attachments the VNIC list follows.
    #[arg(long, requires = "instance_id")]
    oci_api: Option<String>,
    /// The instance OCID this IMDS belongs to (with --oci-api).
    #[arg(long)]
    instance_id: Option<String>,
}

fn read_json(path: &PathBuf) -> anyhow::Result<serde_json::Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let fake = FakeImds::start_on(args.listen, read_json(&args.vnics)?)
        .with_context(|| format!("listening on {}", args.listen))?;
    if let Some(instance) = &args.instance {
        fake.set_instance(read_json(instance)?);
    }
    if let (Some(api), Some(id)) = (&args.oci_api, &args.instance_id) {
        let url = format!("{}/_fake/imds/{id}/vnics", api.trim_end_matches('/'));
        // Until the fake OCI API first answers, the --vnics file; after a
        // failed poll, the last answer (a slow fake must not make VNICs
        // vanish from IMDS, which would make the agent tear them down).
        let last = std::sync::Mutex::new(read_json(&args.vnics)?);
        let agent = ureq::AgentBuilder::new()
            .timeout(std::time::Duration::from_secs(2))
            .build();
        fake.set_vnic_source(move || {
            let fresh: Option<serde_json::Value> =
                agent.get(&url).call().ok().and_then(|r| r.into_json().ok());
            let mut last = last.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(v) = fresh {
                *last = v;
            }
            last.clone()
        });
    }
    // stderr, because stdout is reserved across the workspace; scripts read
    // the bound port from this line when --listen uses port 0.
    eprintln!("fake-imds listening on {}", fake.addr());
    loop {
        std::thread::park();
    }
}
