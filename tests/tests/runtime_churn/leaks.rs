//! The end state after churn: no sandbox, netns, record, cluster IP or
//! libcni cache entry left.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{ensure, Result};
use plexus_e2e::consistency::Live;

use crate::drive::Stats;
use crate::node::ChurnNode;

/// The end state: nothing left anywhere.
pub fn assert_clean(t: &ChurnNode, stats: &Stats, results_before: &BTreeSet<String>) -> Result<()> {
    t.node.assert_no_sandboxes()?;
    let cni_netns: Vec<PathBuf> = fs::read_dir("/run/netns")?
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("cni-"))
        .map(|e| e.path())
        .collect();
    t.checker().check(&Live::new(), &[], &cni_netns)?;
    let leaked = leaked_cluster_ips(&t.node.work_dir().join("cni/ipam"))?;
    ensure!(
        leaked.is_empty(),
        "host-local leaked cluster IPs: {leaked:?}"
    );
    let stale: Vec<String> = libcni_cache_entries()
        .difference(results_before)
        .filter(|e| stats.ids.iter().any(|id| e.contains(id.as_str())))
        .cloned()
        .collect();
    ensure!(stale.is_empty(), "libcni cache entries left: {stale:?}");
    ensure!(!stats.run.is_empty(), "no pod ran");
    Ok(())
}

/// host-local's per-IP reservation files (anything but its bookkeeping).
fn leaked_cluster_ips(dir: &Path) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let Ok(nets) = fs::read_dir(dir) else {
        return Ok(out);
    };
    for net in nets.flatten() {
        for f in fs::read_dir(net.path())?.flatten() {
            let name = f.file_name().to_string_lossy().into_owned();
            if name != "lock" && !name.starts_with("last_reserved_ip") {
                out.push(name);
            }
        }
    }
    Ok(out)
}

/// libcni's result cache (`/var/lib/cni/results`), as file names.
pub fn libcni_cache_entries() -> BTreeSet<String> {
    fs::read_dir("/var/lib/cni/results")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}
