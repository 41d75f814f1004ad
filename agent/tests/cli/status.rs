//! `status` over the host root and sysfs flags, and `install` then `status`.

use std::fs;
use std::path::Path;
use std::process::Output;

use plexus_sysfs::testing::{FakeSysfs, FunctionSpec};
use plexus_testkit::imds::FakeImds;
use serde_json::Value;

use crate::support::{agent, ok, vnics};

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
