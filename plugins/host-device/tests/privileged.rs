//! Root-only contract tests: the `host-device` binary with explicit env and
//! stdin, our `static` IPAM on `CNI_PATH`, a veth end standing in for the VF.
//! Each test makes a "host" namespace (where the binary runs, through
//! `ip netns exec`) and a pod namespace; both and their links are removed on
//! drop, whatever happens. Run after `cargo build --workspace --bins`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use plexus_testkit::net::{
    bin_dir, bin_path, ip_json, require_root, unique_name, TestNs, Veth, VethEnd,
};
use rstest::rstest;
use serde_json::{json, Value};

const VF_MAC: &str = "02:42:c6:33:64:05";

/// Host and pod namespaces with a veth "VF" (MTU 1400, up) in the host.
struct Rig {
    host: TestNs,
    pod: TestNs,
    veth: Veth,
    data: tempfile::TempDir,
}

impl Rig {
    fn new() -> Self {
        require_root();
        let _ = bin_path("static");
        let host = TestNs::new("pxhh");
        let pod = TestNs::new("pxhp");
        let mut veth = Veth::create(
            VethEnd::new(unique_name("pxvf"))
                .in_ns(&host)
                .mac(VF_MAC)
                .mtu(1400)
                .up(),
            VethEnd::new(unique_name("pxwire")).in_ns(&host).up(),
        );
        veth.may_visit(&pod);
        Rig {
            host,
            pod,
            veth,
            data: tempfile::tempdir().unwrap(),
        }
    }

    fn vf(&self) -> &str {
        self.veth.a()
    }

    fn conf(&self, version: &str, extra: Value) -> Value {
        let mut c = json!({
            "cniVersion": version, "name": "sriov-vnic-1", "type": "host-device",
            "device": self.vf(), "dataDir": self.data.path(),
            "ipam": {"type": "static",
                "addresses": [{"address": "198.51.100.7/24", "gateway": "198.51.100.1"}],
                "routes": [{"dst": "203.0.113.0/24"}],
                "dns": {"nameservers": ["198.51.100.53"]}}
        });
        for (k, v) in extra.as_object().unwrap() {
            if v.is_null() {
                c.as_object_mut().unwrap().remove(k);
            } else {
                c[k] = v.clone();
            }
        }
        c
    }

    /// Runs the binary in the host namespace.
    fn run(&self, cmd: &str, cid: &str, netns: &str, stdin: &[u8]) -> Output {
        let bins = bin_dir();
        let env = [
            ("CNI_COMMAND", cmd),
            ("CNI_CONTAINERID", cid),
            ("CNI_NETNS", netns),
            ("CNI_IFNAME", "net1"),
            ("CNI_PATH", bins.to_str().unwrap()),
        ];
        self.run_env(&env, stdin)
    }

    fn run_env(&self, env: &[(&str, &str)], stdin: &[u8]) -> Output {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", self.host.name()])
            .arg(env!("CARGO_BIN_EXE_host-device"))
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            c.env(k, v);
        }
        let mut child = c.spawn().unwrap();
        child.stdin.take().unwrap().write_all(stdin).unwrap();
        child.wait_with_output().unwrap()
    }

    fn pod_path(&self) -> String {
        self.pod.path().to_string_lossy().into_owned()
    }

    fn add(&self, conf: &Value) -> Output {
        self.run(
            "ADD",
            "c1",
            &self.pod_path(),
            &serde_json::to_vec(conf).unwrap(),
        )
    }

    fn del(&self, conf: &Value) -> Output {
        self.run(
            "DEL",
            "c1",
            &self.pod_path(),
            &serde_json::to_vec(conf).unwrap(),
        )
    }

    /// The VF is on the host under its name, MTU 1400, up, no alias.
    fn assert_restored(&self) {
        let l = self
            .host
            .link(self.vf())
            .unwrap_or_else(|| panic!("{} not back on the host: {}", self.vf(), self.host.links()));
        assert_eq!(l["mtu"], 1400, "{l}");
        assert!(flags(&l).contains(&"UP".to_string()), "{l}");
        assert!(l.get("ifalias").is_none(), "{l}");
        assert_eq!(l["address"], VF_MAC);
        assert!(self.pod.link("net1").is_none());
        assert!(state_files(self.data.path()).is_empty());
    }
}

