use super::*;
use plexus_cni::skel::Command;
use rstest::rstest;
use serde_json::json;

fn conf(version: &str, ipam: Value) -> Vec<u8> {
    serde_json::to_vec(
        &json!({"cniVersion": version, "name": "net", "type": "static", "ipam": ipam}),
    )
    .unwrap_or_default()
}

fn cmd(command: Command, stdin: Vec<u8>, args: &str) -> CmdArgs {
    CmdArgs {
        command,
        container_id: "c1".into(),
        netns: "/var/run/netns/x".into(),
        ifname: "net1".into(),
        args: args.into(),
        path: vec![],
        stdin,
    }
}

fn full_ipam() -> Value {
    json!({
        "type": "static",
        "addresses": [
            {"address": "198.51.100.2/24", "gateway": "198.51.100.1"},
            {"address": "2001:db8::2/64"}
        ],
        "routes": [
            {"dst": "0.0.0.0/0"},
            {"dst": "203.0.113.0/24", "gw": "198.51.100.254", "mtu": 1400, "advmss": 1360,
             "priority": 5, "table": 100, "scope": 0}
        ],
        "dns": {"nameservers": ["203.0.113.53"], "domain": "example.test",
                "search": ["example.test"], "options": ["ndots:2"]}
    })
}

fn addrs(c: &StaticConfig) -> Vec<String> {
    c.addresses.iter().map(|a| a.address.to_string()).collect()
}

#[rstest]
fn add_renders_every_key(#[values("0.3.1", "0.4.0", "1.0.0", "1.1.0")] v: &str) {
    let out = StaticPlugin
        .add(&cmd(Command::Add, conf(v, full_ipam()), ""))
        .unwrap();
    assert_eq!(out["cniVersion"], v);
    assert_eq!(out["ips"][0]["address"], "198.51.100.2/24");
    assert_eq!(out["ips"][0]["gateway"], "198.51.100.1");
    assert_eq!(out["ips"][1]["address"], "2001:db8::2/64");
    assert!(out.get("interfaces").is_none());
    assert_eq!(out["ips"][0].get("version").is_some(), v.starts_with("0."));
    assert_eq!(out["routes"][1]["gw"], "198.51.100.254");
    assert_eq!(out["routes"][1].get("table").is_some(), v == "1.1.0");
    assert_eq!(out["dns"]["options"][0], "ndots:2");
}

#[test]
fn legacy_versions_one_address_per_family() {
    let out = StaticPlugin
        .add(&cmd(Command::Add, conf("0.2.0", full_ipam()), ""))
        .unwrap();
    assert_eq!(out["ip4"]["ip"], "198.51.100.2/24");
    assert_eq!(out["ip6"]["ip"], "2001:db8::2/64");
    let e = load_config(&conf("0.2.0", full_ipam()), "IP=198.51.100.3/24").unwrap_err();
    assert!(matches!(e, StaticError::TooManyAddresses(_)));
}

#[test]
fn cni_args_append_and_gateway() {
    let c = load_config(
        &conf("1.0.0", full_ipam()),
        "IgnoreUnknown=1;K8S_POD_NAME=p;IP=198.51.100.7/24, 203.0.113.9/24;GATEWAY=203.0.113.1",
    )
    .unwrap();
    assert_eq!(
        addrs(&c),
        [
            "198.51.100.2/24",
            "2001:db8::2/64",
            "198.51.100.7/24",
            "203.0.113.9/24"
        ]
    );
    assert_eq!(c.addresses[3].gateway, "203.0.113.1".parse().ok());
    assert_eq!(c.addresses[2].gateway, None);
    // GATEWAY also applies to config addresses in the subnet.
    let c = load_config(&conf("1.0.0", full_ipam()), "GATEWAY=198.51.100.254").unwrap();
    assert_eq!(c.addresses[0].gateway, "198.51.100.254".parse().ok());
}

