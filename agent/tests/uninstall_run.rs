//! `plexus-agent run` stopped by SIGTERM against the fake API server: it
//! keeps the node's install on a restart or rolling update (its DaemonSet
//! exists, or the API is unreachable) and takes Plexus off the node (files
//! and VNIC configuration) when the DaemonSet is deleted, deleted in the
//! foreground, or its service account is gone (401).

#![allow(clippy::unwrap_used)]

use std::fs;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use plexus_sysfs::testing::{FakeSysfs, FunctionSpec};
use plexus_testkit::imds::FakeImds;
use plexus_testkit::kube::{FakeApiServer, Options};
use plexus_testkit::net::{require_root, TestNs, Veth, VethEnd};
use serde_json::{json, Value};

const DS_PATH: &str = "/apis/apps/v1/namespaces/kube-system/daemonsets/plexus";

fn vnics() -> Value {
    json!([
        {"vnicId": "ocid1.vnic.primary", "privateIp": "198.51.100.10", "macAddr": "02:00:17:DD:00:01",
         "virtualRouterIp": "198.51.100.1", "subnetCidrBlock": "198.51.100.0/25"},
        {"vnicId": "ocid1.vnic.one", "privateIp": "203.0.113.93", "macAddr": "02:00:17:DD:00:02",
         "virtualRouterIp": "203.0.113.1", "subnetCidrBlock": "203.0.113.0/24"}
    ])
}

fn daemonset() -> Value {
    json!({"apiVersion": "apps/v1", "kind": "DaemonSet",
           "metadata": {"name": "plexus", "namespace": "kube-system"},
           "spec": {"selector": {"matchLabels": {"app": "plexus"}}}})
}

/// One node: a test namespace with a VF, fake sysfs, temp CNI dirs with
/// flannel as primary, a fake IMDS.
struct Node {
    ns: TestNs,
    _vf: Veth,
    imds: FakeImds,
    tmp: tempfile::TempDir,
}

impl Node {
    fn new() -> Self {
        require_root();
        let ns = TestNs::new("pxrm");
        let vf = Veth::create(
            VethEnd::new("vf1").in_ns(&ns).mac("02:00:17:dd:00:02"),
            VethEnd::new("vf1p").in_ns(&ns).up(),
        );
        let tmp = tempfile::tempdir().unwrap();
        let r = tmp.path();
        for d in ["image", "bin", "net.d", "sa", "run"] {
            fs::create_dir_all(r.join(d)).unwrap();
        }
        for b in ["plexus", "host-device", "static", "vnic"] {
            fs::write(r.join("image").join(b), b).unwrap();
        }
        fs::write(r.join("sa/token"), "token-1").unwrap();
        fs::write(r.join("sa/ca.crt"), "CA").unwrap();
        fs::write(
            r.join("net.d/10-flannel.conflist"),
            r#"{"cniVersion":"0.3.1","name":"cbr0","plugins":[{"type":"flannel"}]}"#,
        )
        .unwrap();
        let sys = FakeSysfs::new(&r.join("host")).unwrap();
        sys.add_function(
            &FunctionSpec::new("0000:00:05.0", 0x15b3, 0x101e)
                .driver("mlx5_core")
                .netdev("vf1", Some("02:00:17:dd:00:02")),
        )
        .unwrap();
        Self {
            ns,
            _vf: vf,
            imds: FakeImds::start(vnics()).unwrap(),
            tmp,
        }
    }

    fn path(&self, s: &str) -> PathBuf {
        self.tmp.path().join(s)
    }

    fn vf_addrs(&self) -> usize {
        let a = self.ns.addrs("vf1");
        let list = a.as_array().unwrap();
        list.iter().filter(|a| a["family"] == "inet").count()
    }

    /// Starts `run`, waits until it installed and configured the VF.
    fn start(&self, api: &str) -> Agent {
        self.start_with(api, &["--no-device-plugin"])
    }

    fn start_with(&self, api: &str, extra: &[&str]) -> Agent {
        let p = |s: &str| self.path(s).to_string_lossy().into_owned();
        let root = self.path("host");
        let spawned = std::time::SystemTime::now();
        let child = Command::new(env!("CARGO_BIN_EXE_plexus-agent"))
            .args(["--imds-url", &self.imds.url(), "--netns", self.ns.name()])
            .args(["--host-root", &root.to_string_lossy()])
            .args(["--state-file", &p("run/state.json")])
            .args([
                "--host-device-dir",
                &p("hd"),
                "--meta-cache-dir",
                &p("meta"),
            ])
            .args(["--cni-bin-dir", &p("bin"), "--cni-conf-dir", &p("net.d")])
            .args(["run", "--source-bin-dir", &p("image")])
            .args(["--token-file", &p("sa/token"), "--ca-file", &p("sa/ca.crt")])
            .args(["--ready-file", &p("run/ready"), "--api-server", api])
            .args(["--interval", "1", "--install-interval", "1"])
            .args(["--metrics-addr", ""])
            .args(extra)
            .args(["--daemonset", "plexus"])
            .env_clear()
            .env("POD_NAMESPACE", "kube-system")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let agent = Agent(Some(child));
        // The ready file of an earlier agent is removed at start: a new
        // one (mtime after the spawn) means this agent installed.
        let fresh = |p: PathBuf| {
            fs::metadata(p)
                .and_then(|m| m.modified())
                .is_ok_and(|t| t >= spawned)
        };
        wait_for("install, ready and VF configured", || {
            self.path("net.d/00-plexus.conflist").exists()
                && fresh(self.path("run/ready"))
                && self.path("run/state.json").exists()
                && self.vf_addrs() == 1
        });
        agent
    }

