//! Binary contract tests for `static`: explicit env + stdin in, exit code and
//! stdout (nothing but the JSON) out.

mod common;

use common::{bytes, env_for, full_conf, our_static, run, with, without};
use rstest::rstest;
use serde_json::{json, Value};

fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[rstest]
fn add_matches_golden(#[values("0.2.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")] v: &str) {
    let mut conf = full_conf(v);
    if v == "0.2.0" {
        conf["ipam"]["addresses"][1]["gateway"] = Value::Null;
    }
    let out = run(our_static(), &env_for("ADD"), &bytes(&conf));
    assert_eq!(out.code, 0, "{}", out.stdout);
    assert_eq!(out.json(), fixture(&format!("add-{v}.json")));
    assert!(out.stderr.is_empty(), "{}", out.stderr);
}

#[rstest]
fn precedence_through_the_binary(#[values("0.3.1", "0.4.0", "1.0.0", "1.1.0")] v: &str) {
    let ips = |out: &common::Out| -> Vec<String> {
        out.json()["ips"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|i| i["address"].as_str().unwrap_or("").to_string())
                    .collect()
            })
            .unwrap_or_default()
    };
    let env = with(
        env_for("ADD"),
        "CNI_ARGS",
        "IgnoreUnknown=1;IP=203.0.113.7/24;GATEWAY=203.0.113.1",
    );
    let mut conf = full_conf(v);
    let out = run(our_static(), &env, &bytes(&conf));
    assert_eq!(
        ips(&out),
        ["198.51.100.2/24", "2001:db8::2/64", "203.0.113.7/24"]
    );
    assert_eq!(out.json()["ips"][2]["gateway"], "203.0.113.1");

    conf["args"] = json!({"cni": {"ips": ["203.0.113.8/24"]}});
    assert_eq!(
        ips(&run(our_static(), &env, &bytes(&conf))),
        ["203.0.113.8/24"]
    );

    conf["runtimeConfig"] = json!({"ips": ["198.51.100.40/24"]});
    let out = run(our_static(), &env, &bytes(&conf));
    assert_eq!(ips(&out), ["198.51.100.40/24"]);
    assert!(out.json()["ips"][0].get("gateway").is_none());
}

#[rstest]
fn check_pass_and_fail(#[values("0.4.0", "1.0.0", "1.1.0")] v: &str) {
    let added = run(our_static(), &env_for("ADD"), &bytes(&full_conf(v))).json();
    let mut conf = full_conf(v);
    conf["prevResult"] = added.clone();
    let out = run(our_static(), &env_for("CHECK"), &bytes(&conf));
    assert_eq!((out.code, out.stdout.as_str()), (0, ""));

    let mut prev = added;
    prev["ips"] = json!([prev["ips"][1].clone()]);
    conf["prevResult"] = prev;
    let out = run(our_static(), &env_for("CHECK"), &bytes(&conf));
    assert_eq!(out.code, 1);
    let err = out.json();
    assert_eq!(err["code"], 999);
    assert_eq!(
        err["msg"],
        "static: address 198.51.100.2/24 not found in prevResult for interface net1"
    );
    assert_eq!(err["cniVersion"], v);
}

#[test]
fn check_needs_0_4_0() {
    let out = run(our_static(), &env_for("CHECK"), &bytes(&full_conf("0.3.1")));
    assert_eq!(out.code, 1);
    assert_eq!(out.json()["code"], 1);
    assert_eq!(out.json()["msg"], "config version does not allow CHECK");
}

#[rstest]
fn del_is_noop(#[values("0.3.1", "0.4.0", "1.0.0", "1.1.0")] v: &str) {
    let env = without(env_for("DEL"), "CNI_NETNS");
    let out = run(our_static(), &env, &bytes(&full_conf(v)));
    assert_eq!((out.code, out.stdout.as_str()), (0, ""));
    // A second DEL succeeds too.
    assert_eq!(run(our_static(), &env, &bytes(&full_conf(v))).code, 0);
}