#[test]
fn cni_args_errors() {
    let c = conf("1.0.0", json!({"type": "static"}));
    assert_eq!(
        CniError::from(load_config(&c, "FOO=1").unwrap_err()).code,
        999
    );
    let e = CniError::from(load_config(&c, "IP=198.51.100.7").unwrap_err());
    assert_eq!(e.code, 7);
    assert!(
        e.msg.contains("CNI_ARGS IP") && e.msg.contains("198.51.100.7"),
        "{}",
        e.msg
    );
    let e = CniError::from(load_config(&c, "GATEWAY=nope").unwrap_err());
    assert!(e.msg.contains("CNI_ARGS GATEWAY"), "{}", e.msg);
}

#[test]
fn precedence_args_then_runtime_config() {
    let mut base = json!({"cniVersion": "1.0.0", "name": "n", "ipam": full_ipam(),
        "args": {"cni": {"ips": ["203.0.113.20/24"]}}});
    let c = load_config(
        &serde_json::to_vec(&base).unwrap(),
        "IP=198.51.100.9/24;GATEWAY=198.51.100.1",
    )
    .unwrap();
    assert_eq!(addrs(&c), ["203.0.113.20/24"]);
    assert_eq!(c.addresses[0].gateway, None);
    base["runtimeConfig"] = json!({"ips": ["198.51.100.30/24", "2001:db8::30/64"]});
    let c = load_config(&serde_json::to_vec(&base).unwrap(), "").unwrap();
    assert_eq!(addrs(&c), ["198.51.100.30/24", "2001:db8::30/64"]);
    // Routes and DNS stay from the config.
    assert_eq!(c.routes.len(), 2);
    let bad = json!({"name": "n", "ipam": {}, "runtimeConfig": {"ips": ["x/33"]}});
    let e = CniError::from(load_config(&serde_json::to_vec(&bad).unwrap(), "").unwrap_err());
    assert!(
        e.msg.contains("runtimeConfig.ips[0]") && e.msg.contains("x/33"),
        "{}",
        e.msg
    );
}

#[rstest]
#[case(json!({"addresses": [{"address": "198.51.100.2"}]}), "ipam.addresses[0].address")]
#[case(json!({"addresses": [{"address": "198.51.100.2/24", "gateway": "g"}]}), "ipam.addresses[0].gateway")]
#[case(json!({"addresses": [{"address": " 198.51.100.2/24"}]}), "ipam.addresses[0].address")]
#[case(json!({"routes": [{"dst": "default"}]}), "ipam.routes[0].dst")]
#[case(json!({"routes": [{"dst": "0.0.0.0/0", "gw": "1.2.3"}]}), "ipam.routes[0].gw")]
fn bad_values_name_field(#[case] ipam: Value, #[case] field: &str) {
    let e = CniError::from(load_config(&conf("1.0.0", ipam), "").unwrap_err());
    assert_eq!(e.code, 7);
    assert!(e.msg.contains(field), "{}", e.msg);
}

/// A value of the wrong JSON type in the ipam section is a decode error
/// (code 6, as before the flattened struct) whose message names its path.
#[rstest]
#[case(json!({"addresses": {}}), "ipam.addresses")]
#[case(json!({"addresses": [{"address": 5}]}), "ipam.addresses[0].address")]
#[case(json!({"addresses": [{"address": "198.51.100.2/24", "gateway": 1}]}), "ipam.addresses[0].gateway")]
#[case(json!({"routes": [{"dst": "0.0.0.0/0", "gw": []}]}), "ipam.routes[0].gw")]
#[case(json!({"routes": [{"dst": null}]}), "ipam.routes[0].dst")]
#[case(json!({"routes": [{"dst": "0.0.0.0/0", "mtu": "1400"}]}), "ipam.routes[0].mtu")]
#[case(json!({"routes": [{"dst": "0.0.0.0/0", "advmss": -1}]}), "ipam.routes[0].advmss")]
#[case(json!({"routes": [{"dst": "0.0.0.0/0", "priority": 1.5}]}), "ipam.routes[0].priority")]
#[case(json!({"routes": [{"dst": "0.0.0.0/0", "table": true}]}), "ipam.routes[0].table")]
#[case(json!({"routes": [{"dst": "0.0.0.0/0", "scope": 256}]}), "ipam.routes[0].scope")]
#[case(json!({"dns": {"nameservers": "203.0.113.53"}}), "ipam.dns.nameservers")]
#[case(json!(3), "ipam")]
fn wrong_type_names_the_key(#[case] ipam: Value, #[case] path: &str) {
    let e = CniError::from(load_config(&conf("1.0.0", ipam), "").unwrap_err());
    assert_eq!(e.code, 6);
    assert!(e.msg.contains(&format!("{path}: ")), "{}", e.msg);
}

