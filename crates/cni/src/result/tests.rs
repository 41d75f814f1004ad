use super::*;
use serde_json::json;

fn sample() -> CniResult {
    CniResult {
        interfaces: vec![Interface {
            name: "net1".into(),
            mac: "0a:58:c6:33:64:02".into(),
            mtu: Some(9000),
            sandbox: "/var/run/netns/x".into(),
            socket_path: String::new(),
            pci_id: "0000:00:04.0".into(),
        }],
        ips: vec![
            IpConfig {
                interface: Some(0),
                address: "198.51.100.2/24".parse().unwrap(),
                gateway: Some("198.51.100.1".parse().unwrap()),
            },
            IpConfig {
                interface: Some(0),
                address: "2001:db8::2/64".parse().unwrap(),
                gateway: None,
            },
        ],
        routes: vec![Route {
            table: Some(100),
            mtu: Some(1500),
            ..Route::new("0.0.0.0/0".parse().unwrap(), "198.51.100.1".parse().ok())
        }],
        dns: Dns {
            nameservers: vec!["203.0.113.53".into()],
            ..Dns::default()
        },
    }
}

#[test]
fn v04_has_version_and_no_v11_fields() {
    let v = sample().to_json("0.4.0").unwrap();
    assert_eq!(v["ips"][0]["version"], "4");
    assert_eq!(v["ips"][1]["version"], "6");
    assert!(v["interfaces"][0].get("mtu").is_none());
    assert!(v["interfaces"][0].get("pciID").is_none());
    assert!(v["routes"][0].get("table").is_none());
}

#[test]
fn v11_keeps_everything() {
    let r = sample();
    let v = r.to_json("1.1.0").unwrap();
    assert!(v["ips"][0].get("version").is_none());
    assert_eq!(v["interfaces"][0]["mtu"], 9000);
    assert_eq!(v["routes"][0]["table"], 100);
    assert_eq!(CniResult::from_json(&v).unwrap(), r);
}

#[test]
fn v02_first_per_family() {
    let mut r = sample();
    r.ips.push(IpConfig {
        interface: None,
        address: "198.51.100.9/24".parse().unwrap(),
        gateway: None,
    });
    let v = r.to_json("0.2.0").unwrap();
    assert_eq!(v["ip4"]["ip"], "198.51.100.2/24");
    assert_eq!(v["ip4"]["routes"][0]["dst"], "0.0.0.0/0");
    assert_eq!(v["ip6"]["ip"], "2001:db8::2/64");
    assert!(v.get("interfaces").is_none());
    let back = CniResult::from_json(&v).unwrap();
    assert_eq!(back.ips.len(), 2);
    assert_eq!(back.routes.len(), 1);
}

#[test]
fn v02_without_ips_fails() {
    let e = CniResult::default().to_json("0.1.0").unwrap_err();
    assert_eq!(e.msg, "cannot convert: no valid IP addresses");
}

#[test]
fn empty_dns_omitted_and_unknown_version() {
    let v = CniResult::default().to_json("1.0.0").unwrap();
    assert_eq!(v, json!({"cniVersion":"1.0.0"}));
    assert_eq!(CniResult::default().to_json("2.0.0").unwrap_err().code, 1);
}

#[test]
fn serde_is_the_canonical_form_and_reads_any_version() {
    let r = sample();
    let v = serde_json::to_value(&r).unwrap();
    assert_eq!(v, r.to_json(CANONICAL_VERSION).unwrap());
    assert_eq!(serde_json::from_value::<CniResult>(v).unwrap(), r);
    let old: CniResult = serde_json::from_value(r.to_json("0.3.1").unwrap()).unwrap();
    assert_eq!(old.ips, r.ips);
    let legacy: CniResult =
        serde_json::from_value(json!({"ip4": {"ip": "198.51.100.2/24"}})).unwrap();
    assert_eq!(legacy.ips.len(), 1);
    let bad = json!({"ips": [{"address": "nope"}]});
    let e = CniResult::from_json_any(&bad).unwrap_err();
    assert!(e.msg.contains("\"nope\""), "{}", e.msg);
}

#[test]
fn from_slice_falls_back_to_conf_version() {
    let r = CniResult::from_slice(br#"{"ips":[{"address":"198.51.100.2/24"}]}"#, "1.0.0").unwrap();
    assert_eq!(r.ips.len(), 1);
    assert_eq!(CniResult::from_slice(b"nope", "1.0.0").unwrap_err().code, 6);
    let bad = json!({"cniVersion":"1.0.0","ips":[{"address":"198.51.100.2"}]});
    assert_eq!(CniResult::from_json(&bad).unwrap_err().code, 6);
}
