//! Taking Plexus off a node, leaving its network as it was before.
//!
//! Two entry points share this module: `plexus-agent uninstall` (run on
//! every node by `deploy/uninstall.yaml`) and `plexus-agent run` when, on
//! SIGTERM, [`decide`] finds that the DaemonSet itself is being removed.
//! A restart or rolling update keeps everything: the next agent replaces
//! files in place (atomic renames), so pods never see the config vanish.
//!
//! What goes, in this order (the runtime stops calling us first):
//! our conflist (only when its content is the meta plugin's), the ready
//! file, the binaries listed in `installed.json` (a kept original is put
//! back, otherwise the file is removed), `plexus.d/` (kubeconfig, token,
//! CA, the record), then the VNIC addresses, routes and rules
//! ([`crate::vnic::plan_deconfigure`]) of the VNICs in the state file, and
//! the state file. Teardown is best-effort: it goes on past a failure and
//! reports them all; a second run finds nothing left and succeeds.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use plexus_imds::node_state::{NodeState, VnicState};
use plexus_imds::{MetadataSource, NodeNic};
use std::time::Duration;

use plexus_netattach::api::ApiError;
use plexus_netattach::{ClientConfig, HttpPodApi, RetryPolicy, TokenSource};
use serde::Serialize;
use serde_json::Value;

use crate::install::{read_record, InstallConfig, InstallError};
use crate::metaconf::is_own_conf;
use crate::nodefs::{check_dir_writable, durable, BIN_DIR, CONF_DIR};
use crate::vnic::{self, ApplyReport, Mode, NetOps, VnicConfig, VnicError};

/// What [`remove_files`] did, path by path.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct UninstallReport {
    pub removed: Vec<PathBuf>,
    /// Originals of the node put back in place of our binaries.
    pub restored: Vec<PathBuf>,
    /// Left alone on purpose, with why.
    pub kept: Vec<(PathBuf, String)>,
    pub failed: Vec<(PathBuf, String)>,
}

