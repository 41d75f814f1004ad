//! Differential test against the reference Go `static` from Debian's
//! containernetworking-plugins (`/usr/lib/cni/static`): for the same env and
//! stdin, ADD must produce the same ips/routes/dns (compared semantically:
//! the reference prints `"dns": {}` and has no trailing newline). The
//! reference (1.1.1) stops at cniVersion 1.0.0, so 1.1.0 is not compared.

mod common;

use std::path::Path;

use common::{bytes, env_for, full_conf, our_static, run, with};
use plexus_cni::CniResult;
use rstest::rstest;
use serde_json::{json, Value};

const REFERENCE: &str = "/usr/lib/cni/static";

fn reference() -> &'static Path {
    let p = Path::new(REFERENCE);
    assert!(
        p.is_file(),
        "reference plugin {REFERENCE} is missing: install it with `apt-get install -y containernetworking-plugins`"
    );
    p
}

/// The full config without the 1.1-only route fields the reference lacks.
fn conf(version: &str) -> Value {
    let mut c = full_conf(version);
    c["ipam"]["routes"][1] = json!({"dst": "203.0.113.0/24", "gw": "198.51.100.254"});
    if version == "0.2.0" {
        c["ipam"]["addresses"] = json!([{"address": "198.51.100.2/24", "gateway": "198.51.100.1"}]);
    }
    c
}

fn cases(version: &str) -> Vec<(&'static str, Value, &'static str)> {
    let mut args_ips = conf(version);
    args_ips["args"] = json!({"cni": {"ips": ["203.0.113.8/24"]}});
    let mut runtime_ips = args_ips.clone();
    runtime_ips["runtimeConfig"] = json!({"ips": ["198.51.100.40/24"]});
    let mut no_dns = conf(version);
    no_dns["ipam"].as_object_mut().map(|m| m.remove("dns"));
    let mut v6_only = conf(version);
    v6_only["ipam"]["addresses"] = json!([{"address": "2001:db8::5/64", "gateway": "2001:db8::1"}]);
    let mut cases = vec![
        ("every key", conf(version), ""),
        ("args.cni.ips replaces", args_ips, "IP=203.0.113.9/24"),
        (
            "runtimeConfig.ips replaces",
            runtime_ips,
            "IgnoreUnknown=1;IP=203.0.113.9/24",
        ),
        ("empty dns", no_dns, ""),
        ("v6 only", v6_only, ""),
    ];
    if version != "0.2.0" {
        cases.push((
            "CNI_ARGS append",
            conf(version),
            "IgnoreUnknown=1;K8S_POD_NAME=p;IP=203.0.113.9/24,2001:db8::9/64;GATEWAY=203.0.113.1",
        ));
        let mut empty = conf(version);
        empty["ipam"] = json!({"type": "static"});
        cases.push(("no addresses", empty, ""));
    }
    cases
}

#[rstest]
fn add_matches_reference(#[values("0.2.0", "0.3.1", "0.4.0", "1.0.0")] v: &str) {
    let reference = reference();
    for (name, conf, cni_args) in cases(v) {
        let env = with(env_for("ADD"), "CNI_ARGS", cni_args);
        let ours = run(our_static(), &env, &bytes(&conf));
        let theirs = run(reference, &env, &bytes(&conf));
        assert_eq!(
            (ours.code, theirs.code),
            (0, 0),
            "{name} @ {v}: ours {} / reference {}",
            ours.stdout,
            theirs.stdout
        );
        let (o, t) = (ours.json(), theirs.json());
        assert_eq!(o["cniVersion"], t["cniVersion"], "{name} @ {v}");
        let parse = |x: &Value| {
            CniResult::from_json(x).unwrap_or_else(|e| panic!("{name} @ {v}: {e}: {x}"))
        };
        assert_eq!(
            parse(&o),
            parse(&t),
            "{name} @ {v}:\nours {o}\nreference {t}"
        );
    }
}