    fn installed(&self) -> bool {
        [
            "net.d/00-plexus.conflist",
            "net.d/plexus.d/token",
            "bin/plexus",
        ]
        .iter()
        .all(|f| self.path(f).exists())
    }

    fn removed(&self) -> bool {
        let gone = [
            "net.d/00-plexus.conflist",
            "net.d/plexus.d",
            "bin/plexus",
            "bin/host-device",
            "run/ready",
            "run/state.json",
        ];
        gone.iter().all(|f| !self.path(f).exists())
            && self.path("net.d/10-flannel.conflist").exists()
            && self.vf_addrs() == 0
            && !rules(&self.ns).contains("lookup 101")
    }
}

fn rules(ns: &TestNs) -> String {
    String::from_utf8_lossy(&ns.ip(&["rule", "show"]).stdout).into_owned()
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(15);
    while Instant::now() < end {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out waiting for {what}");
}

struct Agent(Option<Child>);

impl Agent {
    /// SIGTERM, as the kubelet sends; returns the exit status and stderr.
    fn terminate(mut self) -> (bool, String) {
        let mut child = self.0.take().unwrap();
        let pid = child.id().to_string();
        assert!(Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success());
        let started = Instant::now();
        let out = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "no exit within the grace period"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut err = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        eprintln!("stopped in {:?}", started.elapsed());
        (out.success(), err)
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(c) = self.0.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn api() -> FakeApiServer {
    FakeApiServer::start_with(Options {
        token: Some("token-1".into()),
        seed: vec![daemonset()],
        ..Options::default()
    })
    .unwrap()
}

/// `DELETE` with `propagationPolicy=Foreground`, as `kubectl delete
/// --cascade=foreground` sends it.
fn delete_foreground(api: &FakeApiServer, path: &str) -> String {
    let mut s = std::net::TcpStream::connect(api.addr()).unwrap();
    let body = r#"{"kind":"DeleteOptions","apiVersion":"v1","propagationPolicy":"Foreground"}"#;
    let req = format!(
        "DELETE {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer token-1\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    resp
}

#[test]
fn rolling_update_keeps_the_node_and_removal_cleans_it() {
    let node = Node::new();
    let api = api();

    // Restart / rolling update: the DaemonSet is there, everything stays.
    let (ok, err) = node.start(&api.url()).terminate();
    assert!(ok, "{err}");
    assert!(err.contains("node keeps Plexus"), "{err}");
    assert!(node.installed() && node.vf_addrs() == 1);
    let asked = api.requests();
    let get = asked.iter().find(|r| r.path == DS_PATH).unwrap();
    assert_eq!(get.method, "GET");
    assert_eq!(get.authorization.as_deref(), Some("Bearer token-1"));

    // API unreachable: keep (documented), never guess.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let (ok, err) = node.start(&url).terminate();
    assert!(ok, "{err}");
    assert!(err.contains("cannot tell"), "{err}");
    assert!(node.installed() && node.vf_addrs() == 1);

    // `kubectl delete -f deploy/plexus.yaml`: the DaemonSet is gone (404).
    let agent = node.start(&api.url());
    assert!(api.delete_object(DS_PATH).is_some());
    let (ok, err) = agent.terminate();
    assert!(ok, "{err}");
    assert!(err.contains("404"), "{err}");
    assert!(node.removed(), "node not clean: {err}");
}

#[test]
fn foreground_deletion_and_a_deleted_service_account_clean_the_node() {
    let node = Node::new();
    let api = api();

    let agent = node.start(&api.url());
    let resp = delete_foreground(&api, DS_PATH);
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(api.get_object(DS_PATH).unwrap()["metadata"]["deletionTimestamp"].is_string());
    let (ok, err) = agent.terminate();
    assert!(ok, "{err}");
    assert!(err.contains("DaemonSet deleted at"), "{err}");
    assert!(node.removed(), "node not clean: {err}");

    // Reinstall, then the manifest's ServiceAccount goes first: 401.
    let api = self::api();
    let agent = node.start(&api.url());
    api.set_token(Some("token-of-another-account"));
    let (ok, err) = agent.terminate();
    assert!(ok, "{err}");
    assert!(err.contains("401"), "{err}");
    assert!(node.removed(), "node not clean: {err}");
}

/// One `--kubelet-root` (microk8s' here) places the device plugin's
/// registration and the PodResources socket the meta plugin is told about.
#[test]
fn kubelet_root_places_device_plugin_and_pod_resources_socket() {
    let node = Node::new();
    let api = api();
    let kubelet = plexus_testkit::podresources::FakeRegistration::start().unwrap();
    let root = node.path("var/snap/microk8s/common/var/lib/kubelet");
    fs::create_dir_all(&root).unwrap();
    std::os::unix::fs::symlink(kubelet.dir(), root.join("device-plugins")).unwrap();
    let root_s = root.to_string_lossy().into_owned();
    let agent = node.start_with(&api.url(), &["--kubelet-root", &root_s]);
    let reqs = kubelet.wait_for_requests(1, Duration::from_secs(10));
    assert_eq!(reqs[0].resource_name, "plexus.io/vf");
    assert!(kubelet.dir().join(&reqs[0].endpoint).exists());
    let conf: Value =
        serde_json::from_slice(&fs::read(node.path("net.d/00-plexus.conflist")).unwrap()).unwrap();
    assert_eq!(
        conf["plugins"][0]["podResourcesSocket"],
        format!("{root_s}/pod-resources/kubelet.sock").as_str()
    );
    let (ok, err) = agent.terminate();
    assert!(ok, "{err}");
    assert!(node.installed(), "a restart must keep the install: {err}");
}
