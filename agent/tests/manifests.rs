//! Every YAML in `deploy/` and `examples/` parses; the RBAC rules are exactly
//! the four the meta plugin needs; NAD configs are valid JSON of the expected
//! types; pods reference NADs that exist; the agent run with the DaemonSet's
//! env and mounts finds the node's devices.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use plexus_sysfs::testing::{FakeSysfs, FunctionSpec};
use plexus_testkit::imds::FakeImds;
use serde::Deserialize;
use serde_json::{json, Value};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            yaml_files(&p, out);
        } else if matches!(p.extension().and_then(|x| x.to_str()), Some("yaml" | "yml")) {
            out.push(p);
        }
    }
}

/// All documents of all YAML files under `sub`, as JSON values.
fn docs(sub: &str) -> Vec<(PathBuf, Value)> {
    let mut files = Vec::new();
    yaml_files(&repo().join(sub), &mut files);
    files.sort();
    assert!(!files.is_empty(), "no YAML under {sub}");
    let mut out = Vec::new();
    for f in files {
        let text = fs::read_to_string(&f).unwrap();
        for d in serde_norway::Deserializer::from_str(&text) {
            let v = Value::deserialize(d).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            if v.is_null() {
                continue;
            }
            assert!(
                v["apiVersion"].is_string() && v["kind"].is_string(),
                "{}: document without apiVersion/kind",
                f.display()
            );
            out.push((f.clone(), v));
        }
    }
    out
}

fn of_kind<'a>(all: &'a [(PathBuf, Value)], kind: &str) -> Vec<&'a Value> {
    all.iter()
        .filter(|(_, v)| v["kind"] == kind)
        .map(|(_, v)| v)
        .collect()
}

fn daemonset<'a>(all: &'a [(PathBuf, Value)], name: &str) -> &'a Value {
    of_kind(all, "DaemonSet")
        .into_iter()
        .find(|d| d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no DaemonSet {name}"))
}

