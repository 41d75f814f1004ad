//! Peak RSS per call: this binary re-executed as a fresh helper
//! ([`PROBE_ARG`]) that runs one call and reports `ru_maxrss` of the
//! children it reaped, so no other call's peak counts.

use std::io::{Read, Write};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};
use nix::sys::resource::{getrusage, UsageWho};
use plexus_testkit::net::CniCall;
use serde_json::{json, Value};

use crate::rig::Rig;

/// Re-executes this binary as the RSS helper.
pub const PROBE_ARG: &str = "__rss-probe";

/// Peak RSS (KiB) of one call: the maximum over `runs` fresh helpers.
pub fn peak_rss_kib(rig: &Rig, call: &CniCall, runs: usize) -> Result<u64> {
    let exe = std::env::current_exe().context("locate plexus-bench-meta")?;
    let request = json!({
        "bin": call.bin, "command": call.command, "container_id": call.container_id,
        "netns": call.netns, "ifname": call.ifname, "cni_path": call.cni_path,
        "args": call.args, "stdin": String::from_utf8_lossy(&call.stdin),
    })
    .to_string();
    let mut peak = 0;
    for _ in 0..runs.max(1) {
        // Spawned from the node namespace: the helper and the plugin run there.
        let out = plexus_netns::run_in(&rig.node_fd, || -> Result<_> {
            let mut child = Command::new(&exe)
                .arg(PROBE_ARG)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .context("spawn the RSS helper")?;
            if let Some(mut stdin) = child.stdin.take() {
                stdin.write_all(request.as_bytes())?;
            }
            Ok(child.wait_with_output()?)
        })??;
        let reply: Value = serde_json::from_slice(&out.stdout)
            .with_context(|| format!("helper said {:?}", String::from_utf8_lossy(&out.stdout)))?;
        if reply["ok"] != true {
            bail!(
                "{} {} under the RSS helper: {}",
                call.bin.display(),
                call.command,
                reply["output"]
            );
        }
        peak = peak.max(reply["maxrss_kib"].as_u64().context("no maxrss_kib")?);
    }
    Ok(peak)
}

/// The helper: run one call from stdin, report the reaped children's peak.
pub fn probe_main() -> Result<()> {
    let mut input = String::new();
    std::io::stdin().read_to_string(&mut input)?;
    let v: Value = serde_json::from_str(&input)?;
    let s = |k: &str| v[k].as_str().map(str::to_owned);
    let mut call = CniCall::new(s("bin").context("bin")?, &s("command").context("command")?);
    call.container_id = s("container_id");
    call.netns = s("netns");
    call.ifname = s("ifname");
    call.cni_path = s("cni_path");
    call.args = s("args");
    call.stdin = s("stdin").unwrap_or_default().into_bytes();
    let out = call.run();
    let usage = getrusage(UsageWho::RUSAGE_CHILDREN)?;
    println!(
        "{}",
        json!({
            "ok": out.status.success(),
            "output": format!("{} {}", out.stdout.trim(), out.stderr.trim()),
            // Linux reports ru_maxrss in KiB.
            "maxrss_kib": usage.max_rss(),
        })
    );
    Ok(())
}
