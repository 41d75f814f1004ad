//! `ip -j` inside a pod's network namespace, as the tests read it.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result};
use serde_json::Value;

use super::run;

/// `ip -j <args>` inside the network namespace at `netns` (a pod's
/// `/run/netns/cni-*` path), parsed. An empty answer is an empty array.
pub fn ip_json_at(netns: &Path, args: &[&str]) -> Result<Value> {
    let out = run(Command::new("nsenter")
        .arg(format!("--net={}", netns.display()))
        .arg("ip")
        .arg("-j")
        .args(args))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if text.trim().is_empty() {
        return Ok(Value::Array(Vec::new()));
    }
    serde_json::from_str(&text).with_context(|| format!("ip -j {args:?} printed {text}"))
}

/// The link named `dev` in the namespace at `netns` (`ip -d link` details
/// plus its `addr_info`), `None` if absent.
pub fn link_at(netns: &Path, dev: &str) -> Result<Option<Value>> {
    let links = ip_json_at(netns, &["-d", "addr", "show"])?;
    Ok(links
        .as_array()
        .and_then(|ls| ls.iter().find(|l| l["ifname"] == dev).cloned()))
}

/// The `local/prefixlen` IPv4 addresses of a link as `ip -j addr` shows it.
pub fn ipv4_addrs(link: &Value) -> Vec<String> {
    link["addr_info"]
        .as_array()
        .map(|infos| {
            infos
                .iter()
                .filter(|a| a["family"] == "inet")
                .map(|a| format!("{}/{}", a["local"].as_str().unwrap_or(""), a["prefixlen"]))
                .collect()
        })
        .unwrap_or_default()
}