#[test]
fn rbac_is_exactly_the_needed_set() {
    let all = docs("deploy");
    let roles = of_kind(&all, "ClusterRole");
    assert_eq!(roles.len(), 1);
    let mut got = BTreeSet::new();
    for rule in roles[0]["rules"].as_array().unwrap() {
        for g in rule["apiGroups"].as_array().unwrap() {
            for r in rule["resources"].as_array().unwrap() {
                for v in rule["verbs"].as_array().unwrap() {
                    got.insert(format!(
                        "{}/{}:{}",
                        g.as_str().unwrap(),
                        r.as_str().unwrap(),
                        v.as_str().unwrap()
                    ));
                }
            }
        }
    }
    let want: BTreeSet<String> = [
        "/pods:get",
        "/pods/status:patch",
        "k8s.cni.cncf.io/network-attachment-definitions:get",
        "/events:create",
        "apps/daemonsets:get",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(got, want);
    assert!(of_kind(&all, "Role").is_empty());

    let binding = of_kind(&all, "ClusterRoleBinding");
    assert_eq!(binding[0]["roleRef"]["name"], roles[0]["metadata"]["name"]);
    let sa = of_kind(&all, "ServiceAccount");
    assert_eq!(binding[0]["subjects"][0]["name"], sa[0]["metadata"]["name"]);
    assert_eq!(binding[0]["subjects"][0]["namespace"], "kube-system");
    assert_eq!(sa[0]["metadata"]["namespace"], "kube-system");
}

#[test]
fn crd_matches_upstream_shape() {
    let all = docs("deploy");
    let crd = of_kind(&all, "CustomResourceDefinition");
    assert_eq!(crd.len(), 1);
    let c = crd[0];
    assert_eq!(
        c["metadata"]["name"],
        "network-attachment-definitions.k8s.cni.cncf.io"
    );
    assert_eq!(c["spec"]["group"], "k8s.cni.cncf.io");
    assert_eq!(c["spec"]["scope"], "Namespaced");
    assert_eq!(c["spec"]["names"]["kind"], "NetworkAttachmentDefinition");
    assert_eq!(
        c["spec"]["names"]["plural"],
        "network-attachment-definitions"
    );
    let v = &c["spec"]["versions"][0];
    assert_eq!(v["name"], "v1");
    assert_eq!(v["served"], true);
    assert_eq!(v["storage"], true);
    assert_eq!(
        v["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["config"]["type"],
        "string"
    );
    assert!(of_kind(&all, "Namespace").is_empty());
}

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

fn nad_config(nad: &Value) -> Value {
    let text = nad["spec"]["config"].as_str().unwrap();
    serde_json::from_str(text).unwrap_or_else(|e| panic!("NAD config is not JSON ({e}): {text}"))
}

fn pod_networks(pod: &Value) -> Vec<String> {
    pod["metadata"]["annotations"]["k8s.v1.cni.cncf.io/networks"]
        .as_str()
        .unwrap()
        .split(',')
        .map(|s| s.trim().to_string())
        .collect()
}

#[test]
fn tutorial_examples_are_per_node_static() {
    let all = docs("examples/tutorial");
    let nads = of_kind(&all, "NetworkAttachmentDefinition");
    let names: BTreeSet<&str> = nads
        .iter()
        .map(|n| n["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, BTreeSet::from(["sriov-vnic-1", "sriov-vnic-2"]));
    let mut ips = Vec::new();
    for n in &nads {
        let c = nad_config(n);
        assert_eq!(c["cniVersion"], "0.3.1");
        assert_eq!(c["type"], "host-device");
        assert_eq!(c["device"], "ens5");
        assert_eq!(c["ipam"]["type"], "static");
        assert_eq!(c["ipam"]["routes"][0]["dst"], "10.0.10.0/24");
        ips.push(
            c["ipam"]["addresses"][0]["address"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    ips.sort();
    assert_eq!(ips, vec!["10.0.10.238/24", "10.0.10.93/24"]);
    let pods = of_kind(&all, "Pod");
    assert_eq!(pods.len(), 2);
    let mut nodes = BTreeSet::new();
    for p in pods {
        for net in pod_networks(p) {
            assert!(
                names.contains(net.as_str()),
                "pod refers to unknown NAD {net}"
            );
        }
        nodes.insert(p["spec"]["nodeName"].as_str().unwrap());
        assert_eq!(p["spec"]["containers"][0]["image"], "centos/tools");
    }
    assert_eq!(nodes.len(), 2, "each pod pinned to its own node");
}

#[test]
fn plexus_examples_use_one_nad_and_the_device_plugin() {
    let all = docs("examples/plexus");
    let nads = of_kind(&all, "NetworkAttachmentDefinition");
    assert_eq!(nads.len(), 1);
    let nad = nads[0];
    assert_eq!(
        nad["metadata"]["annotations"]["k8s.v1.cni.cncf.io/resourceName"],
        "plexus.io/vf"
    );
    let c = nad_config(nad);
    assert_eq!(c["type"], "host-device");
    assert_eq!(c["ipam"], serde_json::json!({"type": "vnic"}));
    assert!(
        c.get("device").is_none(),
        "the allocated VF, not a name, picks the device"
    );
    let pods = of_kind(&all, "Pod");
    assert_eq!(pods.len(), 2);
    for p in pods {
        assert_eq!(
            pod_networks(p),
            vec![nad["metadata"]["name"].as_str().unwrap()]
        );
        assert!(p["spec"].get("nodeName").is_none());
        assert_eq!(
            p["spec"]["containers"][0]["resources"]["limits"]["plexus.io/vf"],
            "1"
        );
    }
}

/// The DaemonSet's env for the agent container (literal values only).
fn daemonset_env(c: &Value) -> Vec<(String, String)> {
    c["env"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| Some((e["name"].as_str()?.into(), e["value"].as_str()?.into())))
        .collect()
}

/// `path` (absolute, as the container sees it) under `base`.
fn under(base: &Path, path: &str) -> PathBuf {
    base.join(path.trim_start_matches('/'))
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
