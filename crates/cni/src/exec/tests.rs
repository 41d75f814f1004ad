use super::*;
use crate::skel::Plugin;
use crate::testing::FakeExec;
use std::os::unix::fs::PermissionsExt;

fn env() -> DelegateEnv {
    DelegateEnv {
        container_id: "c1".into(),
        netns: "/var/run/netns/x".into(),
        ifname: "net1".into(),
        args: "IgnoreUnknown=1".into(),
        path: vec!["/opt/cni/bin".into(), "/usr/lib/cni".into()],
    }
}

#[test]
fn env_pairs() {
    let mut e = env();
    e.netns.clear();
    let pairs = e.to_env(Command::Del);
    assert!(pairs.contains(&("CNI_COMMAND".into(), "DEL".into())));
    assert!(pairs.contains(&("CNI_PATH".into(), "/opt/cni/bin:/usr/lib/cni".into())));
    assert!(!pairs.iter().any(|(k, _)| k == "CNI_NETNS"));
}

#[test]
fn delegate_add_with_fake() {
    let fake = FakeExec::new().with_plugin("static");
    fake.push_output(br#"{"cniVersion":"1.0.0","ips":[{"address":"198.51.100.2/24"}]}"#);
    let conf = br#"{"cniVersion":"1.0.0","name":"n","type":"static"}"#;
    let r = delegate_add("static", conf, &env(), &fake).unwrap();
    assert_eq!(r.ips[0].address.to_string(), "198.51.100.2/24");
    let calls = fake.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].path, PathBuf::from("/opt/cni/bin/static"));
    assert_eq!(calls[0].command(), Some("ADD"));
    assert_eq!(calls[0].stdin, conf.to_vec());
}

#[test]
fn delegate_error_passes_through() {
    let fake = FakeExec::new().with_plugin("static");
    fake.push_error(CniError::invalid_config("bad"));
    let e = delegate_del("static", b"{}", &env(), &fake).unwrap_err();
    assert_eq!(e, CniError::invalid_config("bad"));
    assert_eq!(fake.calls()[0].command(), Some("DEL"));
    fake.push_output(b"");
    assert!(delegate_gc("static", b"{}", &env(), &fake).is_ok());
    assert!(delegate_status("static", b"{}", &env(), &fake).is_ok());
    assert!(delegate_check("static", b"{}", &env(), &fake).is_ok());
}

#[test]
fn missing_plugin_names_type_and_paths() {
    let fake = FakeExec::new();
    let e = delegate_add("nope", b"{}", &env(), &fake).unwrap_err();
    assert_eq!(
        e.msg,
        r#"failed to find plugin "nope" in path [/opt/cni/bin /usr/lib/cni]"#
    );
    assert!(fake.calls().is_empty());
    assert!(find_in_path("a/b", &env().path, |_| true).is_err());
    assert!(find_in_path("", &env().path, |_| true).is_err());
    assert!(find_in_path("x", &[], |_| true)
        .unwrap_err()
        .msg
        .contains("CNI_PATH"));
}

#[test]
fn plugin_error_fallbacks() {
    assert_eq!(
        plugin_error("exit 1", b"", b"").msg,
        "netplugin failed with no error message: exit 1"
    );
    assert_eq!(
        plugin_error("exit 1", b"", b"oops\n").msg,
        r#"netplugin failed: "oops""#
    );
    assert!(plugin_error("exit 1", b"junk", b"")
        .msg
        .contains("error parsing its diagnostic"));
    assert_eq!(
        plugin_error("x", br#"{"code":7,"msg":"m","details":"d"}"#, b"").details,
        "d"
    );
}

#[test]
fn process_exec_script() {
    let dir = tempfile::tempdir().unwrap();
    let ok = dir.path().join("okplug");
    std::fs::write(
        &ok,
        "#!/bin/sh\necho \"cmd=$CNI_COMMAND if=$CNI_IFNAME in=$(cat)\"\necho diag >&2\n",
    )
    .unwrap();
    let bad = dir.path().join("badplug");
    std::fs::write(
        &bad,
        "#!/bin/sh\ncat >/dev/null\necho '{\"code\":11,\"msg\":\"later\"}'\nexit 1\n",
    )
    .unwrap();
    for p in [&ok, &bad] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let paths = vec![PathBuf::from("/nonexistent-px"), dir.path().to_path_buf()];
    let found = ProcessExec.find_in_path("okplug", &paths).unwrap();
    assert_eq!(found, ok);
    let out = ProcessExec
        .exec_plugin(&found, b"{\"x\":1}", &env().to_env(Command::Add))
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out),
        "cmd=ADD if=net1 in={\"x\":1}\n"
    );
    let e = ProcessExec.exec_plugin(&bad, b"{}", &[]).unwrap_err();
    assert_eq!(e, CniError::try_again("later"));
    assert!(ProcessExec
        .exec_plugin(&dir.path().join("none"), b"", &[])
        .is_err());
}

