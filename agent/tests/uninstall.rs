//! Uninstall and upgrade against temp dirs standing in for a node: the node
//! ends exactly as it was before Plexus came (its own binaries of our names
//! put back), a second install never shows a torn or missing file to a
//! runtime reading concurrently, and an agent without its mounts changes
//! nothing.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use plexus_agent::install::{InstallConfig, InstallError, Installer, DEFAULT_CONF_NAME};
use plexus_agent::uninstall::remove_files;
use serde_json::Value;

const FLANNEL: &str = r#"{"cniVersion":"0.3.1","name":"cbr0","plugins":[{"type":"flannel"}]}"#;

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_plexus-agent")
}

/// A node with flannel as primary and the reference plugins' `host-device`
/// and `bridge` already in its bin dir.
struct Node {
    tmp: tempfile::TempDir,
    cfg: InstallConfig,
}

impl Node {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let r = &tmp.path().to_path_buf();
        for d in ["image", "bin", "net.d", "sa", "run"] {
            fs::create_dir_all(r.join(d)).unwrap();
        }
        let n = Self {
            cfg: InstallConfig {
                source_bin_dir: r.join("image"),
                cni_bin_dir: r.join("bin"),
                cni_conf_dir: r.join("net.d"),
                host_cni_conf_dir: PathBuf::from("/etc/cni/net.d"),
                binaries: ["plexus", "host-device", "static", "vnic"]
                    .map(String::from)
                    .to_vec(),
                conf_name: DEFAULT_CONF_NAME.into(),
                token_source: r.join("sa/token"),
                ca_source: r.join("sa/ca.crt"),
                api_server: "https://10.96.0.1:443".into(),
                primary_readiness_file: None,
                ready_file: r.join("run/ready"),
                pod_resources_socket: "/var/lib/kubelet/pod-resources/kubelet.sock".into(),
            },
            tmp,
        };
        n.image("v1");
        script(&r.join("bin/host-device"), "node own host-device", 0o755);
        script(&r.join("bin/bridge"), "bridge", 0o755);
        fs::write(r.join("net.d/10-flannel.conflist"), FLANNEL).unwrap();
        fs::write(r.join("sa/token"), "token-1").unwrap();
        fs::write(r.join("sa/ca.crt"), "CA").unwrap();
        n
    }

    fn path(&self, s: &str) -> PathBuf {
        self.tmp.path().join(s)
    }

    /// Fills the image dir with release `tag` of our binaries.
    fn image(&self, tag: &str) {
        for b in ["plexus", "host-device", "static", "vnic"] {
            script(&self.path("image").join(b), &format!("{b} {tag}"), 0o755);
        }
    }

    /// Every file under bin/ and net.d/ with its mode and content.
    fn snapshot(&self) -> BTreeMap<String, (u32, Vec<u8>)> {
        let mut out = BTreeMap::new();
        for d in ["bin", "net.d"] {
            walk(&self.path(d), &mut out);
        }
        out
    }
}

fn walk(dir: &Path, out: &mut BTreeMap<String, (u32, Vec<u8>)>) {
    for e in fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.insert(p.display().to_string(), (0, Vec::new()));
            walk(&p, out);
        } else {
            let mode = fs::metadata(&p).unwrap().permissions().mode();
            out.insert(p.display().to_string(), (mode, fs::read(&p).unwrap()));
        }
    }
}

