//! One node-consistency checker shared by the churn and crash tests: the
//! promises Plexus makes (a VF is never lost, DEL always succeeds, a failed
//! ADD undoes everything) stated as one predicate over the node's state.
//!
//! A node is consistent when
//! - every VF is in exactly one place: on the node under its original name,
//!   MAC, MTU and up state and without a pod's address, or in the netns of a
//!   live attachment;
//! - every pod address is configured in at most one place;
//! - the record directories (host-device's `dataDir`, plexus' cache) hold
//!   records of live attachments only, no half-written temp file, and no
//!   device lock is still held;
//! - no network namespace the test knows of is left over once its pod is
//!   gone.
//!
//! It reads the kernel with `ip -j` through `nsenter --net`, and the
//! directories with plain file operations, so it checks the built binaries
//! black-box.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use nix::fcntl::{Flock, FlockArg};
use serde_json::Value;

/// A VF as the node had it before any pod used it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VfHome {
    pub name: String,
    pub mac: String,
    pub mtu: u64,
    pub up: bool,
}

/// Where the checker looks, and what may legitimately be held.
#[derive(Debug, Clone, Default)]
pub struct Node {
    /// The node netns (a `/run/netns/<name>` path).
    pub netns: PathBuf,
    pub vfs: Vec<VfHome>,
    /// Addresses handed to pods (`a.b.c.d`); each may be configured once.
    pub pod_addrs: Vec<String>,
    /// Directories of `<containerID>-<ifname>.json` records (plus `*.lock`
    /// files whose lock must be free).
    pub record_dirs: Vec<PathBuf>,
}

/// The attachments alive at check time: container id -> pod netns path.
pub type Live = BTreeMap<String, PathBuf>;

/// Where one link was seen.
#[derive(Debug, Clone)]
struct Seen {
    place: PathBuf,
    link: Value,
}

impl Node {
    /// Checks the node against the live attachments. `places` are extra
    /// netns paths a VF could have strayed into (pod netns the test holds);
    /// `runtime_netns` are the ones a runtime created (`/run/netns/cni-*`),
    /// searched too and stray unless a live attachment uses them. Every
    /// problem is listed, not just the first.
    /// [`Node::check`] for a crash fixture: `pods` are the sandboxes the
    /// test made so far; once nothing is live (`live` empty) they are
    /// forgotten, so the next check need not search them again.
    pub fn check_fixture(
        &self,
        live: &Live,
        pods: &std::sync::Mutex<BTreeMap<String, plexus_testkit::net::TestNs>>,
        when: &str,
    ) -> Result<()> {
        let mut pods = pods
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let places: Vec<PathBuf> = pods
            .values()
            .map(plexus_testkit::net::TestNs::path)
            .collect();
        self.check(live, &places, &[])
            .map_err(|e| anyhow::anyhow!("{when}: {e:#}"))?;
        if live.is_empty() {
            pods.clear();
        }
        Ok(())
    }

