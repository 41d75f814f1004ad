//! Hostile input against the real binaries: every case must end with a CNI
//! error on stdout (spec `code`, `msg`), a non-zero exit, and no change on
//! the node: no file created or removed in the plugin's state dirs, no link
//! added, removed or renamed in the namespace the plugin runs in.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use std::io::Write;

use plexus_testkit::kube::FakeApiServer;
use plexus_testkit::net::bin_path;
use serde_json::{json, Value};

/// Everything under `dir` (paths relative to it), and the links of this
/// namespace: what "nothing changed" is checked against.
fn snapshot(dir: &Path) -> (BTreeSet<PathBuf>, BTreeSet<String>) {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeSet<PathBuf>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            let p = e.path();
            out.insert(p.strip_prefix(root).unwrap().to_path_buf());
            if p.is_dir() {
                walk(root, &p, out);
            }
        }
    }
    let mut files = BTreeSet::new();
    walk(dir, dir, &mut files);
    let links = std::fs::read_dir("/sys/class/net")
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    (files, links)
}

struct Case<'a> {
    what: &'a str,
    command: &'a str,
    env: Vec<(&'a str, &'a OsStr)>,
    stdin: Vec<u8>,
    code: u64,
}

/// Runs `plugin` with a valid base env overridden by `case.env`, asserts
/// the CNI error and that `state` and the links did not change.
fn assert_refused(plugin: &str, state: &Path, case: &Case<'_>) {
    let before = snapshot(state);
    let mut cmd = Command::new(bin_path(plugin));
    cmd.env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("CNI_COMMAND", case.command)
        .env("CNI_CONTAINERID", "c0ffee02")
        .env("CNI_NETNS", "/var/run/netns/plexus-hostile-none")
        .env("CNI_IFNAME", "net1")
        .env("CNI_PATH", bin_path(plugin).parent().unwrap())
        .env(
            "CNI_ARGS",
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0",
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in &case.env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    // A plugin that refuses the env before reading stdin closes the pipe.
    let _ = child.stdin.take().unwrap().write_all(&case.stdin);
    let out = child.wait_with_output().unwrap();
    let ctx = format!(
        "{plugin}: {}: stdout {} stderr {}",
        case.what,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_ne!(out.status.code(), Some(0), "{ctx}");
    let err: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {ctx}"));
    assert_eq!(err["code"].as_u64(), Some(case.code), "{ctx}");
    assert!(err["msg"].as_str().is_some_and(|m| !m.is_empty()), "{ctx}");
    assert!(err["cniVersion"].is_string(), "{ctx}");
    assert_eq!(snapshot(state), before, "{ctx}: something changed");
}

fn conf(plugin: &str, state: &Path) -> Value {
    let ipam = json!({"type": "static",
        "addresses": [{"address": "198.51.100.77/24", "gateway": "198.51.100.1"}]});
    match plugin {
        "host-device" => json!({"cniVersion": "1.0.0", "name": "hostile", "type": "host-device",
            "device": "hostile0", "dataDir": state.join("hd"), "ipam": ipam}),
        "vnic" => json!({"cniVersion": "1.0.0", "name": "hostile", "type": "host-device",
            "device": "hostile0", "ipam": {"type": "vnic", "stateFile": state.join("state.json"),
            "imdsUrl": "http://127.0.0.1:9"}}),
        "static" => json!({"cniVersion": "1.0.0", "name": "hostile", "type": "bridge",
            "ipam": ipam}),
        _ => json!({"cniVersion": "1.0.0", "name": "plexus-cni-network", "type": "plexus",
            "cniDir": state.join("cache"), "confDir": state.join("net.d"),
            "binDir": state.join("bin"), "deviceInfoDir": state.join("devinfo"),
            "delegates": [{"cniVersion": "1.0.0", "name": "cluster", "type": "static",
                "ipam": ipam}]}),
    }
}

fn env_cases<'a>(fifo: &'a OsStr, good: &[u8]) -> Vec<Case<'a>> {
    let case = |what, command, env: Vec<(&'a str, &'a OsStr)>, code| Case {
        what,
        command,
        env,
        stdin: good.to_vec(),
        code,
    };
    let os = |s: &'a str| OsStr::new(s);
    let long_id: &'static str = Box::leak("a".repeat(300).into_boxed_str());
    // The test runner's namespace is the one the plugin inherits.
    let runner_ns: &'static str =
        Box::leak(format!("/proc/{}/ns/net", std::process::id()).into_boxed_str());
    vec![
        case(
            "container id with ..",
            "ADD",
            vec![("CNI_CONTAINERID", os("../../etc/x"))],
            4,
        ),
        case(
            "container id with /",
            "DEL",
            vec![("CNI_CONTAINERID", os("a/b"))],
            4,
        ),
        case(
            "container id too long",
            "ADD",
            vec![("CNI_CONTAINERID", os(long_id))],
            4,
        ),
        case(
            "container id not UTF-8",
            "ADD",
            vec![("CNI_CONTAINERID", OsStr::from_bytes(b"abc\xff\xfe"))],
            4,
        ),
        case("ifname ..", "ADD", vec![("CNI_IFNAME", os(".."))], 4),
        case("ifname with /", "DEL", vec![("CNI_IFNAME", os("a/b"))], 4),
        case(
            "ifname too long",
            "ADD",
            vec![("CNI_IFNAME", os("abcdefghijklmnop"))],
            4,
        ),
        case(
            "ifname not UTF-8",
            "ADD",
            vec![("CNI_IFNAME", OsStr::from_bytes(b"n\xff"))],
            4,
        ),
        case(
            "netns is our own",
            "ADD",
            vec![("CNI_NETNS", os("/proc/self/ns/net"))],
            4,
        ),
        case(
            "netns is the node's (DEL)",
            "DEL",
            vec![("CNI_NETNS", os(runner_ns))],
            4,
        ),
        case("netns is a FIFO", "ADD", vec![("CNI_NETNS", fifo)], 4),
        case(
            "netns is a directory",
            "CHECK",
            vec![("CNI_NETNS", os("/tmp"))],
            4,
        ),
        case(
            "netns relative",
            "ADD",
            vec![("CNI_NETNS", os("netns/x"))],
            4,
        ),
    ]
}

