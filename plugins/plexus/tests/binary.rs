//! Binary contract tests: the real `plexus` executable, explicit env and
//! stdin, a script delegate that records its calls, and the fake Kubernetes
//! API server recording every request. Asserts the exact API requests per
//! operation (ADD: GET pod, GET NAD, PATCH pods/status, then events; DEL
//! from cache: none).

#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use plexus_testkit::kube::FakeApiServer;
use serde_json::{json, Value};

const NS: &str = "default";
const POD: &str = "testpod";

/// A delegate that logs `COMMAND IFNAME NETNS` and, on ADD, prints a 1.0.0
/// result for `CNI_IFNAME`; `FAIL_<plugin>=1` in the env makes it fail.
const DELEGATE: &str = r#"#!/bin/sh
name=$(basename "$0")
cat >/dev/null
echo "$CNI_COMMAND $name $CNI_IFNAME" >> "$PLEXUS_TEST_LOG"
eval fail=\$FAIL_$(echo "$name" | tr '-' '_')
if [ "$fail" = "1" ] && [ "$CNI_COMMAND" = "ADD" ]; then
  echo '{"cniVersion":"1.0.0","code":11,"msg":"scripted failure","details":"'"$name"'"}'
  exit 1
fi
if [ "$CNI_COMMAND" = "ADD" ]; then
  case "$CNI_IFNAME" in eth0) ip=198.51.100.10/24;; *) ip=198.51.100.20/24;; esac
  printf '{"cniVersion":"1.0.0","interfaces":[{"name":"%s","mac":"0a:58:c6:33:64:0a","sandbox":"%s"}],"ips":[{"address":"%s","gateway":"198.51.100.1","interface":0}]}' "$CNI_IFNAME" "$CNI_NETNS" "$ip"
fi
"#;

struct Env {
    dir: tempfile::TempDir,
    uid: String,
}