fn flags(l: &Value) -> Vec<String> {
    l["flags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap().to_string())
        .collect()
}

fn state_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".json"))
                .collect()
        })
        .unwrap_or_default()
}

fn ok_json(o: &Output) -> Value {
    assert!(
        o.status.success(),
        "rc {:?}\nstdout {}\nstderr {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    if o.stdout.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&o.stdout).unwrap()
    }
}

fn err_json(o: &Output) -> Value {
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    serde_json::from_slice(&o.stdout).unwrap()
}

fn pod_addrs(rig: &Rig) -> Vec<String> {
    rig.pod
        .addrs("net1")
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["family"] == "inet")
        .map(|i| format!("{}/{}", i["local"].as_str().unwrap(), i["prefixlen"]))
        .collect()
}

#[rstest]
fn add_del_cycle(#[values("0.3.1", "0.4.0", "1.0.0", "1.1.0")] version: &str) {
    let rig = Rig::new();
    let conf = rig.conf(version, json!({}));
    let out = ok_json(&rig.add(&conf));
    assert_eq!(out["cniVersion"], version);
    let iface = &out["interfaces"][0];
    assert_eq!(iface["name"], "net1");
    assert_eq!(iface["mac"], VF_MAC);
    assert_eq!(iface["sandbox"], rig.pod_path());
    assert_eq!(
        iface.get("mtu").and_then(Value::as_u64),
        (version == "1.1.0").then_some(1400)
    );
    assert_eq!(out["ips"][0]["address"], "198.51.100.7/24");
    assert_eq!(out["ips"][0]["gateway"], "198.51.100.1");
    assert_eq!(out["ips"][0]["interface"], 0);
    assert_eq!(out["routes"][0]["dst"], "203.0.113.0/24");
    assert_eq!(out["dns"]["nameservers"][0], "198.51.100.53");

    assert!(rig.host.link(rig.vf()).is_none());
    let l = rig.pod.link("net1").unwrap();
    assert!(flags(&l).contains(&"UP".to_string()), "{l}");
    assert_eq!(l["ifalias"], rig.vf());
    assert_eq!(pod_addrs(&rig), ["198.51.100.7/24"]);
    let routes = rig.pod.routes();
    let r = routes
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["dst"] == "203.0.113.0/24")
        .unwrap_or_else(|| panic!("{routes}"));
    assert_eq!(r["gateway"], "198.51.100.1");

    if version != "0.3.1" {
        let mut c = conf.clone();
        c["prevResult"] = out.clone();
        ok_json(&rig.run(
            "CHECK",
            "c1",
            &rig.pod_path(),
            &serde_json::to_vec(&c).unwrap(),
        ));
    }

    ok_json(&rig.del(&conf));
    rig.assert_restored();
    // Idempotent: a second DEL, and DEL with no netns.
    ok_json(&rig.del(&conf));
    ok_json(&rig.run("DEL", "c1", "", &serde_json::to_vec(&conf).unwrap()));
    rig.assert_restored();
}

#[test]
fn del_with_vanished_netns_succeeds() {
    let rig = Rig::new();
    let conf = rig.conf("1.0.0", json!({}));
    ok_json(&rig.add(&conf));
    let path = rig.pod_path();
    rig.pod.ip(&["link", "del", "net1"]);
    assert!(Command::new("ip")
        .args(["netns", "del", rig.pod.name()])
        .status()
        .unwrap()
        .success());
    let o = rig.run("DEL", "c1", &path, &serde_json::to_vec(&conf).unwrap());
    ok_json(&o);
    assert!(state_files(rig.data.path()).is_empty());
}

#[test]
fn device_back_under_pod_name_is_restored() {
    let rig = Rig::new();
    let conf = rig.conf("1.0.0", json!({}));
    ok_json(&rig.add(&conf));
    // What a destroyed netns does to a physical VF: back on the host as net1.
    rig.pod
        .ip(&["link", "set", "net1", "netns", rig.host.name()]);
    assert!(rig.host.link("net1").is_some());
    ok_json(&rig.del(&conf));
    assert!(rig.host.link("net1").is_none());
    let l = rig.host.link(rig.vf()).unwrap();
    assert_eq!(l["mtu"], 1400);
    assert!(flags(&l).contains(&"UP".to_string()), "{l}");
}