/// Answers ADD with its interface name; fails DEL with code 11.
struct Echo;

impl Plugin for Echo {
    fn add(&self, a: &CmdArgs) -> Result<serde_json::Value, CniError> {
        Ok(serde_json::json!({"cniVersion": "1.0.0", "interfaces": [{"name": a.ifname}]}))
    }
    fn del(&self, _a: &CmdArgs) -> Result<(), CniError> {
        Err(CniError::try_again("busy"))
    }
    fn check(&self, _a: &CmdArgs) -> Result<(), CniError> {
        Ok(())
    }
}

#[test]
fn builtin_runs_in_process_only_for_the_installed_copy() {
    let own = tempfile::tempdir().unwrap();
    let other = tempfile::tempdir().unwrap();
    for d in [&own, &other] {
        std::fs::write(d.path().join("echo"), "#!/bin/sh\nexit 99\n").unwrap();
    }
    let fake = FakeExec::new().with_plugin("echo");
    fake.push_output(br#"{"cniVersion":"1.0.0"}"#);
    let exec = BuiltinExec::new(&fake, Some(own.path().to_path_buf())).with(Builtin {
        plugin_type: "echo",
        plugin: &Echo,
        about: "echo",
        supported: version::SUPPORTED,
    });
    let conf = br#"{"cniVersion":"1.0.0","name":"n","type":"echo"}"#;
    let mut e = env();
    e.path = vec![own.path().to_path_buf()];
    let r = delegate_add("echo", conf, &e, &exec).unwrap();
    assert_eq!(r.interfaces[0].name, "net1");
    let err = delegate_del("echo", conf, &e, &exec).unwrap_err();
    assert_eq!(err, CniError::try_again("busy"));
    // The skeleton's own checks apply too.
    let err = exec
        .exec_plugin(&own.path().join("echo"), b"{}", &e.to_env(Command::Add))
        .unwrap_err();
    assert_eq!(err.code, 7);
    assert!(fake.calls().is_empty(), "{:?}", fake.calls());
    // Another copy earlier in CNI_PATH is not ours: it is exec'd.
    e.path = vec![other.path().to_path_buf(), own.path().to_path_buf()];
    delegate_add("echo", conf, &e, &exec).unwrap();
    assert_eq!(fake.calls().len(), 1);
    assert_eq!(fake.calls()[0].path, other.path().join("echo"));
    // Without an own directory nothing is builtin.
    let none = BuiltinExec::new(&fake, None);
    assert!(none.builtin_for(&own.path().join("echo")).is_none());
}

/// Both ways of running a plugin: a big config in, big output on both
/// streams (more than a pipe holds), stderr kept for the error message.
#[test]
fn memfd_and_pipe_paths_agree() {
    let dir = tempfile::tempdir().unwrap();
    let echo = dir.path().join("echoplug");
    std::fs::write(
        &echo,
        "#!/bin/sh\ncat\nhead -c 200000 /dev/zero | tr '\\0' x >&2\necho >&2 last\n",
    )
    .unwrap();
    let quiet = dir.path().join("quietplug");
    std::fs::write(&quiet, "#!/bin/sh\necho oops >&2\nexit 3\n").unwrap();
    for p in [&echo, &quiet] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let big: Vec<u8> = (0..300_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let env = env().to_env(Command::Add);
    let via_memfd = ProcessExec::exec_with_memfd(&echo, &big, &env)
        .expect("memfd available")
        .unwrap();
    let via_pipes = ProcessExec::exec_with_pipes(&echo, &big, &env).unwrap();
    for f in [&via_memfd, &via_pipes] {
        assert!(f.status.success());
        assert_eq!(f.stdout, big);
        assert_eq!(f.stderr.len(), 200_005);
        assert!(f.stderr.ends_with(b"last\n"));
    }
    let via_memfd = ProcessExec::exec_with_memfd(&quiet, b"{}", &env)
        .expect("memfd available")
        .unwrap();
    let via_pipes = ProcessExec::exec_with_pipes(&quiet, b"{}", &env).unwrap();
    for f in [&via_memfd, &via_pipes] {
        assert_eq!(f.status.code(), Some(3));
        assert!(f.stdout.is_empty());
        assert_eq!(f.stderr, b"oops\n");
    }
    let e = ProcessExec.exec_plugin(&quiet, b"{}", &env).unwrap_err();
    assert_eq!(e.msg, r#"netplugin failed: "oops""#);
}