#[test]
fn status_and_gc_on_1_1() {
    let env = vec![
        ("CNI_COMMAND".to_string(), "STATUS".to_string()),
        ("CNI_PATH".to_string(), "/x".to_string()),
    ];
    let out = run(our_static(), &env, &bytes(&full_conf("1.1.0")));
    assert_eq!((out.code, out.stdout.as_str()), (0, ""));
    let env = with(env, "CNI_COMMAND", "GC");
    let mut conf = full_conf("1.1.0");
    conf["cni.dev/valid-attachments"] = json!([{"containerID": "c", "ifname": "net1"}]);
    assert_eq!(run(our_static(), &env, &bytes(&conf)).code, 0);
    let out = run(our_static(), &env, &bytes(&full_conf("1.0.0")));
    assert_eq!(out.json()["msg"], "config version does not allow GC");
}

#[test]
fn version_and_about() {
    let out = run(
        our_static(),
        &[("CNI_COMMAND".into(), "VERSION".into())],
        b"",
    );
    assert_eq!(out.code, 0);
    assert_eq!(
        out.json(),
        json!({"cniVersion": "1.1.0", "supportedVersions": ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]})
    );
    let out = run(our_static(), &[], b"");
    assert_eq!((out.code, out.stdout.as_str()), (0, ""));
    assert!(out.stderr.contains("static IPAM"), "{}", out.stderr);
    assert!(out
        .stderr
        .contains("CNI protocol versions supported: 0.1.0"));
}

fn expect_error(env: &[(String, String)], stdin: &[u8], code: u64, msg_part: &str) {
    let out = run(our_static(), env, stdin);
    assert_eq!(out.code, 1, "stdout: {}", out.stdout);
    let err = out.json();
    assert_eq!(err["code"], code, "{err}");
    let msg = err["msg"].as_str().unwrap_or_default();
    assert!(msg.contains(msg_part), "{msg:?} lacks {msg_part:?}");
}

#[test]
fn bad_input() {
    let add = env_for("ADD");
    expect_error(&add, b"{not json", 6, "error unmarshall network config");
    expect_error(
        &add,
        br#"{"cniVersion":"1.0.0","ipam":{}}"#,
        7,
        "missing network name",
    );
    expect_error(
        &with(env_for("FOO"), "X", "1"),
        b"{}",
        7,
        "missing network name",
    );
    expect_error(
        &env_for("FOO"),
        &bytes(&full_conf("1.0.0")),
        4,
        "unknown CNI_COMMAND: FOO",
    );
    expect_error(
        &add,
        &bytes(&full_conf("7.0.0")),
        1,
        "incompatible CNI versions",
    );
    expect_error(
        &add,
        br#"{"cniVersion":"1.0.0","name":"n"}"#,
        7,
        "IPAM config missing 'ipam' key",
    );
    expect_error(
        &without(add.clone(), "CNI_IFNAME"),
        &bytes(&full_conf("1.0.0")),
        4,
        "[CNI_IFNAME]",
    );
    expect_error(
        &without(add.clone(), "CNI_NETNS"),
        &bytes(&full_conf("1.0.0")),
        4,
        "[CNI_NETNS]",
    );

    let mut bad = full_conf("1.0.0");
    bad["ipam"]["addresses"][0]["address"] = json!("198.51.100.2");
    expect_error(
        &add,
        &bytes(&bad),
        7,
        r#"ipam.addresses[0].address: "198.51.100.2""#,
    );
    expect_error(
        &with(add.clone(), "CNI_ARGS", "IP=10"),
        &bytes(&full_conf("1.0.0")),
        7,
        "CNI_ARGS IP",
    );
    let out = run(our_static(), &add, &bytes(&full_conf("7.0.0")));
    assert!(out.json()["details"]
        .as_str()
        .unwrap_or("")
        .contains("plugin supports"));
}
