//! `plexus-agent install` against temp dirs standing in for the host's CNI
//! dirs: golden configs, restarts without nesting, primary changes, token
//! rotation, and failures that must leave nothing half-done.

#![allow(clippy::unwrap_used)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use plexus_agent::install::{InstallConfig, InstallError, Installer, DEFAULT_CONF_NAME};
use serde_json::Value;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/install");

struct Node {
    _tmp: tempfile::TempDir,
    cfg: InstallConfig,
}

fn node() -> Node {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    for d in ["image", "bin", "net.d", "sa", "run"] {
        fs::create_dir_all(root.join(d)).unwrap();
    }
    for b in ["plexus", "host-device", "static", "vnic"] {
        let p = root.join("image").join(b);
        fs::write(&p, format!("#!/bin/sh\necho {b}\n")).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
    }
    fs::write(root.join("sa/token"), "token-1").unwrap();
    fs::write(root.join("sa/ca.crt"), "CA").unwrap();
    let cfg = InstallConfig {
        source_bin_dir: root.join("image"),
        cni_bin_dir: root.join("bin"),
        cni_conf_dir: root.join("net.d"),
        host_cni_conf_dir: PathBuf::from("/etc/cni/net.d"),
        binaries: ["plexus", "host-device", "static", "vnic"]
            .map(String::from)
            .to_vec(),
        conf_name: DEFAULT_CONF_NAME.into(),
        token_source: root.join("sa/token"),
        ca_source: root.join("sa/ca.crt"),
        api_server: "https://10.96.0.1:443".into(),
        primary_readiness_file: None,
        ready_file: root.join("run/ready"),
        pod_resources_socket: PathBuf::from("/var/lib/kubelet/pod-resources/kubelet.sock"),
    };
    Node { _tmp: tmp, cfg }
}

fn put_fixture(cfg: &InstallConfig, name: &str) {
    fs::copy(Path::new(FIXTURES).join(name), cfg.cni_conf_dir.join(name)).unwrap();
}

fn ours(cfg: &InstallConfig) -> Value {
    serde_json::from_slice(&fs::read(cfg.cni_conf_dir.join(DEFAULT_CONF_NAME)).unwrap()).unwrap()
}

fn golden(name: &str) -> Value {
    serde_json::from_slice(&fs::read(Path::new(FIXTURES).join(name)).unwrap()).unwrap()
}

#[test]
fn flannel_conflist_is_wrapped_golden() {
    let n = node();
    put_fixture(&n.cfg, "10-flannel.conflist");
    let r = Installer::new(n.cfg.clone()).sync().unwrap();
    assert_eq!(r.primary.as_deref(), Some("10-flannel.conflist"));
    assert_eq!(r.binaries_copied.len(), 4);
    assert!(r.conf_written && r.kubeconfig_written && r.token_refreshed);
    assert_eq!(ours(&n.cfg), golden("golden-flannel.conflist"));
    let kc: Value =
        serde_json::from_slice(&fs::read(n.cfg.aux_dir().join("plexus.kubeconfig")).unwrap())
            .unwrap();
    assert_eq!(kc, golden("golden.kubeconfig"));
    assert!(n.cfg.ready_file.exists());
}

