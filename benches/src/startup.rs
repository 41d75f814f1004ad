//! Process-level costs: VERSION start-up time (spawn to exit) and peak RSS.
//!
//! Peak RSS comes from `getrusage(RUSAGE_CHILDREN).ru_maxrss`, the same
//! figure `wait4` reports, read in a fresh helper process (this binary
//! re-executed as `__rss-probe`) that runs exactly one plugin call: the
//! value is the maximum over the helper's reaped descendants, so a helper
//! per call attributes it to that call (for host-device ADD/DEL it includes
//! the static IPAM child it spawns).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use nix::sys::resource::{getrusage, UsageWho};
use plexus_testkit::net::CniCall;
use serde_json::{json, Value};

/// The argument that turns this binary into the RSS helper.
pub const PROBE_ARG: &str = "__rss-probe";

/// A VERSION call; stdin carries a config because Go's skel reads it for
/// every command.
pub fn version_call(bin: &Path) -> CniCall {
    CniCall::new(bin, "VERSION").stdin(r#"{"cniVersion":"1.0.0"}"#)
}

/// Runs `rounds` VERSION calls of every binary, interleaved; returns
/// per-binary samples.
pub fn version_times(bins: &[PathBuf], warmup: usize, rounds: usize) -> Result<Vec<Vec<Duration>>> {
    let calls: Vec<CniCall> = bins.iter().map(|b| version_call(b)).collect();
    spawn_times(&calls, warmup, rounds)
}

/// Runs every call `rounds` times (after `warmup` unmeasured rounds), one
/// of each per round, the order rotated every round, so that machine noise
/// hits all of them alike; returns per-call spawn-to-exit samples.
pub fn spawn_times(calls: &[CniCall], warmup: usize, rounds: usize) -> Result<Vec<Vec<Duration>>> {
    let n = calls.len();
    let mut samples = vec![Vec::with_capacity(rounds); n];
    for round in 0..warmup + rounds {
        for k in 0..n {
            let i = (round + k) % n;
            let call = &calls[i];
            let out = call.run();
            if !out.status.success() {
                bail!(
                    "{} {} failed: {} {}",
                    call.bin.display(),
                    call.command,
                    out.stdout.trim(),
                    out.stderr.trim()
                );
            }
            if round >= warmup {
                samples[i].push(out.elapsed);
            }
        }
    }
    Ok(samples)
}

fn call_to_json(call: &CniCall) -> Value {
    json!({
        "bin": call.bin,
        "command": call.command,
        "container_id": call.container_id,
        "netns": call.netns,
        "ifname": call.ifname,
        "cni_path": call.cni_path,
        "args": call.args,
        "stdin": String::from_utf8_lossy(&call.stdin),
    })
}

fn call_from_json(v: &Value) -> Result<CniCall> {
    let s = |k: &str| v[k].as_str().map(str::to_owned);
    let mut call = CniCall::new(
        s("bin").context("probe request without bin")?,
        &s("command").context("probe request without command")?,
    );
    call.container_id = s("container_id");
    call.netns = s("netns");
    call.ifname = s("ifname");
    call.cni_path = s("cni_path");
    call.args = s("args");
    call.stdin = s("stdin").unwrap_or_default().into_bytes();
    Ok(call)
}

/// Peak RSS in KiB of one plugin call, measured in a fresh helper process
/// (inherits the caller's network namespace).
pub fn peak_rss_kib(call: &CniCall) -> Result<u64> {
    let exe = std::env::current_exe().context("locate plexus-bench")?;
    let mut child = Command::new(exe)
        .arg(PROBE_ARG)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("spawn the RSS helper")?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(call_to_json(call).to_string().as_bytes())?;
    }
    let out = child.wait_with_output()?;
    let reply: Value = serde_json::from_slice(&out.stdout).with_context(|| {
        format!(
            "RSS helper replied {:?}",
            String::from_utf8_lossy(&out.stdout)
        )
    })?;
    if reply["ok"] != true {
        bail!(
            "{} {} failed under the RSS helper: {}",
            call.bin.display(),
            call.command,
            reply["output"]
        );
    }
    reply["maxrss_kib"]
        .as_u64()
        .context("RSS helper reply without maxrss_kib")
}

/// The helper side: read one call from stdin, run it, report its peak RSS.
pub fn probe_main() -> Result<Value> {
    let mut input = String::new();
    std::io::stdin().read_to_string(&mut input)?;
    let call = call_from_json(&serde_json::from_str(&input)?)?;
    let out = call.run();
    let usage = getrusage(UsageWho::RUSAGE_CHILDREN)?;
    Ok(json!({
        "ok": out.status.success(),
        "output": format!("{} {}", out.stdout.trim(), out.stderr.trim()),
        // Linux reports ru_maxrss in KiB.
        "maxrss_kib": usage.max_rss(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_request_round_trips() {
        let call = CniCall::new("/x/host-device", "ADD")
            .container_id("c")
            .netns("/run/netns/p")
            .ifname("net1")
            .cni_path("/x")
            .stdin("{}");
        let back = call_from_json(&call_to_json(&call)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back.env(), call.env());
        assert_eq!(back.bin, call.bin);
        assert_eq!(back.stdin, call.stdin);
    }
}