impl Env {
    fn new(api: Option<&FakeApiServer>, networks: Option<&str>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        for name in ["cluster-cni", "sriov-cni"] {
            let p = bin.join(name);
            std::fs::write(&p, DELEGATE).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let mut uid = "9f1c1c2e-0000-4000-8000-000000000001".to_string();
        if let Some(api) = api {
            let mut ann = serde_json::Map::new();
            if let Some(n) = networks {
                ann.insert("k8s.v1.cni.cncf.io/networks".into(), json!(n));
            }
            let pod = api
                .put_pod(json!({"apiVersion":"v1","kind":"Pod",
                    "metadata":{"name":POD,"namespace":NS,"uid":uid,"annotations":ann},"spec":{}}))
                .unwrap();
            uid = pod["metadata"]["uid"].as_str().unwrap().to_string();
            api.put_nad(
                NS,
                "sriov-a",
                &json!({"cniVersion":"1.0.0","type":"sriov-cni"}).to_string(),
            )
            .unwrap();
        }
        let kubeconfig = dir.path().join("plexus.kubeconfig");
        let server = api.map_or("http://127.0.0.1:1".to_string(), FakeApiServer::url);
        std::fs::write(
            &kubeconfig,
            json!({"apiVersion":"v1","kind":"Config",
                "clusters":[{"name":"c","cluster":{"server":server}}],
                "users":[{"name":"u","user":{}}],
                "contexts":[{"name":"x","context":{"cluster":"c","user":"u"}}],
                "current-context":"x"})
            .to_string(),
        )
        .unwrap();
        std::fs::write(dir.path().join("calls.log"), "").unwrap();
        Self { dir, uid }
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    /// The plexus entry as the runtime passes it (name/cniVersion injected).
    fn conf(&self, version: &str, extra: Value) -> Value {
        let mut v = json!({
            "cniVersion": version,
            "name": "plexus-cni-network",
            "type": "plexus",
            "kubeconfig": self.path("plexus.kubeconfig"),
            "cniDir": self.path("cache"),
            "confDir": self.path("net.d"),
            "deviceInfoDir": self.path("devinfo"),
            "binDir": self.path("bin"),
            "apiTimeoutSeconds": 2,
            "apiRetryBudgetSeconds": 0,
            "delegates": [{"cniVersion":"1.0.0","name":"cluster","type":"cluster-cni"}]
        });
        for (k, val) in extra.as_object().unwrap() {
            v[k] = val.clone();
        }
        v
    }

    fn run(&self, command: &str, conf: &Value, extra_env: &[(&str, &str)]) -> (i32, Value, String) {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_plexus"));
        cmd.env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", "c0ffee01")
            .env("CNI_NETNS", "/var/run/netns/plexus-binary-test")
            .env("CNI_IFNAME", "eth0")
            .env("CNI_PATH", self.path("bin"))
            .env(
                "CNI_ARGS",
                format!(
                    "IgnoreUnknown=1;K8S_POD_NAMESPACE={NS};K8S_POD_NAME={POD};K8S_POD_INFRA_CONTAINER_ID=c0ffee01;K8S_POD_UID={}",
                    self.uid
                ),
            )
            .env("PLEXUS_TEST_LOG", self.path("calls.log"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        // VERSION may exit without reading stdin: a broken pipe is fine.
        let _ = child
            .stdin
            .take()
            .unwrap()
            .write_all(conf.to_string().as_bytes());
        let out = child.wait_with_output().unwrap();
        let stdout: Value = if out.stdout.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&out.stdout).unwrap()
        };
        (
            out.status.code().unwrap_or(-1),
            stdout,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn calls(&self) -> Vec<String> {
        std::fs::read_to_string(self.path("calls.log"))
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn cache_files(&self) -> Vec<String> {
        std::fs::read_dir(self.path("cache"))
            .map(|rd| {
                rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// `METHOD path` of every request except events, and the event count.
fn requests(api: &FakeApiServer) -> (Vec<String>, usize) {
    let all = api.requests();
    let events = all.iter().filter(|r| r.path.ends_with("/events")).count();
    let core = all
        .iter()
        .filter(|r| !r.path.ends_with("/events"))
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    (core, events)
}

fn cached(p: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

#[test]
fn add_then_del_exact_api_requests() {
    for version in ["0.3.1", "0.4.0", "1.0.0", "1.1.0"] {
        let api = FakeApiServer::start().unwrap();
        let env = Env::new(Some(&api), Some("sriov-a"));
        let conf = env.conf(version, json!({}));

        let (code, out, stderr) = env.run("ADD", &conf, &[]);
        assert_eq!(code, 0, "{out} {stderr}");
        assert_eq!(
            out["cniVersion"], version,
            "result converted to the caller's version"
        );
        assert_eq!(out["interfaces"][0]["name"], "eth0");
        let (core, events) = requests(&api);
        assert_eq!(
            core,
            vec![
                format!("GET /api/v1/namespaces/{NS}/pods/{POD}"),
                format!("GET /apis/k8s.cni.cncf.io/v1/namespaces/{NS}/network-attachment-definitions/sriov-a"),
                format!("PATCH /api/v1/namespaces/{NS}/pods/{POD}/status"),
            ]
        );
        assert_eq!(events, 2, "one AddedInterface event per network");
        let status = api.network_status(NS, POD).unwrap();
        assert_eq!(status[1]["name"], "default/sriov-a");
        assert_eq!(status[1]["interface"], "net1");
        assert_eq!(
            env.calls(),
            vec!["ADD cluster-cni eth0", "ADD sriov-cni net1"]
        );
        assert_eq!(env.cache_files(), vec!["c0ffee01-eth0.json"]);
        let entry = cached(&env.path("cache/c0ffee01-eth0.json"));
        assert_eq!(entry["kind"], "plexusCacheV1");

        api.clear_requests();
        let (code, _, stderr) = env.run("DEL", &conf, &[]);
        assert_eq!(code, 0, "{stderr}");
        assert!(
            api.requests().is_empty(),
            "DEL with a cache makes no API request"
        );
        assert_eq!(
            &env.calls()[2..],
            ["DEL sriov-cni net1", "DEL cluster-cni eth0"]
        );
        assert!(env.cache_files().is_empty());
        // containerd's second DEL: empty netns, no cache left.
        let (code, _, stderr) = env.run("DEL", &conf, &[("CNI_NETNS", "")]);
        assert_eq!(code, 0, "{stderr}");
        assert!(api.requests().is_empty());
    }
}

#[test]
fn runtime_annotations_mean_no_pod_get() {
    let api = FakeApiServer::start().unwrap();
    let env = Env::new(Some(&api), None);
    let conf = env.conf(
        "1.0.0",
        json!({"capabilities": {"io.kubernetes.cri.pod-annotations": true},
               "runtimeConfig": {"io.kubernetes.cri.pod-annotations": {"k8s.v1.cni.cncf.io/networks": "sriov-a"}}}),
    );
    let (code, out, stderr) = env.run("ADD", &conf, &[]);
    assert_eq!(code, 0, "{out} {stderr}");
    let (core, events) = requests(&api);
    assert_eq!(
        core,
        vec![
            format!("GET /apis/k8s.cni.cncf.io/v1/namespaces/{NS}/network-attachment-definitions/sriov-a"),
            format!("PATCH /api/v1/namespaces/{NS}/pods/{POD}/status"),
        ]
    );
    assert_eq!(events, 2);
}

#[test]
fn events_disabled_are_not_posted() {
    let api = FakeApiServer::start().unwrap();
    let env = Env::new(Some(&api), Some("sriov-a"));
    let (code, _, stderr) = env.run("ADD", &env.conf("1.0.0", json!({"events": false})), &[]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(requests(&api), (
        vec![
            format!("GET /api/v1/namespaces/{NS}/pods/{POD}"),
            format!("GET /apis/k8s.cni.cncf.io/v1/namespaces/{NS}/network-attachment-definitions/sriov-a"),
            format!("PATCH /api/v1/namespaces/{NS}/pods/{POD}/status"),
        ],
        0
    ));
}

#[test]
fn api_down_on_add_fails_cleanly_and_del_still_works() {
    // No server at all: clear error, nothing run, nothing cached.
    let env = Env::new(None, None);
    let conf = env.conf("1.0.0", json!({}));
    let (code, out, _) = env.run("ADD", &conf, &[]);
    assert_eq!(code, 1);
    assert_eq!(out["code"], 11, "{out}");
    assert!(
        out["msg"]
            .as_str()
            .unwrap()
            .contains("error getting pod default/testpod"),
        "{out}"
    );
    assert!(env.calls().is_empty());
    assert!(env.cache_files().is_empty());

    // Server goes away after ADD: DEL succeeds from the cache.
    let api = FakeApiServer::start().unwrap();
    let env = Env::new(Some(&api), Some("sriov-a"));
    let conf = env.conf("1.0.0", json!({}));
    assert_eq!(env.run("ADD", &conf, &[]).0, 0);
    drop(api);
    let (code, _, stderr) = env.run("DEL", &conf, &[]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        &env.calls()[2..],
        ["DEL sriov-cni net1", "DEL cluster-cni eth0"]
    );
}

#[test]
fn delegate_failure_rolls_back_and_keeps_the_delegate_error() {
    let api = FakeApiServer::start().unwrap();
    let env = Env::new(Some(&api), Some("sriov-a"));
    let conf = env.conf("1.0.0", json!({}));
    let (code, out, _) = env.run("ADD", &conf, &[("FAIL_sriov_cni", "1")]);
    assert_eq!(code, 1);
    assert_eq!(out["code"], 11);
    assert_eq!(out["details"], "sriov-cni");
    assert!(
        out["msg"]
            .as_str()
            .unwrap()
            .contains("\"default/sriov-a\" (net1): scripted failure"),
        "{out}"
    );
    assert_eq!(
        env.calls(),
        vec![
            "ADD cluster-cni eth0",
            "ADD sriov-cni net1",
            "DEL sriov-cni net1",
            "DEL cluster-cni eth0"
        ]
    );
    assert!(env.cache_files().is_empty());
    let (core, events) = requests(&api);
    assert_eq!(core.len(), 2, "no PATCH after a failed ADD: {core:?}");
    assert_eq!(events, 0);
}

#[test]
fn missing_delegate_binary() {
    let api = FakeApiServer::start().unwrap();
    let env = Env::new(Some(&api), None);
    std::fs::remove_file(env.path("bin/cluster-cni")).unwrap();
    let (code, out, _) = env.run("ADD", &env.conf("1.0.0", json!({})), &[]);
    assert_eq!(code, 1);
    assert!(
        out["msg"]
            .as_str()
            .unwrap()
            .contains("failed to find plugin \"cluster-cni\""),
        "{out}"
    );
}

#[test]
fn forbidden_namespace_and_unknown_nad() {
    let api = FakeApiServer::start().unwrap();
    let env = Env::new(Some(&api), Some("other/sriov-a"));
    let (code, out, _) = env.run(
        "ADD",
        &env.conf("1.0.0", json!({"namespaceIsolation": true})),
        &[],
    );
    assert_eq!((code, out["code"].as_i64()), (1, Some(7)));
    assert!(
        out["msg"].as_str().unwrap().contains("other/sriov-a"),
        "{out}"
    );
    assert_eq!(requests(&api).0.len(), 1, "only the pod GET");

    let api = FakeApiServer::start().unwrap();
    let env = Env::new(Some(&api), Some("nope"));
    let (code, out, _) = env.run("ADD", &env.conf("1.0.0", json!({})), &[]);
    assert_eq!(code, 1);
    assert!(
        out["msg"]
            .as_str()
            .unwrap()
            .contains("nope not found in namespace default"),
        "{out}"
    );
}

#[test]
fn check_replays_every_attachment() {
    let api = FakeApiServer::start().unwrap();
    let env = Env::new(Some(&api), Some("sriov-a"));
    let conf = env.conf("1.0.0", json!({}));
    assert_eq!(env.run("ADD", &conf, &[]).0, 0);
    api.clear_requests();
    let (code, _, stderr) = env.run("CHECK", &conf, &[]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        &env.calls()[2..],
        ["CHECK cluster-cni eth0", "CHECK sriov-cni net1"]
    );
    assert!(api.requests().is_empty());
}

#[test]
fn version_touches_nothing() {
    let env = Env::new(None, None);
    let (code, out, _) = env.run(
        "VERSION",
        &json!({"cniVersion": "1.0.0"}),
        &[("CNI_PATH", "")],
    );
    assert_eq!(code, 0);
    assert_eq!(out["supportedVersions"].as_array().unwrap().len(), 7);
    assert!(!env.path("cache").exists());
}

#[test]
fn device_id_from_the_kubelet_socket() {
    use plexus_testkit::podresources::FakePodResources;
    let kubelet = FakePodResources::start().unwrap();
    kubelet.add_container(NS, POD, "app", &[("oracle.com/vnic", &["0000:00:04.0"])]);
    let api = FakeApiServer::start().unwrap();
    let env = Env::new(Some(&api), Some("vnic"));
    api.put_object(json!({
        "apiVersion": "k8s.cni.cncf.io/v1",
        "kind": "NetworkAttachmentDefinition",
        "metadata": {"name": "vnic", "namespace": NS,
            "annotations": {"k8s.v1.cni.cncf.io/resourceName": "oracle.com/vnic"}},
        "spec": {"config": json!({"cniVersion":"1.0.0","type":"sriov-cni"}).to_string()},
    }))
    .unwrap();
    let conf = env.conf(
        "1.0.0",
        json!({"podResourcesSocket": kubelet.socket_path()}),
    );
    let (code, out, stderr) = env.run("ADD", &conf, &[]);
    assert_eq!(code, 0, "{out} {stderr}");
    assert_eq!(kubelet.calls(), vec![format!("Get {NS}/{POD}")]);
    let entry = cached(&env.path("cache/c0ffee01-eth0.json"));
    let att = &entry["attachments"][1];
    assert_eq!(att["deviceId"], "0000:00:04.0");
    assert_eq!(att["conf"]["plugins"][0]["pciBusID"], "0000:00:04.0");
    let status = api.network_status(NS, POD).unwrap();
    assert_eq!(
        status[1]["device-info"]["pci"]["pci-address"],
        "0000:00:04.0"
    );

    // Kubelet socket missing: a clear error naming the network and resource.
    let env2 = Env::new(Some(&api), Some("vnic"));
    let conf = env2.conf(
        "1.0.0",
        json!({"podResourcesSocket": env2.path("missing.sock"), "podResourcesTimeoutSeconds": 1}),
    );
    let (code, out, _) = env2.run("ADD", &conf, &[]);
    assert_eq!(code, 1);
    let msg = out["msg"].as_str().unwrap();
    assert!(
        msg.contains("default/vnic") && msg.contains("oracle.com/vnic"),
        "{msg}"
    );
}

#[test]
fn logs_go_to_the_log_file_never_stdout() {
    let api = FakeApiServer::start().unwrap();
    let env = Env::new(Some(&api), Some("sriov-a"));
    let log = env.path("plexus.log");
    let conf = env.conf(
        "1.0.0",
        json!({"logFile": log, "logLevel": "debug", "logToStderr": false}),
    );
    let (code, out, stderr) = env.run("ADD", &conf, &[]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(out["cniVersion"], "1.0.0", "stdout is only the result");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("delegate ADD"), "{text}");
    assert!(!stderr.contains("delegate ADD"), "{stderr}");
}