fn stdin_cases(good: &Value) -> Vec<Case<'static>> {
    let case = |what, stdin: Vec<u8>, code| Case {
        what,
        command: "ADD",
        env: Vec::new(),
        stdin,
        code,
    };
    let mut bad_name = good.clone();
    bad_name["name"] = json!("../../x");
    vec![
        case("deeply nested stdin", "[".repeat(100_000).into_bytes(), 6),
        case("non-UTF-8 stdin", b"{\"name\":\"\xff\"}".to_vec(), 6),
        case(
            "truncated stdin",
            b"{\"cniVersion\":\"1.0.0\",\"name\":".to_vec(),
            6,
        ),
        case("network name with ..", bad_name.to_string().into_bytes(), 7),
    ]
}

#[test]
fn hostile_env_and_stdin_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    for plugin in ["host-device", "static", "vnic", "plexus"] {
        let good = conf(plugin, &state);
        let good_bytes = good.to_string().into_bytes();
        for case in env_cases(fifo.as_os_str(), &good_bytes) {
            assert_refused(plugin, &state, &case);
        }
        for case in stdin_cases(&good) {
            assert_refused(plugin, &state, &case);
        }
    }
}

/// A pod whose name is not a Kubernetes name, and a NAD that names node
/// paths: both refused by the meta plugin before any delegate runs.
#[test]
#[allow(clippy::too_many_lines)] // one hostile case list, read top to bottom
fn plexus_refuses_hostile_pod_names_and_nad_node_paths() {
    let api = FakeApiServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir_all(state.join("net.d")).unwrap();
    std::fs::create_dir_all(state.join("cache")).unwrap();
    let fifo = dir.path().join("fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    api.put_pod(json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web-0", "namespace": "default", "annotations":
            {"k8s.v1.cni.cncf.io/networks": "evil"}}, "spec": {}}))
        .unwrap();
    api.put_nad(
        "default",
        "evil",
        &json!({"cniVersion": "1.0.0", "type": "host-device", "device": "hostile0",
            "ipam": {"type": "vnic", "stateFile": fifo}})
        .to_string(),
    )
    .unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        json!({"apiVersion": "v1", "kind": "Config",
            "clusters": [{"name": "c", "cluster": {"server": api.url()}}],
            "users": [{"name": "u", "user": {}}],
            "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
            "current-context": "x"})
        .to_string(),
    )
    .unwrap();
    let mut good = conf("plexus", &state);
    good["kubeconfig"] = json!(kubeconfig);
    good["apiRetryBudgetSeconds"] = json!(0);
    let stdin = good.to_string().into_bytes();
    for (what, args, code) in [
        (
            "pod named ..",
            "K8S_POD_NAMESPACE=default;K8S_POD_NAME=..",
            4,
        ),
        ("namespace ..", "K8S_POD_NAMESPACE=..;K8S_POD_NAME=web-0", 4),
        (
            "pod name with /",
            "K8S_POD_NAMESPACE=default;K8S_POD_NAME=a/b",
            4,
        ),
        (
            "NAD sets stateFile",
            "K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0",
            7,
        ),
    ] {
        let case = Case {
            what,
            command: "ADD",
            env: vec![("CNI_ARGS", OsStr::new(args))],
            stdin: stdin.clone(),
            code,
        };
        assert_refused("plexus", &state, &case);
    }
    // The admin allows the key: the NAD passes the policy and the ADD
    // fails later (no such device), still changing nothing.
    good["nadNodeKeys"] = json!(["stateFile"]);
    let allowed = good.to_string().into_bytes();
    let before = snapshot(&state);
    let out = Command::new(bin_path("plexus"))
        .env_clear()
        .env("CNI_COMMAND", "ADD")
        .env("CNI_CONTAINERID", "c0ffee03")
        .env("CNI_NETNS", "/var/run/netns/plexus-hostile-none")
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", state.join("bin"))
        .env("CNI_ARGS", "K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            c.stdin.take().unwrap().write_all(&allowed)?;
            c.wait_with_output()
        })
        .unwrap();
    let err: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        !err["msg"]
            .as_str()
            .unwrap_or_default()
            .contains("nadNodeKeys"),
        "{err}"
    );
    assert_ne!(out.status.code(), Some(0));
    // A failed ADD rolls back: nothing left in the state dir or the links.
    assert_eq!(snapshot(&state), before, "{err}");
}