impl UninstallReport {
    fn outcome(&mut self, path: &Path, res: io::Result<()>) {
        match res {
            Ok(()) => self.removed.push(path.to_path_buf()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => self.failed.push((path.to_path_buf(), e.to_string())),
        }
    }
}

/// Removes everything `install` wrote. Fails before changing anything when
/// the CNI dirs are not mounted (or not writable): an uninstall that cannot
/// see the node's files must not report success.
pub fn remove_files(cfg: &InstallConfig) -> Result<UninstallReport, InstallError> {
    check_dir_writable(CONF_DIR, &cfg.cni_conf_dir)?;
    check_dir_writable(BIN_DIR, &cfg.cni_bin_dir)?;
    let mut report = UninstallReport::default();
    let conf = cfg.conf_path();
    match fs::read(&conf) {
        Ok(bytes) => {
            let ours = serde_json::from_slice::<Value>(&bytes).is_ok_and(|v| is_own_conf(&v));
            if ours {
                report.outcome(&conf, fs::remove_file(&conf));
            } else {
                let why = "not a config of the meta plugin; not ours to remove";
                report.kept.push((conf, why.into()));
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => report.failed.push((conf, e.to_string())),
    }
    report.outcome(&cfg.ready_file, fs::remove_file(&cfg.ready_file));
    for name in read_record(cfg) {
        let dst = cfg.cni_bin_dir.join(&name);
        let orig = cfg.orig_dir().join(&name);
        if orig.exists() {
            match restore(&orig, &dst) {
                Ok(()) => report.restored.push(dst),
                Err(e) => report.failed.push((dst, e.to_string())),
            }
        } else {
            report.outcome(&dst, fs::remove_file(&dst));
        }
    }
    let aux = cfg.aux_dir();
    report.outcome(&aux, fs::remove_dir_all(&aux));
    Ok(report)
}

/// Puts the node's original back by copy + rename (the conf and bin dirs
/// may be different file systems, so no plain rename).
fn restore(orig: &Path, dst: &Path) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = fs::metadata(orig)?.permissions().mode();
    let mut from = fs::File::open(orig)?;
    plexus_cni::fsutil::replace_atomic(dst, durable(mode), |f| io::copy(&mut from, f).map(drop))?;
    fs::remove_file(orig)
}

/// Pure: the VNICs the state file says the agent configured, primary
/// first as [`vnic::plan_deconfigure`] expects; `None` when the file names
/// no primary (then the caller asks IMDS).
pub fn vnics_from_state(state: &NodeState) -> Option<Vec<NodeNic>> {
    let mut entries: Vec<_> = state.vnics.iter().collect();
    entries.sort_by_key(|v| !v.is_primary);
    // Several VFs may share one VNIC: one entry each is enough.
    let mut seen = BTreeSet::new();
    entries.retain(|v| seen.insert(v.vnic_id.as_str()));
    if !entries.first()?.is_primary {
        return None;
    }
    Some(entries.into_iter().map(VnicState::to_nic).collect())
}

/// Removes the VNIC configuration through the same path as
/// `plexus-agent vnic deconfigure`.
pub fn deconfigure_vnics(
    cfg: &VnicConfig,
    vnics: &[NodeNic],
    ops: &dyn NetOps,
) -> Result<ApplyReport, VnicError> {
    vnic::run_with(Mode::Deconfigure, cfg, vnics, ops, &BTreeSet::new()).map(|(_, r)| r)
}

/// The seams and paths a full removal needs.
pub struct Removal<'a> {
    pub install: &'a InstallConfig,
    pub vnic: &'a VnicConfig,
    /// The node state file naming the VNICs the agent configured.
    pub state_path: &'a Path,
    pub ops: &'a dyn NetOps,
    /// Asked only when the state file names no VNICs.
    pub metadata: &'a dyn MetadataSource,
}

/// What [`remove_node`] did.
#[derive(Debug, Default, Serialize)]
pub struct NodeRemoval {
    pub files: UninstallReport,
    /// Where the VNIC list came from: `state file`, `IMDS` or `none`.
    pub vnic_source: &'static str,
    pub vnic_actions: usize,
    pub vnic_errors: Vec<String>,
}

impl NodeRemoval {
    /// Everything went; otherwise the list of what failed.
    pub fn problems(&self) -> Vec<String> {
        let files = self.files.failed.iter();
        let mut out: Vec<String> = files
            .map(|(p, e)| format!("{}: {e}", p.display()))
            .collect();
        out.extend(self.vnic_errors.iter().cloned());
        out
    }
}

/// Files first (the runtime stops calling us), then VNICs, then the state
/// file once its VNICs are deconfigured. Fails without changes only when
/// the CNI dirs are not there; later failures are collected.
pub fn remove_node(r: &Removal<'_>) -> Result<NodeRemoval, InstallError> {
    let files = remove_files(r.install)?;
    let state = NodeState::read(r.state_path).ok().flatten();
    let (vnics, vnic_source) = match state.as_ref().and_then(vnics_from_state) {
        Some(v) => (v, "state file"),
        None => match r.metadata.nics() {
            Ok(v) => (v, "IMDS"),
            // Rules and routes of our tables still go; addresses need VNICs.
            Err(_) => (Vec::new(), "none"),
        },
    };
    let mut out = NodeRemoval {
        files,
        vnic_source,
        ..NodeRemoval::default()
    };
    match deconfigure_vnics(r.vnic, &vnics, r.ops) {
        Ok(rep) => {
            out.vnic_actions = rep.applied.len();
            let failed = rep.failed.iter();
            out.vnic_errors = failed
                .map(|(a, e)| format!("{}: {e}", a.describe()))
                .collect();
        }
        Err(e) => out.vnic_errors.push(e.to_string()),
    }
    if out.vnic_errors.is_empty() {
        let res = fs::remove_file(r.state_path);
        out.files.outcome(r.state_path, res);
    }
    Ok(out)
}

/// What to do with the node when the agent is asked to stop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The DaemonSet is going away: take Plexus off the node.
    Remove(String),
    /// A restart, rolling update, drain or node shutdown (or we cannot
    /// tell): leave everything for the next agent.
    Keep(String),
}