#[test]
fn del_finds_device_renamed_in_pod() {
    let rig = Rig::new();
    let conf = rig.conf("1.0.0", json!({}));
    ok_json(&rig.add(&conf));
    rig.pod.ip(&["link", "set", "net1", "down"]);
    rig.pod.ip(&["link", "set", "net1", "name", "eth9"]);
    ok_json(&rig.del(&conf));
    rig.assert_restored();
}

#[test]
fn failed_ipam_rolls_back() {
    let rig = Rig::new();
    let conf = rig.conf(
        "1.0.0",
        json!({"ipam": {"type": "static", "addresses": [{"address": "198.51.100.7"}]}}),
    );
    let e = err_json(&rig.add(&conf));
    assert!(e["msg"].as_str().unwrap().contains("198.51.100.7"), "{e}");
    rig.assert_restored();
}

#[test]
fn failed_route_rolls_back_device_and_state() {
    let rig = Rig::new();
    // The gateway is not reachable on-link: the route add fails after IPAM.
    let conf = rig.conf(
        "1.0.0",
        json!({"ipam": {"type": "static",
            "addresses": [{"address": "198.51.100.7/24"}],
            "routes": [{"dst": "203.0.113.0/24", "gw": "203.0.113.99"}]}}),
    );
    let e = err_json(&rig.add(&conf));
    assert!(e["msg"].as_str().unwrap().contains("203.0.113.0/24"), "{e}");
    rig.assert_restored();
}

/// The tutorial's routes on the real kernel: `gw` 0.0.0.0 on the address's
/// own subnet gives a second, on-link route beside the connected one (as
/// the reference's `RouteAddEcmp` does); a route listed twice is added once.
#[test]
fn zero_gw_subnet_route_sits_beside_the_connected_route() {
    let rig = Rig::new();
    let conf = rig.conf(
        "0.3.1",
        json!({"ipam": {"type": "static",
            "addresses": [{"address": "198.51.100.7/24", "gateway": "0.0.0.0"}],
            "routes": [{"dst": "198.51.100.0/24", "gw": "0.0.0.0"},
                       {"dst": "203.0.113.0/24", "gw": "0.0.0.0"},
                       {"dst": "203.0.113.0/24"}]}}),
    );
    let out = ok_json(&rig.add(&conf));
    assert_eq!(
        out["routes"][0],
        json!({"dst": "198.51.100.0/24", "gw": "0.0.0.0"})
    );
    let routes = rig.pod.routes();
    let mut got: Vec<String> = routes
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["dev"] == "net1" && !r["dst"].as_str().unwrap().starts_with("fe80"))
        .filter(|r| r["table"].is_null() || r["table"] == "main")
        .map(|r| {
            format!(
                "{} {} {} {}",
                r["dst"].as_str().unwrap(),
                r["gateway"].as_str().unwrap_or("-"),
                r["protocol"].as_str().unwrap_or("boot"),
                r["scope"].as_str().unwrap_or("universe"),
            )
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            "198.51.100.0/24 - boot universe",
            "198.51.100.0/24 - kernel link",
            "203.0.113.0/24 - boot universe",
        ],
        "{routes}"
    );
    ok_json(&rig.del(&conf));
    rig.assert_restored();
}

#[test]
fn ifname_clash_in_pod_keeps_device_on_host() {
    let rig = Rig::new();
    let _other = Veth::create(
        VethEnd::new("net1").in_ns(&rig.pod),
        VethEnd::new(unique_name("pxo")).in_ns(&rig.pod),
    );
    let e = err_json(&rig.add(&rig.conf("1.0.0", json!({}))));
    assert!(e["msg"].as_str().unwrap().contains("net1"), "{e}");
    assert!(rig.host.link(rig.vf()).is_some());
    assert!(state_files(rig.data.path()).is_empty());
}

#[test]
fn racing_adds_one_wins_device_never_lost() {
    let rig = Rig::new();
    let pod2 = TestNs::new("pxhq");
    let conf = serde_json::to_vec(&rig.conf("1.0.0", json!({}))).unwrap();
    let p1 = rig.pod_path();
    let p2 = pod2.path().to_string_lossy().into_owned();
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| rig.run("ADD", "c1", &p1, &conf));
        let b = s.spawn(|| rig.run("ADD", "c2", &p2, &conf));
        (a.join().unwrap(), b.join().unwrap())
    });
    let wins = [&a, &b].iter().filter(|o| o.status.success()).count();
    assert_eq!(
        wins,
        1,
        "a: {}\nb: {}",
        String::from_utf8_lossy(&a.stdout),
        String::from_utf8_lossy(&b.stdout)
    );
    let loser = if a.status.success() { &b } else { &a };
    let msg = err_json(loser)["msg"].as_str().unwrap().to_string();
    assert!(msg.contains("in use by container"), "{msg}");
    let in_pods = [rig.pod.link("net1"), pod2.link("net1")]
        .iter()
        .filter(|l| l.is_some())
        .count();
    assert_eq!(in_pods, 1);
    let (cid, ns) = if a.status.success() {
        ("c1", p1)
    } else {
        ("c2", p2)
    };
    ok_json(&rig.run("DEL", cid, &ns, &conf));
    rig.assert_restored();
}