/// The API token never reaches the plugin's log, even at its most verbose
/// level and when the API call fails.
#[test]
fn token_never_reaches_the_log() {
    const TOKEN: &str = "plexus-secret-token-5f1d2a";
    let api = FakeApiServer::start().unwrap();
    api.put_pod(json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web-0", "namespace": "default", "annotations":
            {"k8s.v1.cni.cncf.io/networks": "missing-nad"}}, "spec": {}}))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir_all(state.join("cache")).unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        json!({"apiVersion": "v1", "kind": "Config",
            "clusters": [{"name": "c", "cluster": {"server": api.url()}}],
            "users": [{"name": "u", "user": {"token": TOKEN}}],
            "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
            "current-context": "x"})
        .to_string(),
    )
    .unwrap();
    let log = dir.path().join("plexus.log");
    let mut conf = conf("plexus", &state);
    conf["kubeconfig"] = json!(kubeconfig);
    conf["logFile"] = json!(log);
    conf["logLevel"] = json!("debug");
    conf["apiRetryBudgetSeconds"] = json!(0);
    let mut child = Command::new(bin_path("plexus"))
        .env_clear()
        .env("RUST_LOG", "trace")
        .env("CNI_COMMAND", "ADD")
        .env("CNI_CONTAINERID", "c0ffee04")
        .env("CNI_NETNS", "/var/run/netns/plexus-hostile-none")
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", state.join("bin"))
        .env("CNI_ARGS", "K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(conf.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_ne!(out.status.code(), Some(0), "the NAD does not exist");
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged.contains("missing-nad"),
        "the log has the failure: {logged}"
    );
    for text in [
        logged.as_str(),
        &String::from_utf8_lossy(&out.stdout),
        &String::from_utf8_lossy(&out.stderr),
    ] {
        assert!(!text.contains(TOKEN), "token leaked: {text}");
    }
    // The token did reach the API server (so it was really in use).
    assert!(api
        .requests()
        .iter()
        .any(|r| r.authorization.as_deref() == Some(&format!("Bearer {TOKEN}"))));
}
