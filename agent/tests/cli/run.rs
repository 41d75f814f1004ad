//! `run` end to end (reconcile, device plugin, metrics, RSS, SIGTERM, install watch) and `ready`.

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use plexus_kubelet_api::deviceplugin::v1beta1 as api;
use plexus_sysfs::testing::{FakeSysfs, FunctionSpec};
use plexus_testkit::imds::FakeImds;
use plexus_testkit::net::{require_root, TestNs, Veth, VethEnd};
use plexus_testkit::podresources::FakeRegistration;
use serde_json::{json, Value};

use crate::support::{agent, bin, node, ok, rss_kib, v4, vnics, wait_for, Kill};

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