#[test]
fn use_interface_network_moves_and_restores_host_config() {
    let rig = Rig::new();
    rig.host
        .ip(&["addr", "add", "198.51.100.5/24", "dev", rig.vf()]);
    rig.host.ip(&[
        "route",
        "add",
        "203.0.113.0/24",
        "via",
        "198.51.100.1",
        "dev",
        rig.vf(),
    ]);
    let conf = rig.conf("1.1.0", json!({"ipam": null, "useInterfaceNetwork": true}));
    let out = ok_json(&rig.add(&conf));
    assert_eq!(out["ips"][0]["address"], "198.51.100.5/24");
    assert_eq!(pod_addrs(&rig), ["198.51.100.5/24"]);
    ok_json(&rig.del(&conf));
    rig.assert_restored();
    let a = rig.host.addrs(rig.vf());
    assert!(a.to_string().contains("198.51.100.5"), "{a}");
    let routes = rig.host.routes();
    assert!(
        routes
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["dst"] == "203.0.113.0/24" && r["gateway"] == "198.51.100.1"),
        "{routes}"
    );
}

/// Global IPv6 addresses of `dev`, `addr/len` (+ ` tentative` during DAD).
fn v6_addrs(ns: &TestNs, dev: &str) -> Vec<String> {
    let mut out: Vec<String> = (ns.addrs(dev).as_array().unwrap().iter())
        .filter(|a| a["family"] == "inet6" && a["scope"] == "global")
        .map(|a| {
            let t = if a["tentative"] == true {
                " tentative"
            } else {
                ""
            };
            format!("{}/{}{t}", a["local"].as_str().unwrap(), a["prefixlen"])
        })
        .collect();
    out.sort();
    out
}

fn v6_routes(ns: &TestNs, dev: &str) -> Vec<String> {
    let routes = ip_json(Some(ns), &["-6", "route", "show", "dev", dev]);
    let mut out: Vec<String> = (routes.as_array().unwrap().iter())
        .filter(|r| !r["dst"].as_str().unwrap().starts_with("fe80"))
        .map(|r| {
            format!(
                "{} via {}",
                r["dst"].as_str().unwrap(),
                r["gateway"].as_str().unwrap_or("-")
            )
        })
        .collect();
    out.sort();
    out
}

/// A dual-stack VNIC as the agent leaves it on the host (IPv4, two IPv6
/// addresses, a link-local IPv6 default and a routed IPv6 prefix): with
/// `useInterfaceNetwork` the pod gets both families, usable at once, and
/// DEL puts both back on the host.
#[test]
fn use_interface_network_carries_and_restores_both_families() {
    let rig = Rig::new();
    let vf = rig.vf().to_string();
    rig.host.ip(&["addr", "add", "198.51.100.5/24", "dev", &vf]);
    for a in ["2001:db8:0:1::5/64", "2001:db8:0:1::6/64"] {
        rig.host.ip(&["-6", "addr", "add", a, "dev", &vf, "nodad"]);
    }
    rig.host.ip(&[
        "-6", "route", "add", "default", "via", "fe80::1", "dev", &vf,
    ]);
    rig.host.ip(&[
        "-6",
        "route",
        "add",
        "2001:db8:ff::/48",
        "via",
        "2001:db8:0:1::fe",
        "dev",
        &vf,
    ]);
    let host_v6 = v6_addrs(&rig.host, &vf);
    let host_routes = v6_routes(&rig.host, &vf);
    assert_eq!(host_v6.len(), 2);

    let conf = rig.conf("1.1.0", json!({"ipam": null, "useInterfaceNetwork": true}));
    let out = ok_json(&rig.add(&conf));
    let ips: Vec<&str> = (out["ips"].as_array().unwrap().iter())
        .map(|i| i["address"].as_str().unwrap())
        .collect();
    assert!(
        ips.contains(&"198.51.100.5/24") && ips.contains(&"2001:db8:0:1::6/64"),
        "{out}"
    );
    assert_eq!(pod_addrs(&rig), ["198.51.100.5/24"]);
    assert_eq!(
        v6_addrs(&rig.pod, "net1"),
        host_v6,
        "in the pod, not tentative"
    );
    let pod_routes = v6_routes(&rig.pod, "net1");
    for r in [
        "default via fe80::1",
        "2001:db8:ff::/48 via 2001:db8:0:1::fe",
    ] {
        assert!(pod_routes.iter().any(|x| x == r), "{r} in {pod_routes:?}");
    }

    ok_json(&rig.del(&conf));
    rig.assert_restored();
    assert_eq!(
        v6_addrs(&rig.host, &vf),
        host_v6,
        "IPv6 addresses back on the host"
    );
    assert_eq!(
        v6_routes(&rig.host, &vf),
        host_routes,
        "IPv6 routes back on the host"
    );
}

