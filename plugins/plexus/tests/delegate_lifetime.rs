//! A delegate dies with the plexus that ran it: a runtime that SIGKILLs a
//! plugin mid-ADD sends DEL next, and a delegate left running would
//! overtake that DEL (e.g. move a VF into a pod nobody DELs again). The
//! real `plexus` binary, the fake API, and a cluster delegate script that
//! records its pid and sleeps.

#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use plexus_testkit::kube::FakeApiServer;
use serde_json::json;

/// Records its pid, then becomes `sleep` (same pid, pdeathsig kept).
const SLOW_DELEGATE: &str = "#!/bin/sh\ncat >/dev/null\necho $$ > \"$PLEXUS_TEST_PIDFILE.tmp\"\nmv \"$PLEXUS_TEST_PIDFILE.tmp\" \"$PLEXUS_TEST_PIDFILE\"\nexec sleep 60\n";

/// Kills the delegate if the test fails before it is gone.
struct Reap(Option<i32>);

impl Drop for Reap {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
    }
}

/// Alive and not a zombie.
fn running(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        !s.rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
    })
}

fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn write_kubeconfig(path: &Path, server: &str) {
    let kc = json!({"apiVersion":"v1","kind":"Config",
        "clusters":[{"name":"c","cluster":{"server":server}}],
        "users":[{"name":"u","user":{}}],
        "contexts":[{"name":"x","context":{"cluster":"c","user":"u"}}],
        "current-context":"x"});
    std::fs::write(path, kc.to_string()).unwrap();
}

#[test]
fn delegate_is_killed_with_a_killed_plexus() {
    let api = FakeApiServer::start().unwrap();
    let pod = api
        .put_pod(json!({"apiVersion":"v1","kind":"Pod",
            "metadata":{"name":"p","namespace":"default"},"spec":{}}))
        .unwrap();
    let uid = pod["metadata"]["uid"].as_str().unwrap().to_owned();
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let script = bin.join("slow-cni");
    std::fs::write(&script, SLOW_DELEGATE).unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    write_kubeconfig(&dir.path().join("kubeconfig"), &api.url());
    let conf = json!({"cniVersion":"1.0.0","name":"plexus-cni-network","type":"plexus",
        "kubeconfig": dir.path().join("kubeconfig"), "cniDir": dir.path().join("cache"),
        "confDir": dir.path().join("net.d"), "binDir": bin,
        "delegates":[{"cniVersion":"1.0.0","name":"cluster","type":"slow-cni"}]});
    let pidfile = dir.path().join("delegate.pid");
    let mut plexus = Command::new(env!("CARGO_BIN_EXE_plexus"))
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("CNI_COMMAND", "ADD")
        .env("CNI_CONTAINERID", "c0ffee02")
        .env("CNI_NETNS", "/var/run/netns/plexus-lifetime-test")
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", &bin)
        .env(
            "CNI_ARGS",
            format!("K8S_POD_NAMESPACE=default;K8S_POD_NAME=p;K8S_POD_UID={uid}"),
        )
        .env("PLEXUS_TEST_PIDFILE", &pidfile)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    plexus
        .stdin
        .take()
        .unwrap()
        .write_all(conf.to_string().as_bytes())
        .unwrap();
    let mut reap = Reap(None);
    wait_for("the delegate starts", Duration::from_secs(20), || {
        pidfile.exists()
    });
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    reap.0 = Some(pid);
    assert!(running(pid), "delegate {pid} not running before the kill");
    plexus.kill().unwrap();
    plexus.wait().unwrap();
    wait_for("the orphaned delegate dies", Duration::from_secs(2), || {
        !running(pid)
    });
}
