//! The plugin's API credentials on the node: the token and the kubeconfig
//! are 0600 inside a 0700 `plexus.d`, so only root reads them.

#![allow(clippy::unwrap_used)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use plexus_agent::install::{InstallConfig, Installer, DEFAULT_CONF_NAME};

fn mode(p: &std::path::Path) -> u32 {
    fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

#[test]
fn token_and_kubeconfig_are_0600_in_a_0700_dir() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    for d in ["image", "bin", "net.d", "sa", "run"] {
        fs::create_dir_all(root.join(d)).unwrap();
    }
    let p = root.join("image/plexus");
    fs::write(&p, "#!/bin/sh\n").unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(root.join("sa/token"), "secret-token").unwrap();
    fs::write(root.join("sa/ca.crt"), "CA").unwrap();
    fs::write(
        root.join("net.d/10-cluster.conf"),
        r#"{"cniVersion":"1.0.0","name":"cluster","type":"bridge"}"#,
    )
    .unwrap();
    // A pre-existing, too-open dir is tightened too.
    fs::create_dir_all(root.join("net.d/plexus.d")).unwrap();
    fs::set_permissions(
        root.join("net.d/plexus.d"),
        fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    let cfg = InstallConfig {
        source_bin_dir: root.join("image"),
        cni_bin_dir: root.join("bin"),
        cni_conf_dir: root.join("net.d"),
        host_cni_conf_dir: PathBuf::from("/etc/cni/net.d"),
        binaries: vec!["plexus".into()],
        conf_name: DEFAULT_CONF_NAME.into(),
        token_source: root.join("sa/token"),
        ca_source: root.join("sa/ca.crt"),
        api_server: "https://10.96.0.1:443".into(),
        primary_readiness_file: None,
        ready_file: root.join("run/ready"),
        pod_resources_socket: PathBuf::from("/var/lib/kubelet/pod-resources/kubelet.sock"),
    };
    let aux = cfg.aux_dir();
    Installer::new(cfg).sync().unwrap();
    assert_eq!(mode(&aux), 0o700);
    assert_eq!(mode(&aux.join("token")), 0o600);
    assert_eq!(mode(&aux.join("plexus.kubeconfig")), 0o600);
}
