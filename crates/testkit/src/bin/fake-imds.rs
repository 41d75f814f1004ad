//! `fake-imds --listen ADDR --vnics FILE [--instance FILE]`: serves the fake
//! OCI metadata service until killed, for the demo and manual testing.

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
    // stderr, because stdout is reserved across the workspace; scripts read
    // the bound port from this line when --listen uses port 0.
    eprintln!("fake-imds listening on {}", fake.addr());
    loop {
        std::thread::park();
    }
}
