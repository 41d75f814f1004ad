//! The uninstall DaemonSet undoes what the agent DaemonSet installs.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::process::Command;

use plexus_testkit::imds::FakeImds;
use serde_json::{json, Value};

use crate::support::{daemonset, daemonset_env, docs, under};

/// The hostPath volumes of a DaemonSet's first container "mounted" into
/// `container` (symlinks standing in for bind mounts) from `host`.
fn mount_host_paths(ds: &Value, host: &Path, container: &Path) {
    let pod = &ds["spec"]["template"]["spec"];
    for m in pod["containers"][0]["volumeMounts"].as_array().unwrap() {
        let vol = pod["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == m["name"])
            .unwrap();
        let Some(hp) = vol["hostPath"]["path"].as_str() else {
            fs::create_dir_all(under(container, m["mountPath"].as_str().unwrap())).unwrap();
            continue;
        };
        fs::create_dir_all(under(host, hp)).unwrap();
        let target = under(container, m["mountPath"].as_str().unwrap());
        fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(under(host, hp), &target).unwrap();
    }
}

/// Runs the agent with a DaemonSet's `PLEXUS_*` env, absolute paths seen
/// from `container` (the kubelet root is the same path on both sides).
fn agent_as(ds: &Value, container: &Path, args: &[String], extra_env: &[(&str, String)]) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_plexus-agent"));
    cmd.args(args).env_clear().env("RUST_LOG", "warn");
    for (k, v) in daemonset_env(&ds["spec"]["template"]["spec"]["containers"][0]) {
        if k.starts_with("PLEXUS_") {
            let rebase = v.starts_with('/') && k != "PLEXUS_KUBELET_ROOT";
            let v = if rebase {
                under(container, &v).to_string_lossy().into_owned()
            } else {
                v
            };
            cmd.env(k, v);
        }
    }
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn host_files(dir: &Path, out: &mut BTreeSet<(String, Vec<u8>)>) {
    for e in fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            host_files(&p, out);
        }
        let bytes = if p.is_file() {
            fs::read(&p).unwrap()
        } else {
            Vec::new()
        };
        out.insert((p.display().to_string(), bytes));
    }
}

/// `deploy/uninstall.yaml` undoes what `deploy/plexus.yaml` installs: the
/// agent installs with the DaemonSet's env and mounts, the uninstall pod
/// runs with its own, and the host's files are exactly as before (the
/// node's own `host-device` back in place).
#[test]
fn uninstall_daemonset_undoes_the_agent_daemonset_install() {
    plexus_testkit::net::require_root();
    let all = docs("deploy");
    let (agent_ds, rm_ds) = (
        daemonset(&all, "plexus"),
        daemonset(&all, "plexus-uninstall"),
    );
    let rm = &rm_ds["spec"]["template"]["spec"];
    assert_eq!(rm["hostNetwork"], true);
    assert_eq!(rm["automountServiceAccountToken"], false);
    let cmd: Vec<&str> = rm["containers"][0]["command"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap())
        .collect();
    assert_eq!(cmd[..2], ["/usr/local/bin/plexus-agent", "uninstall"]);
    let env = daemonset_env(&agent_ds["spec"]["template"]["spec"]["containers"][0]);
    assert!(env.contains(&("PLEXUS_DAEMONSET".into(), "plexus".into())));
    assert!(env.contains(&("PLEXUS_KUBELET_ROOT".into(), "/var/lib/kubelet".into())));

    let tmp = tempfile::tempdir().unwrap();
    let (host, c1, c2) = (
        tmp.path().join("host"),
        tmp.path().join("c1"),
        tmp.path().join("c2"),
    );
    mount_host_paths(agent_ds, &host, &c1);
    mount_host_paths(rm_ds, &host, &c2);
    fs::write(
        under(&host, "/etc/cni/net.d/10-flannel.conflist"),
        r#"{"cniVersion":"0.3.1","name":"cbr0","plugins":[{"type":"flannel"}]}"#,
    )
    .unwrap();
    fs::write(under(&host, "/opt/cni/bin/host-device"), "node's own").unwrap();
    let image = tmp.path().join("image");
    fs::create_dir_all(&image).unwrap();
    for b in ["plexus", "host-device", "static", "vnic"] {
        fs::write(image.join(b), b).unwrap();
    }
    fs::write(tmp.path().join("token"), "t").unwrap();
    fs::write(tmp.path().join("ca.crt"), "c").unwrap();
    let mut before = BTreeSet::new();
    host_files(&host, &mut before);

    let s = |p: &Path| p.to_string_lossy().into_owned();
    let args: Vec<String> = [
        "install",
        "--source-bin-dir",
        &s(&image),
        "--token-file",
        &s(&tmp.path().join("token")),
        "--ca-file",
        &s(&tmp.path().join("ca.crt")),
        "--api-server",
        "https://10.96.0.1:443",
        "--ready-file",
        &s(&under(&c1, "/run/plexus/ready")),
    ]
    .map(String::from)
    .to_vec();
    agent_as(agent_ds, &c1, &args, &[]);
    let conf = fs::read_to_string(under(&host, "/etc/cni/net.d/00-plexus.conflist")).unwrap();
    assert!(
        conf.contains("/var/lib/kubelet/pod-resources/kubelet.sock"),
        "{conf}"
    );
    assert!(under(&host, "/run/plexus/ready").exists());

    // The uninstall pod: VNIC teardown in a test namespace, IMDS faked.
    let ns = plexus_testkit::net::TestNs::new("pxrmds");
    let imds = FakeImds::start(json!([])).unwrap();
    let args: Vec<String> = [
        "--netns",
        ns.name(),
        "--state-file",
        &s(&under(&c2, "/run/plexus/state.json")),
        "uninstall",
        "--ready-file",
        &s(&under(&c2, "/run/plexus/ready")),
    ]
    .map(String::from)
    .to_vec();
    agent_as(rm_ds, &c2, &args, &[("PLEXUS_IMDS_URL", imds.url())]);
    let mut after = BTreeSet::new();
    host_files(&host, &mut after);
    assert_eq!(after, before);
}
