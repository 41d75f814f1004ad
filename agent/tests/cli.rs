//! The `plexus-agent` binary as an operator runs it: `vnic plan/apply/
//! deconfigure --netns`, `install`, `status`, and `run` end to end (fake
//! IMDS, fake kubelet, fake sysfs, a test namespace), with its RSS measured.

#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use plexus_kubelet_api::deviceplugin::v1beta1 as api;
use plexus_sysfs::testing::{FakeSysfs, FunctionSpec};
use plexus_testkit::imds::FakeImds;
use plexus_testkit::net::{require_root, TestNs, Veth, VethEnd};
use plexus_testkit::podresources::FakeRegistration;
use serde_json::{json, Value};

/// The binary under test; `PLEXUS_AGENT_BIN` points the RSS measurement at
/// a release build.
fn bin() -> String {
    std::env::var("PLEXUS_AGENT_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_plexus-agent").into())
}

fn vnics() -> Value {
    json!([
        {"vnicId": "ocid1.vnic.primary", "privateIp": "198.51.100.10", "macAddr": "02:00:17:DD:00:01",
         "virtualRouterIp": "198.51.100.1", "subnetCidrBlock": "198.51.100.0/25"},
        {"vnicId": "ocid1.vnic.one", "privateIp": "203.0.113.93", "macAddr": "02:00:17:DD:00:02",
         "virtualRouterIp": "203.0.113.1", "subnetCidrBlock": "203.0.113.0/24"}
    ])
}

fn node() -> (TestNs, Veth) {
    require_root();
    let ns = TestNs::new("pxcli");
    let vf = Veth::create(
        VethEnd::new("vf1").in_ns(&ns).mac("02:00:17:dd:00:02"),
        VethEnd::new("vf1p").in_ns(&ns).up(),
    );
    (ns, vf)
}

fn v4(ns: &TestNs, dev: &str) -> Vec<Value> {
    ns.addrs(dev)
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["family"] == "inet")
        .cloned()
        .collect()
}