#[rstest]
#[case::bad_cidr(json!({"type": "static", "addresses": [{"address": "198.51.100.2"}]}), "")]
#[case::bad_arg_ip(json!({"type": "static"}), "IP=198.51.100.2")]
#[case::unknown_arg(json!({"type": "static"}), "FOO=1")]
fn both_reject(#[case] ipam: Value, #[case] cni_args: &str) {
    let conf = json!({"cniVersion": "1.0.0", "name": "px", "type": "static", "ipam": ipam});
    let env = with(env_for("ADD"), "CNI_ARGS", cni_args);
    let ours = run(our_static(), &env, &bytes(&conf));
    let theirs = run(reference(), &env, &bytes(&conf));
    assert_eq!(
        (ours.code, theirs.code),
        (1, 1),
        "ours {} / reference {}",
        ours.stdout,
        theirs.stdout
    );
    assert!(ours.json()["code"].as_u64().is_some() && theirs.json()["code"].as_u64().is_some());
}

#[rstest]
#[case::unparsable(b"{nope".to_vec(), 6)]
#[case::no_name(br#"{"cniVersion":"1.0.0","ipam":{}}"#.to_vec(), 7)]
#[case::bad_version(br#"{"cniVersion":"7.0.0","name":"n","ipam":{}}"#.to_vec(), 1)]
fn skeleton_errors_match_reference(#[case] stdin: Vec<u8>, #[case] code: u64) {
    let ours = run(our_static(), &env_for("ADD"), &stdin);
    let theirs = run(reference(), &env_for("ADD"), &stdin);
    assert_eq!((ours.code, theirs.code), (1, 1));
    assert_eq!(ours.json()["code"], code);
    assert_eq!(theirs.json()["code"], code);
    // Only the text before the JSON parser's own wording can match.
    let head = |v: serde_json::Value| {
        v["msg"]
            .as_str()
            .unwrap_or_default()
            .split(':')
            .next()
            .map(str::to_string)
    };
    assert_eq!(
        head(ours.json()),
        head(theirs.json()),
        "{} / {}",
        ours.stdout,
        theirs.stdout
    );
}

#[rstest]
fn check_and_del_agree_where_reference_is_right(#[values("0.4.0", "1.0.0")] v: &str) {
    let added = run(reference(), &env_for("ADD"), &bytes(&conf(v))).json();
    let mut with_prev = conf(v);
    with_prev["prevResult"] = added.clone();
    for bin in [our_static(), reference()] {
        let out = run(bin, &env_for("CHECK"), &bytes(&with_prev));
        assert_eq!(
            (out.code, out.stdout.as_str()),
            (0, ""),
            "{}",
            bin.display()
        );
        let out = run(bin, &env_for("DEL"), &bytes(&with_prev));
        assert_eq!(
            (out.code, out.stdout.as_str()),
            (0, ""),
            "{}",
            bin.display()
        );
    }
    // A different gateway fails in both.
    let mut wrong_gw = with_prev.clone();
    wrong_gw["prevResult"]["ips"][0]["gateway"] = json!("198.51.100.99");
    for bin in [our_static(), reference()] {
        let out = run(bin, &env_for("CHECK"), &bytes(&wrong_gw));
        assert_eq!(out.code, 1, "{}", bin.display());
        assert!(out.json()["msg"]
            .as_str()
            .unwrap_or("")
            .starts_with("static: Failed to match addr 198.51.100.2"));
    }
    // A missing address: only ours notices (documented difference).
    let mut missing = with_prev;
    missing["prevResult"]["ips"] = json!([added["ips"][1].clone()]);
    assert_eq!(
        run(reference(), &env_for("CHECK"), &bytes(&missing)).code,
        0
    );
    assert_eq!(
        run(our_static(), &env_for("CHECK"), &bytes(&missing)).code,
        1
    );
}

#[rstest]
#[case::unknown("FOO=1;BAR=2")]
#[case::bad_bool("IgnoreUnknown=yes;FOO=1")]
#[case::empty_pair("IP=198.51.100.3/24;")]
#[case::no_equals("IP")]
fn cni_args_errors_match_reference(#[case] cni_args: &str) {
    let conf =
        json!({"cniVersion": "1.0.0", "name": "px", "type": "static", "ipam": {"type": "static"}});
    let env = with(env_for("ADD"), "CNI_ARGS", cni_args);
    let ours = run(our_static(), &env, &bytes(&conf)).json();
    let theirs = run(reference(), &env, &bytes(&conf)).json();
    assert_eq!(
        (&ours["code"], &ours["msg"]),
        (&theirs["code"], &theirs["msg"])
    );
}
