use super::*;
use serde_json::json;

#[test]
fn unknown_keys_round_trip() {
    let input = json!({
        "cniVersion": "1.0.0", "name": "n", "type": "host-device",
        "device": "ens5", "pciBusID": "0000:00:04.0",
        "ipam": {"type": "static", "addresses": [{"address": "198.51.100.2/24"}]},
        "nested": {"deep": [1, 2]}
    });
    let conf: NetConf = serde_json::from_value(input.clone()).unwrap();
    assert_eq!(conf.plugin_type, "host-device");
    assert_eq!(conf.extra.get("device"), Some(&json!("ens5")));
    assert_eq!(conf.ipam_conf().unwrap().unwrap().plugin_type, "static");
    assert_eq!(serde_json::to_value(&conf).unwrap(), input);
}

#[test]
fn nulls_read_as_empty_like_go() {
    let conf = NetConf::parse(
        br#"{"cniVersion":null,"name":"n","type":null,"dns":{"nameservers":null,"domain":null},
            "runtimeConfig":{"ips":null,"dns":{"Servers":null}}}"#,
    )
    .unwrap();
    assert_eq!(conf.version(), "0.1.0");
    assert!(conf.dns.as_ref().unwrap().is_empty());
    assert!(conf.runtime().unwrap().ips.is_empty());
    let list = NetConfList::parse(
        br#"{"name":"l","cniVersions":null,"disableCheck":null,"plugins":[{}]}"#,
    )
    .unwrap();
    assert!(!list.disable_check);
}

#[test]
fn version_default_and_parse_errors() {
    let conf = NetConf::parse(br#"{"name":"x"}"#).unwrap();
    assert_eq!(conf.version(), "0.1.0");
    assert_eq!(NetConf::parse(b"{").unwrap_err().code, 6);
}

#[test]
fn runtime_config_go_case_aliases() {
    let conf: NetConf = serde_json::from_value(json!({
        "name": "n",
        "runtimeConfig": {
            "portMappings": [{"HostPort": 8080, "ContainerPort": 80, "Protocol": "tcp", "HostIP": "198.51.100.1"}],
            "bandwidth": {"IngressRate": 1, "IngressBurst": 2, "EgressRate": 3, "EgressBurst": 4},
            "dns": {"Servers": ["203.0.113.53"], "Searches": ["svc"], "Options": ["ndots:5"]},
            "ips": ["198.51.100.7/24"], "mac": "0a:00:00:00:00:01",
            "deviceID": "0000:00:04.0", "infinibandGUID": "g", "custom": true
        }
    }))
    .unwrap();
    let rc = conf.runtime().unwrap();
    assert_eq!(rc.port_mappings[0].host_port, 8080);
    assert_eq!(rc.port_mappings[0].host_ip, "198.51.100.1".parse().ok());
    assert_eq!(rc.bandwidth.as_ref().map(|b| b.egress_burst), Some(4));
    let dns = rc.dns.clone().unwrap();
    assert_eq!(
        (
            dns.servers.len(),
            dns.searches[0].as_str(),
            dns.options[0].as_str()
        ),
        (1, "svc", "ndots:5")
    );
    assert_eq!(rc.ips, vec!["198.51.100.7/24"]);
    assert_eq!(rc.device_id.as_deref(), Some("0000:00:04.0"));
    assert_eq!(rc.infiniband_guid.as_deref(), Some("g"));
    assert_eq!(rc.extra.get("custom"), Some(&json!(true)));

    let camel: RuntimeConfig = serde_json::from_value(json!({
        "portMappings": [{"hostPort": 1, "containerPort": 2, "protocol": "udp"}],
        "bandwidth": {"ingressRate": 9}, "dns": {"servers": ["x"]}
    }))
    .unwrap();
    assert_eq!(camel.port_mappings[0].protocol, "udp");
    assert_eq!(camel.bandwidth.map(|b| b.ingress_rate), Some(9));
}

#[test]
fn build_plugin_conf_like_libcni() {
    let plugin = json!({"type": "static", "capabilities": {"ips": true, "mac": false}, "keep": 1});
    let mut caps = Map::new();
    caps.insert("ips".into(), json!(["198.51.100.9/24"]));
    caps.insert("mac".into(), json!("x"));
    caps.insert("portMappings".into(), json!([]));
    let prev = json!({"cniVersion": "1.0.0"});
    let out = build_plugin_conf(&plugin, "net", "1.0.0", Some(&prev), &caps).unwrap();
    assert_eq!(out["name"], "net");
    assert_eq!(out["cniVersion"], "1.0.0");
    assert_eq!(out["prevResult"], prev);
    assert_eq!(out["keep"], 1);
    assert_eq!(out["runtimeConfig"], json!({"ips": ["198.51.100.9/24"]}));

    let bare = build_plugin_conf(&json!({"type": "x"}), "n", "0.4.0", None, &caps).unwrap();
    assert!(bare.get("runtimeConfig").is_none());
    assert!(bare.get("prevResult").is_none());
    assert!(build_plugin_conf(&json!([1]), "n", "1.0.0", None, &caps).is_err());
}

#[test]
fn conflist_parse_and_version_pick() {
    let list = NetConfList::parse(
        br#"{"cniVersion":"0.4.0","cniVersions":["1.0.0","1.1.0","9.0.0"],"name":"l","disableGC":true,"plugins":[{"type":"a"}],"x":1}"#,
    )
    .unwrap();
    assert!(list.disable_gc);
    assert_eq!(list.effective_version(version::SUPPORTED), "1.1.0");
    assert_eq!(list.extra.get("x"), Some(&json!(1)));
    assert_eq!(
        NetConfList::parse(br#"{"plugins":[{}]}"#).unwrap_err().code,
        7
    );
    assert_eq!(
        NetConfList::parse(br#"{"name":"a","plugins":[]}"#)
            .unwrap_err()
            .code,
        7
    );
    let one = NetConfList::from_conf(&json!({"cniVersion":"0.3.1","name":"c","type":"t"}));
    assert_eq!((one.name.as_str(), one.plugins.len()), ("c", 1));
    assert_eq!(one.effective_version(version::SUPPORTED), "0.3.1");
}

#[test]
fn gc_attachments_both_keys() {
    let mut conf = json!({"name": "n", "type": "t"});
    let att = vec![GcAttachment {
        container_id: "c1".into(),
        ifname: "net1".into(),
    }];
    inject_gc_attachments(&mut conf, &att).unwrap();
    assert_eq!(conf[VALID_ATTACHMENTS_KEY][0]["containerID"], "c1");
    let parsed: NetConf = serde_json::from_value(conf).unwrap();
    assert_eq!(parsed.valid_attachments().unwrap(), Some(att.clone()));
    let old: NetConf = serde_json::from_value(
        json!({"name":"n","cni.dev/attachments":[{"containerID":"c1","ifname":"net1"}]}),
    )
    .unwrap();
    assert_eq!(old.valid_attachments().unwrap(), Some(att));
}

#[test]
fn prev_result_uses_conf_version() {
    let conf: NetConf = serde_json::from_value(json!({
        "cniVersion": "0.4.0", "name": "n",
        "prevResult": {"ips": [{"version": "4", "address": "198.51.100.2/24"}]}
    }))
    .unwrap();
    let prev = conf.parse_prev_result().unwrap().unwrap();
    assert_eq!(prev.ips[0].address.to_string(), "198.51.100.2/24");
    assert!(!conf.has_capability("ips"));
}
