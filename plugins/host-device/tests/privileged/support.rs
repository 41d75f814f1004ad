//! The rig: host and pod namespaces, a veth VF, and the binary run in the host.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use plexus_testkit::net::{bin_dir, bin_path, require_root, unique_name, TestNs, Veth, VethEnd};
use serde_json::{json, Value};

pub(crate) const VF_MAC: &str = "02:42:c6:33:64:05";

/// Host and pod namespaces with a veth "VF" (MTU 1400, up) in the host.
pub(crate) struct Rig {
    pub(crate) host: TestNs,
    pub(crate) pod: TestNs,
    pub(crate) veth: Veth,
    pub(crate) data: tempfile::TempDir,
}

impl Rig {
    pub(crate) fn new() -> Self {
        require_root();
        let _ = bin_path("static");
        let host = TestNs::new("pxhh");
        let pod = TestNs::new("pxhp");
        let mut veth = Veth::create(
            VethEnd::new(unique_name("pxvf"))
                .in_ns(&host)
                .mac(VF_MAC)
                .mtu(1400)
                .up(),
            VethEnd::new(unique_name("pxwire")).in_ns(&host).up(),
        );
        veth.may_visit(&pod);
        Rig {
            host,
            pod,
            veth,
            data: tempfile::tempdir().unwrap(),
        }
    }

    pub(crate) fn vf(&self) -> &str {
        self.veth.a()
    }

    pub(crate) fn conf(&self, version: &str, extra: Value) -> Value {
        let mut c = json!({
            "cniVersion": version, "name": "sriov-vnic-1", "type": "host-device",
            "device": self.vf(), "dataDir": self.data.path(),
            "ipam": {"type": "static",
                "addresses": [{"address": "198.51.100.7/24", "gateway": "198.51.100.1"}],
                "routes": [{"dst": "203.0.113.0/24"}],
                "dns": {"nameservers": ["198.51.100.53"]}}
        });
        for (k, v) in extra.as_object().unwrap() {
            if v.is_null() {
                c.as_object_mut().unwrap().remove(k);
            } else {
                c[k] = v.clone();
            }
        }
        c
    }

    /// Runs the binary in the host namespace.
    pub(crate) fn run(&self, cmd: &str, cid: &str, netns: &str, stdin: &[u8]) -> Output {
        let bins = bin_dir();
        let env = [
            ("CNI_COMMAND", cmd),
            ("CNI_CONTAINERID", cid),
            ("CNI_NETNS", netns),
            ("CNI_IFNAME", "net1"),
            ("CNI_PATH", bins.to_str().unwrap()),
        ];
        self.run_env(&env, stdin)
    }

    pub(crate) fn run_env(&self, env: &[(&str, &str)], stdin: &[u8]) -> Output {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", self.host.name()])
            .arg(env!("CARGO_BIN_EXE_host-device"))
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            c.env(k, v);
        }
        let mut child = c.spawn().unwrap();
        child.stdin.take().unwrap().write_all(stdin).unwrap();
        child.wait_with_output().unwrap()
    }

    pub(crate) fn pod_path(&self) -> String {
        self.pod.path().to_string_lossy().into_owned()
    }

    pub(crate) fn add(&self, conf: &Value) -> Output {
        self.run(
            "ADD",
            "c1",
            &self.pod_path(),
            &serde_json::to_vec(conf).unwrap(),
        )
    }

    pub(crate) fn del(&self, conf: &Value) -> Output {
        self.run(
            "DEL",
            "c1",
            &self.pod_path(),
            &serde_json::to_vec(conf).unwrap(),
        )
    }

    /// The VF is on the host under its name, MTU 1400, up, no alias.
    pub(crate) fn assert_restored(&self) {
        let l = self
            .host
            .link(self.vf())
            .unwrap_or_else(|| panic!("{} not back on the host: {}", self.vf(), self.host.links()));
        assert_eq!(l["mtu"], 1400, "{l}");
        assert!(flags(&l).contains(&"UP".to_string()), "{l}");
        assert!(l.get("ifalias").is_none(), "{l}");
        assert_eq!(l["address"], VF_MAC);
        assert!(self.pod.link("net1").is_none());
        assert!(state_files(self.data.path()).is_empty());
    }
}

pub(crate) fn flags(l: &Value) -> Vec<String> {
    l["flags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap().to_string())
        .collect()
}

pub(crate) fn state_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".json"))
                .collect()
        })
        .unwrap_or_default()
}

pub(crate) fn ok_json(o: &Output) -> Value {
    assert!(
        o.status.success(),
        "rc {:?}\nstdout {}\nstderr {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    if o.stdout.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&o.stdout).unwrap()
    }
}

pub(crate) fn err_json(o: &Output) -> Value {
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    serde_json::from_slice(&o.stdout).unwrap()
}

pub(crate) fn pod_addrs(rig: &Rig) -> Vec<String> {
    rig.pod
        .addrs("net1")
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["family"] == "inet")
        .map(|i| format!("{}/{}", i["local"].as_str().unwrap(), i["prefixlen"]))
        .collect()
}