/// Pure: the verdict from the API's answer to GET of our DaemonSet,
/// decided by status code and object fields only.
///
/// - 404, or the object carries a `deletionTimestamp`: it is being deleted.
/// - 401: our service account's token is rejected (the manifest's
///   ServiceAccount was deleted). The meta plugin uses the same token, so
///   our conflist could only fail every pod on this node.
/// - 403: the manifest's ClusterRole(Binding) are gone; likewise.
/// - Anything else (5xx, timeout, unreachable, undecodable): keep. A node
///   that cannot reach the API keeps a working install, and
///   `deploy/uninstall.yaml` removes it later.
pub fn judge(answer: &Result<Value, ApiError>) -> Verdict {
    match answer {
        Ok(ds) => match ds["metadata"].get("deletionTimestamp") {
            Some(ts) if !ts.is_null() => Verdict::Remove(format!("DaemonSet deleted at {ts}")),
            _ => Verdict::Keep("DaemonSet still exists (restart or rolling update)".into()),
        },
        Err(ApiError::NotFound { .. }) => Verdict::Remove("DaemonSet not found (404)".into()),
        Err(ApiError::Unauthorized { .. }) => {
            Verdict::Remove("service account token rejected (401)".into())
        }
        Err(ApiError::Forbidden { .. }) => {
            Verdict::Remove("service account lost its rights (403)".into())
        }
        Err(e) => Verdict::Keep(format!("cannot tell ({e})")),
    }
}

/// The one API call of the agent: GET of its own DaemonSet.
pub trait OwnerApi {
    fn daemonset(&self, namespace: &str, name: &str) -> Result<Value, ApiError>;
}

impl OwnerApi for HttpPodApi {
    fn daemonset(&self, namespace: &str, name: &str) -> Result<Value, ApiError> {
        self.get_json(&plexus_netattach::http::daemonset_path(namespace, name))
    }
}

/// The API client for [`decide`], from the service account `install` uses.
/// Short timeouts: the answer must come well inside the pod's grace period.
pub fn owner_api(install: &InstallConfig) -> HttpPodApi {
    HttpPodApi::new(ClientConfig {
        server: install.api_server.clone(),
        ca_pem: fs::read(&install.ca_source).ok(),
        insecure_skip_tls_verify: false,
        tls_server_name: None,
        token: Some(TokenSource::File(install.token_source.clone())),
        identity: None,
        namespace: None,
    })
    .with_timeout(Duration::from_secs(2))
    .with_retry(RetryPolicy {
        max_attempts: 2,
        budget: Duration::from_secs(4),
        ..RetryPolicy::default()
    })
}

/// Asks the API about our DaemonSet and judges the answer.
pub fn decide(api: &dyn OwnerApi, namespace: &str, name: &str) -> Verdict {
    judge(&api.daemonset(namespace, name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn err(code: u16) -> Result<Value, ApiError> {
        Err(ApiError::from_status(code, b"{}", None))
    }

    #[test]
    fn verdict_follows_codes_and_deletion_timestamp() {
        let live = json!({"metadata": {"name": "plexus"}});
        let dying =
            json!({"metadata": {"name": "plexus", "deletionTimestamp": "2026-01-01T00:00:00Z"}});
        assert!(matches!(judge(&Ok(live)), Verdict::Keep(_)));
        assert!(matches!(judge(&Ok(dying)), Verdict::Remove(_)));
        for code in [401, 403, 404] {
            assert!(matches!(judge(&err(code)), Verdict::Remove(_)), "{code}");
        }
        for code in [429, 500, 503, 400] {
            assert!(matches!(judge(&err(code)), Verdict::Keep(_)), "{code}");
        }
        let down = Err(ApiError::Transport("connection refused".into()));
        assert!(matches!(judge(&down), Verdict::Keep(_)));
        let slow = Err(ApiError::Timeout("timed out".into()));
        assert!(matches!(judge(&slow), Verdict::Keep(_)));
    }

    #[test]
    fn state_vnics_put_the_primary_first_or_give_up() {
        let entry = |mac: &str, primary: bool| {
            serde_json::from_value(json!({
                "ifname": null, "pci": null, "mac": mac, "vnic_id": mac, "ip": "198.51.100.7",
                "prefix_len": 24, "subnet_cidr": "198.51.100.0/24", "gateway": "198.51.100.1",
                "vlan_tag": null, "nic_index": null, "mtu": 9000, "is_primary": primary}))
            .unwrap()
        };
        let now = std::time::UNIX_EPOCH;
        let st = NodeState::new(
            vec![
                entry("02:00:00:00:00:02", false),
                entry("02:00:00:00:00:01", true),
            ],
            now,
        );
        let v = vnics_from_state(&st).unwrap();
        assert_eq!(v[0].mac, "02:00:00:00:00:01");
        assert_eq!(v.len(), 2);
        let st = NodeState::new(vec![entry("02:00:00:00:00:02", false)], now);
        assert!(vnics_from_state(&st).is_none());
    }
}
