//! `plexus_cni::exec::ProcessExec` against a real plugin process: our own
//! `static` binary found through `CNI_PATH`.

use std::path::{Path, PathBuf};

use plexus_cni::exec::{
    delegate_add, delegate_check, delegate_del, DelegateEnv, Exec, ProcessExec,
};
use serde_json::json;

fn env() -> DelegateEnv {
    let dir = Path::new(env!("CARGO_BIN_EXE_static"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    DelegateEnv {
        container_id: "px-exec-1".into(),
        netns: "/var/run/netns/px-none".into(),
        ifname: "net1".into(),
        args: "IgnoreUnknown=1;IP=203.0.113.4/24".into(),
        path: vec![PathBuf::from("/nonexistent-px"), dir],
    }
}

fn conf(version: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "cniVersion": version, "name": "px-exec", "type": "host-device",
        "ipam": {"type": "static", "addresses": [{"address": "198.51.100.3/24", "gateway": "198.51.100.1"}]}
    }))
    .unwrap_or_default()
}

#[test]
fn finds_and_runs_static() {
    let found = ProcessExec.find_in_path("static", &env().path).unwrap();
    assert_eq!(found, Path::new(env!("CARGO_BIN_EXE_static")));
    for v in ["0.3.1", "0.4.0", "1.0.0", "1.1.0"] {
        let r = delegate_add("static", &conf(v), &env(), &ProcessExec).unwrap();
        let ips: Vec<String> = r.ips.iter().map(|i| i.address.to_string()).collect();
        assert_eq!(ips, ["198.51.100.3/24", "203.0.113.4/24"], "{v}");
        assert_eq!(r.ips[0].gateway, "198.51.100.1".parse().ok());
        delegate_del("static", &conf(v), &env(), &ProcessExec).unwrap();
    }
}

#[test]
fn delegate_error_keeps_code_and_message() {
    // CHECK without prevResult: the plugin's own error comes back unchanged.
    let e = delegate_check("static", &conf("1.0.0"), &env(), &ProcessExec).unwrap_err();
    assert_eq!((e.code, e.msg.as_str()), (7, "Required prevResult missing"));
    let e = delegate_add("static", &conf("9.0.0"), &env(), &ProcessExec).unwrap_err();
    assert_eq!(e.code, 1);
    assert!(e.details.contains("plugin supports"), "{}", e.details);
}

#[test]
fn missing_binary_names_type_and_paths() {
    let e = delegate_add("px-no-such-plugin", &conf("1.0.0"), &env(), &ProcessExec).unwrap_err();
    assert!(
        e.msg.contains("\"px-no-such-plugin\"") && e.msg.contains("/nonexistent-px"),
        "{}",
        e.msg
    );
}
