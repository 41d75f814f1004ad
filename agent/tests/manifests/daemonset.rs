//! The agent DaemonSet: mounts, tolerations, image, and its env finding the host sysfs.

use std::collections::BTreeSet;
use std::fs;
use std::process::Command;

use plexus_sysfs::testing::{FakeSysfs, FunctionSpec};
use plexus_testkit::imds::FakeImds;
use serde_json::{json, Value};

use crate::support::{daemonset, daemonset_env, docs, of_kind, under};

#[test]
fn daemonset_has_host_mounts_tolerations_and_placeholder_image() {
    let all = docs("deploy");
    assert_eq!(of_kind(&all, "DaemonSet").len(), 2);
    let ds = daemonset(&all, "plexus");
    assert_eq!(ds["metadata"]["namespace"], "kube-system");
    let pod = &ds["spec"]["template"]["spec"];
    assert_eq!(pod["hostNetwork"], true);
    assert_eq!(pod["serviceAccountName"], "plexus");
    assert!(pod["tolerations"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["operator"] == "Exists" && t.get("effect").is_none()));
    let c = &pod["containers"][0];
    // The tag is the workspace version (tests/tests/manifest.rs checks the whole reference).
    assert!(c["image"]
        .as_str()
        .unwrap()
        .ends_with(concat!(":", env!("CARGO_PKG_VERSION"))));
    let sc = &c["securityContext"];
    let caps: BTreeSet<&str> = sc["capabilities"]["add"]
        .as_array()
        .map(|a| a.iter().map(|x| x.as_str().unwrap()).collect())
        .unwrap_or_default();
    assert!(sc["privileged"] == true || caps.contains("NET_ADMIN") && caps.contains("SYS_ADMIN"));

    let volumes = pod["volumes"].as_array().unwrap();
    let host_paths: BTreeSet<&str> = volumes
        .iter()
        .filter_map(|v| v["hostPath"]["path"].as_str())
        .collect();
    for p in [
        "/opt/cni/bin",
        "/etc/cni/net.d",
        "/var/lib/cni",
        "/run/plexus",
        "/var/lib/kubelet/device-plugins",
        "/var/lib/kubelet/pod-resources",
        "/var/run/k8s.cni.cncf.io",
        "/sys",
        "/run/netns",
    ] {
        assert!(host_paths.contains(p), "missing hostPath {p}");
    }
    let mounts = c["volumeMounts"].as_array().unwrap();
    let sys_vol = volumes
        .iter()
        .find(|v| v["hostPath"]["path"] == "/sys")
        .unwrap();
    let sys_mount = mounts
        .iter()
        .find(|m| m["name"] == sys_vol["name"])
        .unwrap();
    assert_eq!(sys_mount["readOnly"], true);
    // Every volume is mounted, every mount has a volume.
    let vol_names: BTreeSet<&str> = volumes
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    let mount_names: BTreeSet<&str> = mounts.iter().map(|m| m["name"].as_str().unwrap()).collect();
    assert_eq!(vol_names, mount_names);
    // The projected token with an explicit expiry.
    assert!(volumes
        .iter()
        .any(|v| v["projected"]["sources"].as_array().is_some_and(|s| s
            .iter()
            .any(|x| x["serviceAccountToken"]["expirationSeconds"].is_number()))));
}

/// The agent as the DaemonSet runs it finds the node's VF: its env, applied
/// to a container whose filesystem is a temp dir, with the host's `/sys` (a
/// fake tree laid out like the kernel's) "mounted" where the manifest
/// mounts it. Before `PLEXUS_HOST_ROOT`, `PLEXUS_SYSFS_ROOT=/host/sys` made
/// discovery read `/host/sys/sys/bus/pci/devices` and find nothing.
#[test]
fn daemonset_env_points_discovery_at_the_mounted_host_sysfs() {
    let all = docs("deploy");
    let ds = daemonset(&all, "plexus");
    let pod = &ds["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    let env = daemonset_env(c);
    assert!(
        !env.iter().any(|(k, _)| k == "PLEXUS_SYSFS_ROOT"),
        "deprecated PLEXUS_SYSFS_ROOT in the DaemonSet"
    );
    let host_root = &env
        .iter()
        .find(|(k, _)| k == "PLEXUS_HOST_ROOT")
        .expect("PLEXUS_HOST_ROOT in the DaemonSet env")
        .1;
    let sys_vol = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["hostPath"]["path"] == "/sys")
        .unwrap();
    let sys_mount = c["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == sys_vol["name"])
        .unwrap();
    let mount_path = sys_mount["mountPath"].as_str().unwrap();

    // The host: a filesystem with the kernel's sysfs layout at /sys.
    let tmp = tempfile::tempdir().unwrap();
    let host = tmp.path().join("hostfs");
    let sys = FakeSysfs::new(&host).unwrap();
    sys.add_function(
        &FunctionSpec::new("0000:00:03.0", 0x1af4, 0x1000)
            .driver("virtio-pci")
            .netdev("ens3", Some("02:00:17:dd:00:01")),
    )
    .unwrap();
    sys.add_function(
        &FunctionSpec::new("0000:00:05.0", 0x15b3, 0x101e)
            .driver("mlx5_core")
            .netdev("ens5", Some("02:00:17:dd:00:02")),
    )
    .unwrap();
    // The container: the hostPath volume at its mountPath (a symlink stands
    // in for the bind mount; the kernel's relative links resolve the same).
    let container = tmp.path().join("container");
    let target = under(&container, mount_path);
    fs::create_dir_all(target.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(under(&host, "/sys"), &target).unwrap();

    let imds = FakeImds::start(json!([
        {"vnicId": "ocid1.vnic.primary", "privateIp": "198.51.100.10", "macAddr": "02:00:17:DD:00:01",
         "virtualRouterIp": "198.51.100.1", "subnetCidrBlock": "198.51.100.0/25"},
        {"vnicId": "ocid1.vnic.one", "privateIp": "203.0.113.93", "macAddr": "02:00:17:DD:00:02",
         "virtualRouterIp": "203.0.113.1", "subnetCidrBlock": "203.0.113.0/24"}
    ]))
    .unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_plexus-agent"));
    cmd.args(["status", "--json"])
        .env_clear()
        .env("RUST_LOG", "warn");
    // The manifest's PLEXUS_* paths, as the container sees them.
    for (k, v) in &env {
        if k.starts_with("PLEXUS_") {
            let v = if v.starts_with('/') {
                under(&container, v).to_string_lossy().into_owned()
            } else {
                v.clone()
            };
            cmd.env(k, v);
        }
    }
    for (k, p) in [
        ("PLEXUS_STATE_FILE", "/run/plexus/state.json"),
        ("PLEXUS_HOST_DEVICE_DIR", "/var/lib/cni/plexus-host-device"),
        ("PLEXUS_META_CACHE_DIR", "/var/lib/cni/plexus"),
    ] {
        cmd.env(k, under(&container, p));
    }
    cmd.env("PLEXUS_IMDS_URL", imds.url());
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "status failed (PLEXUS_HOST_ROOT={host_root}, /sys at {mount_path}): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    let vf = status["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["pci"] == "0000:00:05.0")
        .unwrap_or_else(|| {
            panic!("PLEXUS_HOST_ROOT={host_root} with /sys at {mount_path}: no VF in {status}")
        });
    assert_eq!(vf["interface"], "ens5");
    assert_eq!(vf["kind"], "vf");
    assert_eq!(vf["vnic"], "ocid1.vnic.one");
    assert_eq!(vf["location"], "host");
}
