//! Root-only end-to-end: the `plexus` binary, run inside a "host" test
//! namespace, attaches two veth ends standing in for VFs to a pod namespace
//! through our `host-device` + `static` (cluster network as `eth0`, the
//! annotation network as `net1` owning the default route), then DEL puts
//! them back. No API server: pod annotations come from the runtime
//! (containerd's capability) and the network config from `confDir`.
//! Run after `cargo build --workspace --bins`.

#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use plexus_testkit::net::{bin_dir, bin_path, require_root, unique_name, TestNs, Veth, VethEnd};
use serde_json::{json, Value};

struct Rig {
    host: TestNs,
    pod: TestNs,
    eth: Veth,
    vf: Veth,
    dir: tempfile::TempDir,
}

impl Rig {
    fn new() -> Self {
        require_root();
        let _ = bin_path("host-device");
        let _ = bin_path("static");
        let host = TestNs::new("pxmh");
        let pod = TestNs::new("pxmp");
        let mut eth = Veth::create(
            VethEnd::new(unique_name("pxeth")).in_ns(&host).up(),
            VethEnd::new(unique_name("pxew")).in_ns(&host).up(),
        );
        eth.may_visit(&pod);
        let mut vf = Veth::create(
            VethEnd::new(unique_name("pxvf")).in_ns(&host).up(),
            VethEnd::new(unique_name("pxvw")).in_ns(&host).up(),
        );
        vf.may_visit(&pod);
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("net.d")).unwrap();
        Rig {
            host,
            pod,
            eth,
            vf,
            dir,
        }
    }

    fn conf(&self, version: &str) -> Value {
        let d = self.dir.path();
        std::fs::write(
            d.join("net.d/20-vnic.conf"),
            json!({"cniVersion": version, "name": "vnic", "type": "host-device",
                "device": self.vf.a(), "dataDir": d.join("hd-vnic"),
                "ipam": {"type": "static",
                    "addresses": [{"address": "203.0.113.7/24", "gateway": "203.0.113.1"}]}})
            .to_string(),
        )
        .unwrap();
        json!({
            "cniVersion": version, "name": "plexus-cni-network", "type": "plexus",
            "capabilities": {"io.kubernetes.cri.pod-annotations": true},
            "runtimeConfig": {"io.kubernetes.cri.pod-annotations": {
                "k8s.v1.cni.cncf.io/networks": r#"[{"name":"vnic","default-route":["203.0.113.1"]}]"#}},
            "confDir": d.join("net.d"), "cniDir": d.join("cache"),
            "deviceInfoDir": d.join("devinfo"), "binDir": bin_dir(),
            "delegates": [{"cniVersion": version, "name": "cluster", "type": "host-device",
                "device": self.eth.a(), "dataDir": d.join("hd-eth"),
                "ipam": {"type": "static",
                    "addresses": [{"address": "198.51.100.10/24", "gateway": "198.51.100.1"}],
                    "routes": [{"dst": "0.0.0.0/0", "gw": "198.51.100.1"}]}}]
        })
    }

    fn run(&self, cmd: &str, conf: &Value) -> Output {
        let plexus = Path::new(env!("CARGO_BIN_EXE_plexus"));
        self.exec_plexus(plexus, &bin_dir(), cmd, conf)
    }

    /// Runs `plexus` at `plexus` in the host netns as a runtime would:
    /// explicit env, `conf` on stdin, `CNI_PATH` = `cni_path`.
    fn exec_plexus(&self, plexus: &Path, cni_path: &Path, cmd: &str, conf: &Value) -> Output {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", self.host.name()])
            .arg(plexus)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("CNI_COMMAND", cmd)
            .env("CNI_CONTAINERID", "c0ffee02")
            .env("CNI_NETNS", self.pod.path())
            .env("CNI_IFNAME", "eth0")
            .env("CNI_PATH", cni_path)
            .env(
                "CNI_ARGS",
                "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=p;K8S_POD_INFRA_CONTAINER_ID=c0ffee02;K8S_POD_UID=u1",
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(conf.to_string().as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    }
}

fn addresses(ns: &TestNs, dev: &str) -> Vec<String> {
    ns.addrs(dev)
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["family"] == "inet")
        .map(|a| format!("{}/{}", a["local"].as_str().unwrap(), a["prefixlen"]))
        .collect()
}

fn default_routes(ns: &TestNs) -> Vec<(String, String)> {
    ns.routes()
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["dst"] == "default")
        .map(|r| {
            (
                r["gateway"].as_str().unwrap_or_default().to_string(),
                r["dev"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

#[test]
fn host_device_networks_through_plexus() {
    for version in ["0.4.0", "1.0.0", "1.1.0"] {
        let rig = Rig::new();
        let conf = rig.conf(version);

        let out = rig.run("ADD", &conf);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{version}: {stdout} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let result: Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(result["cniVersion"], version);
        assert_eq!(
            addresses(&rig.pod, "eth0"),
            vec!["198.51.100.10/24"],
            "{stdout} {}",
            rig.pod.addrs("eth0")
        );
        assert_eq!(addresses(&rig.pod, "net1"), vec!["203.0.113.7/24"]);
        assert!(rig.host.link(rig.vf.a()).is_none(), "VF moved into the pod");
        assert_eq!(
            default_routes(&rig.pod),
            vec![("203.0.113.1".to_string(), "net1".to_string())],
            "default route moved to net1: {}",
            rig.pod.routes()
        );
        assert!(result["routes"]
            .as_array()
            .is_none_or(|r| r.iter().all(|x| x["dst"] != "0.0.0.0/0")));

        let out = rig.run("CHECK", &conf);
        assert!(
            out.status.success(),
            "CHECK: {}",
            String::from_utf8_lossy(&out.stdout)
        );

        let out = rig.run("DEL", &conf);
        assert!(
            out.status.success(),
            "DEL: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert!(rig.host.link(rig.vf.a()).is_some(), "VF back on the host");
        assert!(rig.host.link(rig.eth.a()).is_some(), "eth back on the host");
        assert!(rig.pod.link("net1").is_none() && rig.pod.link("eth0").is_none());
        assert!(std::fs::read_dir(rig.dir.path().join("cache"))
            .unwrap()
            .next()
            .is_none());
        // The runtime's second DEL, netns already gone.
        let out = rig.run("DEL", &conf);
        assert!(
            out.status.success(),
            "second DEL: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}

/// What one ADD/CHECK/DEL pass left behind, for comparing two ways of
/// running the same delegates.
#[derive(Debug, PartialEq)]
struct Pass {
    outputs: Vec<(String, Option<i32>, String)>,
    pod_after_add: (Vec<String>, Vec<String>, Vec<(String, String)>),
    host_after_del: (bool, bool),
    pod_after_del: (bool, bool),
}

impl Rig {
    /// Runs `plexus` (a hard link of the built binary in `plexus_dir`) with
    /// `CNI_PATH` and `binDir` set to `cni_path`.
    fn run_as(&self, plexus_dir: &Path, cni_path: &Path, cmd: &str, conf: &Value) -> Output {
        let mut conf = conf.clone();
        conf["binDir"] = json!(cni_path);
        self.exec_plexus(&plexus_dir.join("plexus"), cni_path, cmd, &conf)
    }

    /// ADD, CHECK, a failing ADD (a device that does not exist), DEL, DEL.
    fn pass(&self, plexus_dir: &Path, cni_path: &Path, conf: &Value) -> Pass {
        let mut outputs = Vec::new();
        let mut run = |cmd: &str, conf: &Value| {
            let out = self.run_as(plexus_dir, cni_path, cmd, conf);
            outputs.push((
                cmd.to_string(),
                out.status.code(),
                String::from_utf8_lossy(&out.stdout).into_owned(),
            ));
            out
        };
        let out = run("ADD", conf);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let pod_after_add = (
            addresses(&self.pod, "eth0"),
            addresses(&self.pod, "net1"),
            default_routes(&self.pod),
        );
        run("CHECK", conf);
        run("DEL", conf);
        let mut bad = conf.clone();
        bad["delegates"][0]["device"] = json!("pxnosuchdev0");
        run("ADD", &bad);
        run("DEL", conf);
        Pass {
            outputs,
            pod_after_add,
            host_after_del: (
                self.host.link(self.vf.a()).is_some(),
                self.host.link(self.eth.a()).is_some(),
            ),
            pod_after_del: (
                self.pod.link("net1").is_some(),
                self.pod.link("eth0").is_some(),
            ),
        }
    }
}

/// A directory next to the built binaries (same file system, so hard links
/// work) holding a link of `plexus` and the given files.
fn plexus_dir(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("pxinproc")
        .tempdir_in(bin_dir())
        .unwrap();
    std::fs::hard_link(env!("CARGO_BIN_EXE_plexus"), dir.path().join("plexus")).unwrap();
    for (name, text) in files {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    }
    dir
}

/// Our host-device and static run inside the plexus process when they are
/// the copies installed next to it, with the same stdout, exit codes and
/// kernel side effects as when they are exec'd. In the in-process pass the
/// "installed" host-device and static are scripts that exit 99, so any exec
/// of them would fail the pass.
#[test]
fn own_delegates_in_process_match_exec() {
    for version in ["0.4.0", "1.1.0"] {
        let rig = Rig::new();
        let conf = rig.conf(version);
        let trap = "#!/bin/sh\ncat >/dev/null\nexit 99\n";
        let inproc = plexus_dir(&[("host-device", trap), ("static", trap)]);
        let exec_only = plexus_dir(&[]);
        let a = rig.pass(inproc.path(), inproc.path(), &conf);
        // The real binaries, exec'd: they are not next to this plexus.
        let b = rig.pass(exec_only.path(), &bin_dir(), &conf);
        assert_eq!(a, b, "{version}");
        assert_eq!(a.pod_after_add.1, vec!["203.0.113.7/24"]);
        assert_eq!(a.host_after_del, (true, true));
        assert_eq!(a.outputs[3].1, Some(b.outputs[3].1.unwrap()));
        assert_ne!(
            a.outputs[3].1,
            Some(0),
            "the bad ADD fails: {:?}",
            a.outputs[3]
        );
    }
}