    pub fn check(&self, live: &Live, places: &[PathBuf], runtime_netns: &[PathBuf]) -> Result<()> {
        let mut problems = Vec::new();
        let mut all: BTreeSet<PathBuf> = places.iter().cloned().collect();
        all.extend(runtime_netns.iter().cloned());
        all.extend(live.values().cloned());
        all.insert(self.netns.clone());
        let mut links: Vec<Seen> = Vec::new();
        for place in &all {
            if !place.exists() {
                continue;
            }
            match addr_show(place) {
                Ok(ls) => links.extend(ls.into_iter().map(|link| Seen {
                    place: place.clone(),
                    link,
                })),
                Err(e) => problems.push(format!("{}: {e:#}", place.display())),
            }
        }
        let live_places: BTreeSet<&PathBuf> = live.values().collect();
        for vf in &self.vfs {
            self.check_vf(vf, &links, &live_places, &mut problems);
        }
        for addr in &self.pod_addrs {
            let holders: Vec<String> = links
                .iter()
                .filter(|s| ipv4_of(&s.link).iter().any(|a| a == addr))
                .map(|s| format!("{} in {}", s.link["ifname"], s.place.display()))
                .collect();
            if holders.len() > 1 {
                problems.push(format!(
                    "address {addr} in {} places: {holders:?}",
                    holders.len()
                ));
            }
        }
        for dir in &self.record_dirs {
            check_records(dir, live, &mut problems);
        }
        for place in runtime_netns {
            if place.exists() && !live_places.contains(place) {
                problems.push(format!("stray network namespace {}", place.display()));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            bail!("node inconsistent:\n  {}", problems.join("\n  "))
        }
    }

    fn check_vf(
        &self,
        vf: &VfHome,
        links: &[Seen],
        live: &BTreeSet<&PathBuf>,
        problems: &mut Vec<String>,
    ) {
        let found: Vec<&Seen> = links
            .iter()
            .filter(|s| s.link["address"].as_str() == Some(vf.mac.as_str()))
            .collect();
        let [seen] = found.as_slice() else {
            let at: Vec<String> = found
                .iter()
                .map(|s| s.place.display().to_string())
                .collect();
            problems.push(format!(
                "VF {} ({}) seen {} times: {at:?}",
                vf.name,
                vf.mac,
                found.len()
            ));
            return;
        };
        if seen.place != self.netns {
            if !live.contains(&seen.place) {
                problems.push(format!(
                    "VF {} stranded in {} (no live attachment)",
                    vf.name,
                    seen.place.display()
                ));
            }
            return;
        }
        let l = &seen.link;
        let up = l["flags"]
            .as_array()
            .is_some_and(|f| f.iter().any(|x| x == "UP"));
        let mut diff = Vec::new();
        if l["ifname"].as_str() != Some(vf.name.as_str()) {
            diff.push(format!("name {}", l["ifname"]));
        }
        if l["mtu"].as_u64() != Some(vf.mtu) {
            diff.push(format!("mtu {}", l["mtu"]));
        }
        if up != vf.up {
            diff.push(format!("up {up}"));
        }
        let addrs = ipv4_of(l);
        if !addrs.is_empty() {
            diff.push(format!("addresses {addrs:?}"));
        }
        if !diff.is_empty() {
            problems.push(format!(
                "VF {} home but changed: {}",
                vf.name,
                diff.join(", ")
            ));
        }
    }
}

/// `ip -j -d addr show` in the netns at `path`.
fn addr_show(path: &Path) -> Result<Vec<Value>> {
    let out = Command::new("nsenter")
        .arg(format!("--net={}", path.display()))
        .args(["ip", "-j", "-d", "addr", "show"])
        .output()
        .context("running nsenter ip")?;
    if !out.status.success() {
        bail!("ip addr: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    let text = String::from_utf8_lossy(&out.stdout);
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    let v: Value = serde_json::from_str(&text).with_context(|| format!("ip printed {text}"))?;
    Ok(v.as_array().cloned().unwrap_or_default())
}

/// The IPv4 addresses (without prefix) on a link.
fn ipv4_of(link: &Value) -> Vec<String> {
    link["addr_info"]
        .as_array()
        .map(|infos| {
            infos
                .iter()
                .filter(|a| a["family"] == "inet")
                .filter_map(|a| a["local"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Records of dead attachments, temp files and held locks in `dir`.
fn check_records(dir: &Path, live: &Live, problems: &mut Vec<String>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return; // never created: nothing recorded
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        if name.ends_with(".lock") {
            let held = OpenOptions::new()
                .write(true)
                .open(&path)
                .ok()
                .map(|f| Flock::lock(f, FlockArg::LockExclusiveNonblock).is_err());
            if held == Some(true) {
                problems.push(format!("lock {} still held", path.display()));
            }
        } else if name.ends_with(".json") && !name.starts_with('.') {
            if !live.keys().any(|cid| name.starts_with(&format!("{cid}-"))) {
                problems.push(format!("stray record {}", path.display()));
            }
        } else if name.starts_with('.') && name.ends_with(".tmp") {
            // A record write interrupted between write and rename: fine while
            // its attachment lives (its DEL must remove it), stray after.
            if !live.keys().any(|cid| name.starts_with(&format!(".{cid}-"))) {
                problems.push(format!("stray temp file {}", path.display()));
            }
        } else if path.is_dir() {
            check_records(&path, live, problems);
        } else {
            problems.push(format!("stray file {}", path.display()));
        }
    }
}