#[test]
fn common_keys_stay_decode_errors() {
    let bad = [
        json!({"name": "n", "ipam": {}, "runtimeConfig": {"ips": "198.51.100.2/24"}}),
        json!({"name": "n", "ipam": {}, "args": {"cni": {"ips": 5}}}),
        json!({"name": 5, "ipam": {}}),
    ];
    for v in bad {
        let e = load_config(&serde_json::to_vec(&v).unwrap(), "").unwrap_err();
        assert_eq!(CniError::from(e).code, 6, "{v}");
    }
    assert!(load_config(br#"{"name":"n","ipam":{}} x"#, "").is_err());
    let e = load_config(br#"{"name":"n","ipam":null}"#, "").unwrap_err();
    assert!(matches!(e, StaticError::MissingIpam));
}

#[test]
fn missing_ipam_and_empty() {
    let e = load_config(br#"{"name":"n","cniVersion":"1.0.0"}"#, "").unwrap_err();
    assert_eq!(CniError::from(e).msg, "IPAM config missing 'ipam' key");
    let out = StaticPlugin
        .add(&cmd(
            Command::Add,
            conf("1.0.0", json!({"type": "static"})),
            "",
        ))
        .unwrap();
    assert_eq!(out, json!({"cniVersion": "1.0.0"}));
    assert_eq!(
        CniError::from(load_config(&conf("1.0.0", json!(3)), "").unwrap_err()).code,
        6
    );
}

fn with_prev(v: &str, prev: Value) -> Vec<u8> {
    serde_json::to_vec(
        &json!({"cniVersion": v, "name": "net", "ipam": full_ipam(), "prevResult": prev}),
    )
    .unwrap_or_default()
}

#[rstest]
fn check_compares_prev_result(#[values("0.4.0", "1.0.0", "1.1.0")] v: &str) {
    let good = StaticPlugin
        .add(&cmd(Command::Add, conf(v, full_ipam()), ""))
        .unwrap();
    assert!(StaticPlugin
        .check(&cmd(Command::Check, with_prev(v, good.clone()), ""))
        .is_ok());

    let mut missing = good.clone();
    missing["ips"].as_array_mut().map(|a| a.remove(1));
    let e = StaticPlugin
        .check(&cmd(Command::Check, with_prev(v, missing), ""))
        .unwrap_err();
    assert_eq!(
        e.msg,
        "static: address 2001:db8::2/64 not found in prevResult for interface net1"
    );

    let mut other_gw = good.clone();
    other_gw["ips"][0]["gateway"] = json!("198.51.100.99");
    let e = StaticPlugin
        .check(&cmd(Command::Check, with_prev(v, other_gw), ""))
        .unwrap_err();
    assert!(
        e.msg
            .starts_with("static: Failed to match addr 198.51.100.2/24"),
        "{}",
        e.msg
    );

    let mut other_prefix = good;
    other_prefix["ips"][0]["address"] = json!("198.51.100.2/25");
    assert!(StaticPlugin
        .check(&cmd(Command::Check, with_prev(v, other_prefix), ""))
        .is_err());

    let e = StaticPlugin
        .check(&cmd(Command::Check, conf(v, full_ipam()), ""))
        .unwrap_err();
    assert_eq!(e.msg, "Required prevResult missing");
}

#[test]
fn del_status_gc_succeed() {
    let c = cmd(Command::Del, b"{}".to_vec(), "");
    assert!(StaticPlugin.del(&c).is_ok());
    assert!(StaticPlugin.status(&c).is_ok());
    assert!(StaticPlugin.gc(&c).is_ok());
}