/// A shell script printing `text`, padded so a torn copy would show.
fn script(path: &Path, text: &str, mode: u32) {
    let pad = "#".repeat(200_000);
    fs::write(path, format!("#!/bin/sh\n# {pad}\necho '{text}'\n")).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

fn run_script(path: &Path) -> String {
    let out = Command::new(path).output().unwrap();
    assert!(out.status.success(), "{path:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn install_upgrade_uninstall_leaves_the_node_as_before() {
    let n = Node::new();
    let before = n.snapshot();
    let inst = Installer::new(n.cfg.clone());
    inst.sync().unwrap();
    assert_eq!(run_script(&n.path("bin/host-device")), "host-device v1");
    assert!(n.path("run/ready").exists());

    // Upgrade: a new image replaces ours; the kept original is still the node's.
    n.image("v2");
    Installer::new(n.cfg.clone()).sync().unwrap();
    assert_eq!(run_script(&n.path("bin/host-device")), "host-device v2");
    let kept = n.path("net.d/plexus.d/orig/host-device");
    assert_eq!(run_script(&kept), "node own host-device");

    let r = remove_files(&n.cfg).unwrap();
    assert!(r.failed.is_empty(), "{r:?}");
    assert_eq!(r.restored, vec![n.path("bin/host-device")]);
    assert!(r.removed.contains(&n.path("net.d/00-plexus.conflist")));
    assert!(r.removed.contains(&n.path("bin/plexus")));
    assert_eq!(n.snapshot(), before, "the node is not as it was");
    assert!(!n.path("run/ready").exists());

    // Idempotent: nothing left, nothing fails.
    let again = remove_files(&n.cfg).unwrap();
    assert!(
        again.removed.is_empty() && again.failed.is_empty(),
        "{again:?}"
    );
    assert_eq!(n.snapshot(), before);
}

#[test]
fn uninstall_keeps_a_foreign_file_under_our_name() {
    let n = Node::new();
    let foreign = r#"{"cniVersion":"0.3.1","name":"x","plugins":[{"type":"bridge"}]}"#;
    fs::write(n.path("net.d/00-plexus.conflist"), foreign).unwrap();
    let r = remove_files(&n.cfg).unwrap();
    assert_eq!(r.kept.len(), 1, "{r:?}");
    assert_eq!(
        fs::read_to_string(n.path("net.d/00-plexus.conflist")).unwrap(),
        foreign
    );
    // Binaries we never installed stay, even under our names.
    assert_eq!(
        run_script(&n.path("bin/host-device")),
        "node own host-device"
    );
}

#[test]
fn uninstall_without_the_mounts_changes_nothing() {
    let n = Node::new();
    Installer::new(n.cfg.clone()).sync().unwrap();
    let before = n.snapshot();
    let mut cfg = n.cfg.clone();
    cfg.cni_bin_dir = n.path("not-mounted/bin");
    let e = remove_files(&cfg).unwrap_err();
    assert!(matches!(e, InstallError::MissingDir { .. }), "{e}");
    assert!(e.to_string().contains("PLEXUS_CNI_BIN_DIR"), "{e}");
    assert_eq!(n.snapshot(), before);
    assert!(n.path("run/ready").exists());
}

#[test]
fn begin_removes_the_ready_file_of_a_previous_agent() {
    let n = Node::new();
    let inst = Installer::new(n.cfg.clone());
    inst.sync().unwrap();
    assert!(n.path("run/ready").exists());
    inst.begin().unwrap();
    assert!(!n.path("run/ready").exists());
    inst.begin().unwrap();
}

fn agent(args: &[&str]) -> Output {
    Command::new(bin())
        .args(args)
        .env_clear()
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

/// `plexus-agent install` flags for `n`, from release dir `image`.
fn install_args(n: &Node, image: &Path, extra: &[&str]) -> Vec<String> {
    let p = |s: &str| n.path(s).to_string_lossy().into_owned();
    let mut a = vec![
        "--cni-bin-dir".into(),
        p("bin"),
        "--cni-conf-dir".into(),
        p("net.d"),
    ];
    a.extend(extra.iter().map(|s| s.to_string()));
    a.extend([
        "install".into(),
        "--source-bin-dir".into(),
        image.to_string_lossy().into_owned(),
        "--token-file".into(),
        p("sa/token"),
        "--ca-file".into(),
        p("sa/ca.crt"),
        "--ready-file".into(),
        p("run/ready"),
        "--api-server".into(),
        "https://10.96.0.1:443".into(),
    ]);
    a
}

/// A runtime creating pods while a new agent replaces everything: every
/// exec of the installed plugin runs a whole binary (old or new), and the
/// conf dir always holds our complete config, first in order.
#[test]
fn replacing_an_install_never_shows_a_torn_or_missing_file() {
    let n = Node::new();
    let v2 = n.path("image-v2");
    fs::create_dir_all(&v2).unwrap();
    for b in ["plexus", "host-device", "static", "vnic"] {
        script(&v2.join(b), &format!("{b} v2"), 0o755);
    }
    let images = [n.path("image"), v2];
    // Alternating kubelet roots make every install rewrite the conflist too.
    let roots = [
        "/var/lib/kubelet",
        "/var/snap/microk8s/common/var/lib/kubelet",
    ];
    let str_args = |i: usize| install_args(&n, &images[i % 2], &["--kubelet-root", roots[i % 2]]);
    let first = agent(&str_args(0).iter().map(String::as_str).collect::<Vec<_>>());
    assert!(first.status.success(), "{first:?}");

    let stop = AtomicBool::new(false);
    let conf = n.path("net.d/00-plexus.conflist");
    let (execs, reads) = std::thread::scope(|s| {
        let reader = s.spawn(|| {
            let (mut execs, mut reads) = (0u32, 0u32);
            while !stop.load(Ordering::SeqCst) {
                let got = run_script(&n.path("bin/plexus"));
                assert!(got == "plexus v1" || got == "plexus v2", "{got}");
                execs += 1;
                let mut names: Vec<String> = fs::read_dir(n.path("net.d"))
                    .unwrap()
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|f| f.ends_with(".conf") || f.ends_with(".conflist"))
                    .collect();
                names.sort();
                assert_eq!(names.first().map(String::as_str), Some(DEFAULT_CONF_NAME));
                let v: Value = serde_json::from_slice(&fs::read(&conf).unwrap()).unwrap();
                assert_eq!(v["plugins"][0]["type"], "plexus", "{v}");
                reads += 1;
            }
            (execs, reads)
        });
        let started = Instant::now();
        for i in 1..=8 {
            let out = agent(&str_args(i).iter().map(String::as_str).collect::<Vec<_>>());
            assert!(out.status.success(), "{out:?}");
            let v: Value = serde_json::from_slice(&fs::read(&conf).unwrap()).unwrap();
            let sock = format!("{}/pod-resources/kubelet.sock", roots[i % 2]);
            assert_eq!(v["plugins"][0]["podResourcesSocket"], sock.as_str());
        }
        eprintln!("8 installs in {:?}", started.elapsed());
        stop.store(true, Ordering::SeqCst);
        reader.join().unwrap()
    });
    eprintln!("{execs} plugin execs and {reads} conf dir reads during the installs");
    assert!(execs > 0 && reads > 0);
    // The last install (i = 8) was release v1.
    assert_eq!(run_script(&n.path("bin/plexus")), "plexus v1");
}

#[test]
fn agent_without_its_mounts_says_what_is_missing_and_changes_nothing() {
    let n = Node::new();
    let before = n.snapshot();
    for (flag, env) in [
        ("--cni-bin-dir", "PLEXUS_CNI_BIN_DIR"),
        ("--cni-conf-dir", "PLEXUS_CNI_CONF_DIR"),
    ] {
        let mut a = install_args(&n, &n.path("image"), &[]);
        let i = a.iter().position(|x| x == flag).unwrap();
        a[i + 1] = n.path("host/missing").to_string_lossy().into_owned();
        for cmd in ["install", "uninstall"] {
            let mut args = a.clone();
            let at = args.iter().position(|x| x == "install").unwrap();
            args[at] = cmd.into();
            if cmd == "uninstall" {
                args.retain(|x| !x.starts_with("https://"));
                args.retain(|x| x != "--api-server");
            }
            let out = agent(&args.iter().map(String::as_str).collect::<Vec<_>>());
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "{cmd} {flag}: {err}");
            assert!(err.contains(env) && err.contains("host/missing"), "{err}");
        }
    }
    // No primary: install says so and writes nothing.
    fs::remove_file(n.path("net.d/10-flannel.conflist")).unwrap();
    let before_no_primary = n.snapshot();
    let a = install_args(&n, &n.path("image"), &[]);
    let out = agent(&a.iter().map(String::as_str).collect::<Vec<_>>());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("no primary CNI config"), "{err}");
    assert_eq!(n.snapshot(), before_no_primary);
    assert_ne!(before, before_no_primary);
}