fn agent(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(bin());
    c.args(args).env_clear().env("RUST_LOG", "warn");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "plexus-agent failed: {}\nstdout: {}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn vnic_plan_apply_deconfigure_in_netns() {
    let (ns, _vf) = node();
    let fake = FakeImds::start(vnics()).unwrap();
    let url = fake.url();
    // The node's files in a temp root: sysfs describing vf1 as a VF, the
    // state file `apply` writes, empty CNI caches.
    let tmp = tempfile::tempdir().unwrap();
    let sys = FakeSysfs::new(tmp.path()).unwrap();
    sys.add_function(
        &FunctionSpec::new("0000:00:05.0", 0x15b3, 0x101e)
            .driver("mlx5_core")
            .netdev("vf1", Some("02:00:17:dd:00:02")),
    )
    .unwrap();
    let p = |s: &str| tmp.path().join(s).to_string_lossy().into_owned();
    let (root, state, hd, meta) = (p(""), p("run/plexus/state.json"), p("hd"), p("meta"));
    let base = [
        "--imds-url",
        url.as_str(),
        "--netns",
        ns.name(),
        "--host-root",
        &root,
        "--state-file",
        &state,
        "--host-device-dir",
        &hd,
        "--meta-cache-dir",
        &meta,
    ];
    let with =
        |rest: &[&str]| -> Vec<String> { base.iter().chain(rest).map(|s| s.to_string()).collect() };
    let run = |rest: &[&str]| {
        let a = with(rest);
        agent(&a.iter().map(String::as_str).collect::<Vec<_>>(), &[])
    };

    let plan: Value = serde_json::from_str(&ok(run(&["vnic", "plan", "--json"]))).unwrap();
    assert!(!plan["plan"]["actions"].as_array().unwrap().is_empty());
    assert!(v4(&ns, "vf1").is_empty(), "plan changed something");

    assert!(!Path::new(&state).exists(), "plan wrote the state file");
    let table = ok(run(&["vnic", "apply"]));
    assert!(
        table.contains("rule add pref 1000 from 203.0.113.93/32 lookup 101"),
        "{table}"
    );
    assert!(
        table.contains(&format!("state file {state}: written")),
        "{table}"
    );
    assert_eq!(v4(&ns, "vf1")[0]["local"], "203.0.113.93");
    // `apply` alone leaves the vnic IPAM plugin its state file.
    let st: Value = serde_json::from_slice(&fs::read(&state).unwrap()).unwrap();
    let one = st["vnics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["vnic_id"] == "ocid1.vnic.one")
        .unwrap_or_else(|| panic!("{st}"));
    assert_eq!(one["pci"], "0000:00:05.0", "{st}");
    assert_eq!(one["ifname"], "vf1", "{st}");
    assert_eq!(one["ip"], "203.0.113.93", "{st}");
    let json: Value = serde_json::from_str(&ok(run(&["vnic", "apply", "--json"]))).unwrap();
    assert_eq!(json["state_file"]["written"], false, "{json}");
    let again = ok(run(&["vnic", "plan"]));
    assert!(again.contains("no changes"), "{again}");

    ok(run(&["vnic", "deconfigure"]));
    assert!(v4(&ns, "vf1").is_empty());
}

#[test]
fn vnic_apply_with_imds_down_fails_clearly() {
    let (ns, _vf) = node();
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let url = format!("http://{addr}");
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state.json").to_string_lossy().into_owned();
    let out = agent(
        &[
            "--imds-url",
            &url,
            "--netns",
            ns.name(),
            "--state-file",
            &state,
            "vnic",
            "apply",
        ],
        &[],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("metadata"), "{err}");
    assert!(v4(&ns, "vf1").is_empty());
    assert!(!Path::new(&state).exists());
}

fn status_json(args: &[&str], imds: &FakeImds, tmp: &Path) -> Output {
    let p = |s: &str| tmp.join(s).to_string_lossy().into_owned();
    let mut a = vec![
        "--imds-url".to_string(),
        imds.url(),
        "--state-file".into(),
        p("state.json"),
        "--host-device-dir".into(),
        p("hd"),
        "--meta-cache-dir".into(),
        p("meta"),
    ];
    a.extend(args.iter().map(|s| s.to_string()));
    a.extend(["status".into(), "--json".into()]);
    agent(&a.iter().map(String::as_str).collect::<Vec<_>>(), &[])
}

fn pcis(out: Output) -> Vec<String> {
    let v: Value = serde_json::from_str(&ok(out)).unwrap();
    v["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["pci"].as_str().unwrap().to_string())
        .collect()
}

/// With no root flag the agent reads the machine's own `/sys` the way the
/// sysfs crate does from `/`: the same functions (before `--host-root`, the
/// default `/sys` made it read `/sys/sys/...` and find none).
#[test]
fn default_root_reads_this_machines_sysfs() {
    let tmp = tempfile::tempdir().unwrap();
    let imds = FakeImds::start(vnics()).unwrap();
    let want: Vec<String> = plexus_sysfs::discover(Path::new("/"))
        .unwrap()
        .functions
        .iter()
        .map(|f| f.pci.to_string())
        .collect();
    assert_eq!(pcis(status_json(&[], &imds, tmp.path())), want);
}

/// `--sysfs-root` (deprecated) still works when it names a mount point
/// called `sys`; anything else is an error naming `--host-root`.
#[test]
fn deprecated_sysfs_root_is_accepted_only_when_unambiguous() {
    let tmp = tempfile::tempdir().unwrap();
    let host = tmp.path().join("host");
    let sys = FakeSysfs::new(&host).unwrap();
    sys.add_function(
        &FunctionSpec::new("0000:00:05.0", 0x15b3, 0x101e)
            .driver("mlx5_core")
            .netdev("ens5", Some("02:00:17:dd:00:02")),
    )
    .unwrap();
    let imds = FakeImds::start(vnics()).unwrap();
    let s = |p: &Path| p.to_string_lossy().into_owned();
    let (h, hs) = (s(&host), s(&host.join("sys")));
    let found = vec!["0000:00:05.0".to_string()];
    assert_eq!(
        pcis(status_json(&["--host-root", &h], &imds, tmp.path())),
        found
    );
    let out = status_json(&["--sysfs-root", &hs], &imds, tmp.path());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("deprecated"),
        "no deprecation warning"
    );
    assert_eq!(pcis(out), found);
    assert_eq!(
        pcis(status_json(
            &["--host-root", &h, "--sysfs-root", &hs],
            &imds,
            tmp.path()
        )),
        found
    );
    for bad in [
        vec!["--sysfs-root", h.as_str()],
        vec!["--host-root", "/", "--sysfs-root", hs.as_str()],
    ] {
        let out = status_json(&bad, &imds, tmp.path());
        assert!(!out.status.success(), "{bad:?} accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("--host-root"), "{bad:?}: {err}");
    }
    // A `sys` dir that is not a sysfs (the old fixtures' shape: the tree one
    // level further down) fails instead of discovering nothing.
    let old_shape = tmp.path().join("old/sys");
    FakeSysfs::new(&old_shape).unwrap();
    let out = status_json(&["--sysfs-root", &s(&old_shape)], &imds, tmp.path());
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a sysfs mount"));
}

#[test]
fn install_then_status_without_imds_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let r = tmp.path();
    for d in ["image", "bin", "net.d", "sa", "run"] {
        fs::create_dir_all(r.join(d)).unwrap();
    }
    for b in ["plexus", "host-device", "static", "vnic"] {
        fs::write(r.join("image").join(b), b).unwrap();
    }
    fs::write(r.join("sa/token"), "t").unwrap();
    fs::write(r.join("sa/ca.crt"), "c").unwrap();
    fs::write(
        r.join("net.d/10-flannel.conflist"),
        r#"{"cniVersion":"0.3.1","name":"cbr0","plugins":[{"type":"flannel"}]}"#,
    )
    .unwrap();
    let p = |s: &str| r.join(s).to_string_lossy().into_owned();
    ok(agent(
        &[
            "--cni-bin-dir",
            &p("bin"),
            "--cni-conf-dir",
            &p("net.d"),
            "install",
            "--source-bin-dir",
            &p("image"),
            "--token-file",
            &p("sa/token"),
            "--ca-file",
            &p("sa/ca.crt"),
            "--ready-file",
            &p("run/ready"),
        ],
        &[
            ("KUBERNETES_SERVICE_HOST", "10.96.0.1"),
            ("KUBERNETES_SERVICE_PORT", "443"),
        ],
    ));
    assert!(r.join("net.d/00-plexus.conflist").exists());
    let kc = fs::read_to_string(r.join("net.d/plexus.d/plexus.kubeconfig")).unwrap();
    assert!(kc.contains("https://10.96.0.1:443"), "{kc}");

    let out = agent(&["--imds-url", "http://127.0.0.1:9", "status"], &[]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("metadata"));
}

fn rss_kib(pid: u32, key: &str) -> u64 {
    let s = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap()
        .parse()
        .unwrap()
}

fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out waiting for {what}");
}

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn run_reconciles_serves_devices_and_stops_on_sigterm() {
    let (ns, _vf) = node();
    let fake = FakeImds::start(vnics()).unwrap();
    let kubelet = FakeRegistration::start().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let sys = FakeSysfs::new(&tmp.path().join("sys")).unwrap();
    sys.add_function(
        &FunctionSpec::new("0000:00:05.0", 0x15b3, 0x101e)
            .driver("mlx5_core")
            .netdev("vf1", Some("02:00:17:dd:00:02")),
    )
    .unwrap();
    let state = tmp.path().join("state.json");
    let p = |x: &Path| x.to_string_lossy().into_owned();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let metrics = format!("127.0.0.1:{port}");
    let child = Command::new(bin())
        .args([
            "--imds-url",
            &fake.url(),
            "--netns",
            ns.name(),
            "--host-root",
            &p(sys.root()),
            "--state-file",
            &p(&state),
            "--host-device-dir",
            &p(&tmp.path().join("hd")),
            "--meta-cache-dir",
            &p(&tmp.path().join("meta")),
            "run",
            "--no-install",
            "--interval",
            "1",
            "--device-plugin-dir",
            &p(kubelet.dir()),
            "--metrics-addr",
            &metrics,
            "--device-info-dir",
            &p(&tmp.path().join("devinfo")),
        ])
        .env_clear()
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut child = Kill(child);

    wait_for("state file", Duration::from_secs(10), || state.exists());
    wait_for("vf1 configured", Duration::from_secs(10), || {
        !v4(&ns, "vf1").is_empty()
    });
    let st: Value = serde_json::from_slice(&fs::read(&state).unwrap()).unwrap();
    let one = st["vnics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["vnic_id"] == "ocid1.vnic.one" || v["vnicId"] == "ocid1.vnic.one")
        .unwrap_or_else(|| panic!("{st}"));
    assert_eq!(one["pci"], "0000:00:05.0");
    assert_eq!(one["ifname"], "vf1");
    // `status` joins the same sources: the VF, its VNIC, on the host.
    let status: Value = serde_json::from_str(&ok(agent(
        &[
            "--imds-url",
            &fake.url(),
            "--host-root",
            &p(sys.root()),
            "--state-file",
            &p(&state),
            "status",
            "--json",
        ],
        &[],
    )))
    .unwrap();
    let dev = &status["devices"][0];
    assert_eq!(dev["pci"], "0000:00:05.0", "{status}");
    assert_eq!(dev["vnic"], "ocid1.vnic.one");
    assert_eq!(dev["location"], "host");
    let reqs = kubelet.wait_for_requests(1, Duration::from_secs(10));
    assert_eq!(reqs[0].resource_name, "plexus.io/vf");

    // ListAndWatch shows the VF.
    let sock = kubelet.dir().join(&reqs[0].endpoint);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let devices = rt.block_on(async {
        let ch = plexus_kubelet_api::connect_unix(&sock, Duration::from_secs(5))
            .await
            .unwrap();
        let mut c = api::device_plugin_client::DevicePluginClient::new(ch);
        let mut s = c.list_and_watch(api::Empty {}).await.unwrap().into_inner();
        loop {
            let m = s.message().await.unwrap().unwrap();
            if !m.devices.is_empty() {
                return m.devices;
            }
        }
    });
    assert_eq!(devices[0].id, "0000:00:05.0");

    // A VNIC attached later is picked up by the next pass.
    let _vf2 = Veth::create(
        VethEnd::new("vf2").in_ns(&ns).mac("02:00:17:dd:00:03"),
        VethEnd::new("vf2p").in_ns(&ns).up(),
    );
    let mut more = vnics();
    more.as_array_mut().unwrap().push(json!({
        "vnicId": "ocid1.vnic.two", "privateIp": "198.51.100.200", "macAddr": "02:00:17:DD:00:03",
        "virtualRouterIp": "198.51.100.129", "subnetCidrBlock": "198.51.100.128/25"}));
    fake.set_vnics(more);
    wait_for("vf2 configured", Duration::from_secs(10), || {
        !v4(&ns, "vf2").is_empty()
    });
    assert_eq!(v4(&ns, "vf2")[0]["local"], "198.51.100.200");

    // /metrics answers.
    let body = {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(&metrics).unwrap();
        s.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut b = String::new();
        s.read_to_string(&mut b).unwrap();
        b
    };
    assert!(body.contains("200"), "{body}");

    // Memory: idle after a few passes, and the peak (reconciles included).
    std::thread::sleep(Duration::from_secs(3));
    let idle = rss_kib(pid, "VmRSS:");
    let peak = rss_kib(pid, "VmHWM:");
    eprintln!("plexus-agent RSS: idle {idle} KiB, peak {peak} KiB");
    // The 20 MiB target is for release builds; debug binaries map more text.
    let release = std::env::var_os("PLEXUS_AGENT_BIN").is_some() || !cfg!(debug_assertions);
    let limit = if release { 20 } else { 32 } * 1024;
    assert!(peak < limit, "RSS peak {peak} KiB over {limit} KiB");

    // SIGTERM: clean exit, plugin socket removed.
    let st = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let end = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = child.0.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < end, "agent did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "exit {status:?}");
    assert!(!sock.exists());
}

#[test]
fn run_install_watch_follows_primary_and_token() {
    require_root();
    // Vnic configuration only ever runs inside a test namespace.
    let ns = TestNs::new("pxinst");
    let fake = FakeImds::start(vnics()).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let r = tmp.path();
    for d in ["image", "bin", "net.d", "sa", "run", "sys"] {
        fs::create_dir_all(r.join(d)).unwrap();
    }
    for b in ["plexus", "host-device", "static", "vnic"] {
        fs::write(r.join("image").join(b), b).unwrap();
    }
    fs::write(r.join("sa/token"), "token-1").unwrap();
    fs::write(r.join("sa/ca.crt"), "c").unwrap();
    let flannel = r.join("net.d/10-flannel.conflist");
    fs::write(
        &flannel,
        r#"{"cniVersion":"0.3.1","name":"cbr0","plugins":[{"type":"flannel"}]}"#,
    )
    .unwrap();
    let p = |s: &str| r.join(s).to_string_lossy().into_owned();
    let child = Command::new(bin())
        .args([
            "--imds-url",
            &fake.url(),
            "--netns",
            ns.name(),
            "--host-root",
            &p("sys"),
            "--state-file",
            &p("run/state.json"),
            "--host-device-dir",
            &p("hd"),
            "--meta-cache-dir",
            &p("meta"),
            "--cni-bin-dir",
            &p("bin"),
            "--cni-conf-dir",
            &p("net.d"),
            "run",
            "--source-bin-dir",
            &p("image"),
            "--token-file",
            &p("sa/token"),
            "--ca-file",
            &p("sa/ca.crt"),
            "--ready-file",
            &p("run/ready"),
            "--api-server",
            "https://10.96.0.1:443",
            "--install-interval",
            "1",
            "--no-device-plugin",
            "--metrics-addr",
            "",
        ])
        .env_clear()
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let _child = Kill(child);
    let ours = r.join("net.d/00-plexus.conflist");
    let conf = || -> Value {
        fs::read(&ours)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(Value::Null)
    };
    wait_for("meta config", Duration::from_secs(10), || {
        conf()["cniVersion"] == "0.3.1"
    });
    // install writes the ready file after the conflist.
    wait_for("ready file", Duration::from_secs(10), || {
        r.join("run/ready").exists()
    });
    assert!(r.join("bin/host-device").exists());

    // The primary changes: our file follows, still wrapping it once.
    fs::write(
        &flannel,
        r#"{"cniVersion":"1.0.0","name":"cbr0","plugins":[{"type":"flannel"}]}"#,
    )
    .unwrap();
    wait_for("regenerated meta config", Duration::from_secs(10), || {
        conf()["cniVersion"] == "1.0.0"
    });
    assert_eq!(conf()["plugins"][0]["delegates"][0]["name"], "cbr0");

    // The kubelet rotates the projected token: the copy follows.
    fs::write(r.join("sa/token"), "token-2").unwrap();
    wait_for("rotated token", Duration::from_secs(10), || {
        fs::read_to_string(r.join("net.d/plexus.d/token"))
            .ok()
            .as_deref()
            == Some("token-2")
    });

    // The primary disappears: ours goes too (and readiness with it).
    fs::remove_file(&flannel).unwrap();
    wait_for("meta config removed", Duration::from_secs(10), || {
        !ours.exists() && !r.join("run/ready").exists()
    });
    eprintln!(
        "plexus-agent RSS with install watch: {} KiB, peak {} KiB",
        rss_kib(pid, "VmRSS:"),
        rss_kib(pid, "VmHWM:")
    );
}

/// `ready` is the DaemonSet's readiness probe (the image has no shell): it
/// follows the ready file install writes, through the flag or the env the
/// container carries.
#[test]
fn ready_exits_by_the_ready_file() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("ready");
    let path = file.to_string_lossy().into_owned();
    let out = agent(&["ready", "--ready-file", &path], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains(&path));
    fs::write(&file, "ready\n").unwrap();
    ok(agent(&["ready", "--ready-file", &path], &[]));
    ok(agent(&["ready"], &[("PLEXUS_READY_FILE", &path)]));
    fs::remove_file(&file).unwrap();
    assert!(!agent(&["ready"], &[("PLEXUS_READY_FILE", &path)])
        .status
        .success());
}