#[test]
fn binaries_are_copied_with_mode_and_no_temp_left() {
    let n = node();
    put_fixture(&n.cfg, "10-flannel.conflist");
    Installer::new(n.cfg.clone()).sync().unwrap();
    for b in ["plexus", "host-device", "static", "vnic"] {
        let p = n.cfg.cni_bin_dir.join(b);
        assert_eq!(
            fs::read(&p).unwrap(),
            fs::read(n.cfg.source_bin_dir.join(b)).unwrap()
        );
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o755
        );
    }
    let leftovers: Vec<_> = fs::read_dir(&n.cfg.cni_bin_dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn single_conf_primary_takes_its_version() {
    let n = node();
    put_fixture(&n.cfg, "10-bridge.conf");
    Installer::new(n.cfg.clone()).sync().unwrap();
    assert_eq!(ours(&n.cfg), golden("golden-bridge.conflist"));
}

#[test]
fn restart_with_own_file_present_never_nests() {
    let n = node();
    put_fixture(&n.cfg, "10-flannel.conflist");
    let inst = Installer::new(n.cfg.clone());
    inst.sync().unwrap();
    let first = ours(&n.cfg);
    // A copy of our own output under another name must not be taken either.
    fs::copy(
        n.cfg.cni_conf_dir.join(DEFAULT_CONF_NAME),
        n.cfg.cni_conf_dir.join("01-copy-of-ours.conflist"),
    )
    .unwrap();
    let again = Installer::new(n.cfg.clone()).sync().unwrap();
    assert!(!again.changed(), "{again:?}");
    assert_eq!(again.primary.as_deref(), Some("10-flannel.conflist"));
    assert_eq!(ours(&n.cfg), first);
    let text = fs::read_to_string(n.cfg.cni_conf_dir.join(DEFAULT_CONF_NAME)).unwrap();
    assert_eq!(text.matches("\"plexus\"").count(), 1, "{text}");
}

#[test]
fn primary_change_regenerates() {
    let n = node();
    put_fixture(&n.cfg, "10-flannel.conflist");
    let inst = Installer::new(n.cfg.clone());
    inst.sync().unwrap();
    let mut flannel = golden("10-flannel.conflist");
    flannel["cniVersion"] = "1.0.0".into();
    fs::write(
        n.cfg.cni_conf_dir.join("10-flannel.conflist"),
        serde_json::to_vec(&flannel).unwrap(),
    )
    .unwrap();
    let r = inst.sync().unwrap();
    assert!(r.conf_written && r.binaries_copied.is_empty() && !r.token_refreshed);
    let c = ours(&n.cfg);
    assert_eq!(c["cniVersion"], "1.0.0");
    assert_eq!(c["plugins"][0]["delegates"][0], flannel);
    // A lexically earlier primary wins from now on.
    put_fixture(&n.cfg, "10-bridge.conf");
    let r = inst.sync().unwrap();
    assert_eq!(r.primary.as_deref(), Some("10-bridge.conf"));
}

#[test]
fn token_rotation_is_copied_and_kubeconfig_unchanged() {
    let n = node();
    put_fixture(&n.cfg, "10-flannel.conflist");
    let inst = Installer::new(n.cfg.clone());
    inst.sync().unwrap();
    assert!(!inst.refresh_token().unwrap());
    fs::write(&n.cfg.token_source, "token-2").unwrap();
    assert!(inst.refresh_token().unwrap());
    let tok = n.cfg.aux_dir().join("token");
    assert_eq!(fs::read_to_string(&tok).unwrap(), "token-2");
    assert_eq!(
        fs::metadata(&tok).unwrap().permissions().mode() & 0o777,
        0o600
    );
    fs::write(&n.cfg.token_source, "token-3").unwrap();
    let r = inst.sync().unwrap();
    assert!(r.token_refreshed && !r.kubeconfig_written && !r.conf_written);
}

#[test]
fn no_primary_is_an_error_and_writes_nothing() {
    let n = node();
    let err = Installer::new(n.cfg.clone()).sync().unwrap_err();
    assert!(matches!(err, InstallError::NoPrimary { .. }), "{err}");
    assert_eq!(fs::read_dir(&n.cfg.cni_bin_dir).unwrap().count(), 0);
    assert_eq!(fs::read_dir(&n.cfg.cni_conf_dir).unwrap().count(), 0);
}

#[test]
fn missing_dir_is_a_clear_error() {
    let mut n = node();
    put_fixture(&n.cfg, "10-flannel.conflist");
    n.cfg.cni_bin_dir = n.cfg.cni_bin_dir.join("nope");
    let err = Installer::new(n.cfg.clone()).sync().unwrap_err();
    assert!(
        matches!(
            err,
            InstallError::MissingDir {
                what: "CNI bin dir",
                ..
            }
        ),
        "{err}"
    );
    assert!(!n.cfg.cni_conf_dir.join(DEFAULT_CONF_NAME).exists());
}

/// Makes a dir unwritable even for root (immutable flag) and undoes it on drop.
struct Immutable(PathBuf);
impl Immutable {
    fn new(p: &Path) -> Self {
        fs::set_permissions(p, fs::Permissions::from_mode(0o555)).unwrap();
        // Needed as root; without root the mode bits already suffice.
        let _ = Command::new("chattr").arg("+i").arg(p).status();
        Immutable(p.to_path_buf())
    }
}
impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = Command::new("chattr").arg("-i").arg(&self.0).status();
        let _ = fs::set_permissions(&self.0, fs::Permissions::from_mode(0o755));
    }
}

#[test]
fn read_only_conf_dir_is_a_clear_error_and_nothing_is_copied() {
    let n = node();
    put_fixture(&n.cfg, "10-flannel.conflist");
    let _ro = Immutable::new(&n.cfg.cni_conf_dir);
    let err = Installer::new(n.cfg.clone()).sync().unwrap_err();
    assert!(
        matches!(
            err,
            InstallError::NotWritable {
                what: "CNI conf dir",
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("not writable"));
    assert_eq!(fs::read_dir(&n.cfg.cni_bin_dir).unwrap().count(), 0);
}

#[test]
fn missing_binary_fails_before_any_copy() {
    let n = node();
    put_fixture(&n.cfg, "10-flannel.conflist");
    fs::remove_file(n.cfg.source_bin_dir.join("vnic")).unwrap();
    let err = Installer::new(n.cfg.clone()).sync().unwrap_err();
    assert!(matches!(err, InstallError::MissingBinary { .. }), "{err}");
    assert_eq!(fs::read_dir(&n.cfg.cni_bin_dir).unwrap().count(), 0);
}

#[test]
fn remove_conf_when_primary_disappears() {
    let n = node();
    put_fixture(&n.cfg, "10-flannel.conflist");
    let inst = Installer::new(n.cfg.clone());
    inst.sync().unwrap();
    fs::remove_file(n.cfg.cni_conf_dir.join("10-flannel.conflist")).unwrap();
    assert!(matches!(inst.sync(), Err(InstallError::NoPrimary { .. })));
    assert!(inst.remove_conf().unwrap());
    assert!(!n.cfg.cni_conf_dir.join(DEFAULT_CONF_NAME).exists());
    assert!(!n.cfg.ready_file.exists());
}

#[test]
fn tampered_or_deleted_binary_is_reinstalled_and_unchanged_is_not() {
    let n = node();
    put_fixture(&n.cfg, "10-flannel.conflist");
    let inst = Installer::new(n.cfg.clone());
    inst.sync().unwrap();
    assert!(inst.sync().unwrap().binaries_copied.is_empty());
    let dst = n.cfg.cni_bin_dir.join("static");
    let len = fs::metadata(&dst).unwrap().len() as usize;
    fs::write(&dst, "x".repeat(len)).unwrap();
    fs::remove_file(n.cfg.cni_bin_dir.join("vnic")).unwrap();
    let r = inst.sync().unwrap();
    assert_eq!(r.binaries_copied, vec!["static", "vnic"]);
    assert_eq!(
        fs::read(&dst).unwrap(),
        fs::read(n.cfg.source_bin_dir.join("static")).unwrap()
    );
    // A fresh installer (agent restart) verifies by content, copies nothing.
    let again = Installer::new(n.cfg.clone()).sync().unwrap();
    assert!(again.binaries_copied.is_empty());
}