#[test]
fn bad_input_fails_with_spec_codes_and_changes_nothing() {
    let rig = Rig::new();
    let p = rig.pod_path();
    let cases: Vec<(Vec<u8>, u64, &str)> = vec![
        (b"{not json".to_vec(), 6, "unmarshal"),
        (serde_json::to_vec(&json!({"cniVersion":"1.0.0","type":"host-device","device":"x"})).unwrap(), 7, "name"),
        (serde_json::to_vec(&rig.conf("9.9.9", json!({})))
            .unwrap(), 1, "9.9.9"),
        (serde_json::to_vec(&rig.conf("1.0.0", json!({"device": "pxnosuch0"}))).unwrap(), 999, "pxnosuch0"),
        (serde_json::to_vec(&rig.conf("1.0.0", json!({"hwaddr": "zz", "device": null}))).unwrap(), 7, "hwaddr"),
        (serde_json::to_vec(&rig.conf("1.0.0", json!({"ipam": {"type": "static", "addresses": [{"address": "198.51.100.300/24"}]}}))).unwrap(), 0, "198.51.100.300"),
    ];
    for (stdin, code, word) in cases {
        let e = err_json(&rig.run("ADD", "c1", &p, &stdin));
        if code != 0 {
            assert_eq!(e["code"], code, "{e}");
        }
        assert!(
            e["msg"].to_string().to_lowercase().contains(word)
                || e["details"].to_string().contains(word),
            "{word}: {e}"
        );
        rig.assert_restored();
    }
    // Missing env var: CNI_NETNS on ADD.
    let conf = serde_json::to_vec(&rig.conf("1.0.0", json!({}))).unwrap();
    let bd = bin_dir();
    let env = [
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", "c1"),
        ("CNI_IFNAME", "net1"),
        ("CNI_PATH", bd.to_str().unwrap()),
    ];
    let e = err_json(&rig.run_env(&env, &conf));
    assert_eq!(e["code"], 4, "{e}");
    assert!(e["msg"].as_str().unwrap().contains("CNI_NETNS"), "{e}");
    rig.assert_restored();
}

#[test]
fn hwaddr_selector_gc_and_status() {
    let rig = Rig::new();
    let conf = rig.conf("1.1.0", json!({"device": null, "hwaddr": VF_MAC}));
    let out = ok_json(&rig.add(&conf));
    assert_eq!(out["interfaces"][0]["mac"], VF_MAC);
    assert_eq!(state_files(rig.data.path()), ["c1-net1.json"]);
    let stdin = |valid: Value| {
        let mut c = conf.clone();
        c["cni.dev/valid-attachments"] = valid;
        serde_json::to_vec(&c).unwrap()
    };
    ok_json(&rig.run("STATUS", "", "", &stdin(json!([]))));
    // Still listed: kept.
    ok_json(&rig.run(
        "GC",
        "",
        "",
        &stdin(json!([{"containerID": "c1", "ifname": "net1"}])),
    ));
    assert!(rig.pod.link("net1").is_some());
    // No longer listed: device restored, record dropped.
    ok_json(&rig.run("GC", "", "", &stdin(json!([]))));
    rig.assert_restored();
    // DEL afterwards is still fine.
    ok_json(&rig.del(&conf));
}
