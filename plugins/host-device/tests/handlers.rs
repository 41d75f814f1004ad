//! Handler tests: the plugin against the in-memory kernel (`testing::FakeNet`),
//! a scripted IPAM (`plexus_cni::testing::FakeExec`) and sysfs fixture trees.
//! No root needed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use plexus_cni::testing::FakeExec;
use plexus_cni::{CmdArgs, CniError, Command, Plugin};
use plexus_host_device::net::Side;
use plexus_host_device::testing::{FakeLink, FakeOpener, World};
use plexus_host_device::HostDevice;
use rstest::rstest;
use serde_json::{json, Value};

const POD: &str = "/var/run/netns/pod1";
const MAC: &str = "02:00:00:00:00:05";

struct Env {
    plugin: HostDevice<FakeOpener, FakeExec>,
    data: tempfile::TempDir,
    _sys: tempfile::TempDir,
}

impl Env {
    /// Host with `ens5` (MTU 9000, up) and an empty pod.
    fn new() -> Self {
        let mut w = World::new(POD);
        w.add_link(Side::Host, "ens5", MAC, 9000, true);
        Self::with_world(w)
    }

    fn with_world(w: World) -> Self {
        let sys = tempfile::tempdir().unwrap();
        Env {
            plugin: HostDevice {
                opener: FakeOpener::new(w),
                exec: FakeExec::new().with_plugin("static"),
                sys_root: sys.path().to_path_buf(),
            },
            data: tempfile::tempdir().unwrap(),
            _sys: sys,
        }
    }

    fn world(&self) -> std::cell::RefMut<'_, World> {
        self.plugin.opener.world.borrow_mut()
    }

    fn conf(&self, version: &str, extra: Value) -> Value {
        let mut c = json!({
            "cniVersion": version, "name": "sriov-vnic-1", "type": "host-device",
            "device": "ens5", "dataDir": self.data.path(),
            "ipam": {"type": "static", "addresses": [{"address": "198.51.100.7/24", "gateway": "198.51.100.1"}]}
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

    fn args(&self, cmd: Command, netns: &str, conf: &Value) -> CmdArgs {
        CmdArgs {
            command: cmd,
            container_id: "c1".into(),
            netns: netns.into(),
            ifname: "net1".into(),
            args: String::new(),
            path: vec![PathBuf::from("/opt/cni/bin")],
            stdin: serde_json::to_vec(conf).unwrap(),
        }
    }

    fn ipam_ok(&self, version: &str) {
        let mut ip = json!({"address": "198.51.100.7/24", "gateway": "198.51.100.1"});
        if version.starts_with("0.") {
            ip["version"] = json!("4");
        }
        let out = json!({"cniVersion": version, "ips": [ip],
            "routes": [{"dst": "0.0.0.0/0"}, {"dst": "203.0.113.0/24", "gw": "198.51.100.254"}],
            "dns": {"nameservers": ["198.51.100.53"]}});
        self.plugin
            .exec
            .push_output(&serde_json::to_vec(&out).unwrap());
    }

    fn add(&self, version: &str, extra: Value) -> Result<Value, CniError> {
        let c = self.conf(version, extra);
        self.plugin.add(&self.args(Command::Add, POD, &c))
    }

    fn del(&self, netns: &str, version: &str, extra: Value) -> Result<(), CniError> {
        let c = self.conf(version, extra);
        self.plugin.del(&self.args(Command::Del, netns, &c))
    }

    fn state_files(&self) -> Vec<String> {
        std::fs::read_dir(self.data.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".json"))
            .collect()
    }

    fn ipam_commands(&self) -> Vec<String> {
        self.plugin
            .exec
            .calls()
            .iter()
            .filter_map(|c| c.command().map(str::to_string))
            .collect()
    }

    /// The host device is back as found: name, MTU, up, no alias.
    fn assert_restored(&self) {
        let w = self.plugin.opener.world.borrow();
        let l = &w
            .get(Side::Host, "ens5")
            .expect("ens5 back on the host")
            .link;
        assert_eq!((l.mtu, l.up, l.alias.as_deref()), (9000, true, None));
        assert!(w.get(Side::Pod, "net1").is_none());
    }
}

/// A link's routes as `dst gateway|- kernel|boot`, in the order added.
fn routes_of(l: &FakeLink) -> Vec<String> {
    l.routes
        .iter()
        .map(|r| {
            let gw = r.gateway.map_or("-".to_string(), |g| g.to_string());
            let proto = if r.protocol == plexus_netlink::RTPROT_KERNEL {
                "kernel"
            } else {
                "boot"
            };
            format!("{} {gw} {proto}", r.dst)
        })
        .collect()
}

#[rstest]
fn add_then_del_restores(#[values("0.3.1", "0.4.0", "1.0.0", "1.1.0")] version: &str) {
    let env = Env::new();
    env.ipam_ok(version);
    let out = env.add(version, json!({})).unwrap();
    assert_eq!(out["cniVersion"], version);
    assert_eq!(out["interfaces"][0]["name"], "net1");
    assert_eq!(out["interfaces"][0]["mac"], MAC);
    assert_eq!(out["interfaces"][0]["sandbox"], POD);
    assert_eq!(out["ips"][0]["address"], "198.51.100.7/24");
    assert_eq!(out["ips"][0]["interface"], 0);
    assert_eq!(out["dns"]["nameservers"][0], "198.51.100.53");
    assert_eq!(
        out["interfaces"][0].get("mtu").is_some(),
        version == "1.1.0"
    );
    assert_eq!(
        out["ips"][0].get("version").is_some(),
        version.starts_with("0.")
    );
    {
        let w = env.world();
        assert!(w.get(Side::Host, "ens5").is_none());
        let p = w.get(Side::Pod, "net1").unwrap();
        assert!(p.link.up);
        assert_eq!(p.link.alias.as_deref(), Some("ens5"));
        assert_eq!(p.addrs, ["198.51.100.7/24".parse().unwrap()]);
        assert_eq!(
            routes_of(p),
            [
                "198.51.100.0/24 - kernel",
                "0.0.0.0/0 198.51.100.1 boot",
                "203.0.113.0/24 198.51.100.254 boot"
            ]
        );
    }
    assert_eq!(env.state_files(), ["c1-net1.json"]);

    env.del(POD, version, json!({})).unwrap();
    env.assert_restored();
    assert!(env.state_files().is_empty());
    // Idempotent: again, and with the netns gone, and with no netns at all.
    env.del(POD, version, json!({})).unwrap();
    env.world().pod = None;
    env.del(POD, version, json!({})).unwrap();
    env.del("", version, json!({})).unwrap();
    env.assert_restored();
    assert_eq!(env.ipam_commands(), ["ADD", "DEL", "DEL", "DEL", "DEL"]);
}

#[test]
fn del_after_netns_destroyed_finds_device_under_pod_name() {
    let env = Env::new();
    env.ipam_ok("1.0.0");
    env.add("1.0.0", json!({})).unwrap();
    {
        // The pod dies: the kernel returns the physical device as `net1`.
        let mut w = env.world();
        let mut l = w.pod.take().unwrap().remove(0);
        l.link.up = false;
        w.host.push(l);
    }
    env.del(POD, "1.0.0", json!({})).unwrap();
    env.assert_restored();
    assert!(env.world().get(Side::Host, "net1").is_none());
}

#[test]
fn del_finds_device_renamed_inside_pod() {
    let env = Env::new();
    env.ipam_ok("1.0.0");
    env.add("1.0.0", json!({})).unwrap();
    {
        let mut w = env.world();
        let pod = w.pod.as_mut().unwrap();
        pod[0].link.name = "eth7".into();
    }
    env.del(POD, "1.0.0", json!({})).unwrap();
    env.assert_restored();
}

#[test]
fn failed_ipam_leaves_device_untouched() {
    let env = Env::new();
    env.plugin
        .exec
        .push_error(CniError::generic("static: no addresses"));
    let e = env.add("1.0.0", json!({})).unwrap_err();
    assert!(e.msg.contains("no addresses"), "{e}");
    env.assert_restored();
    assert!(env.state_files().is_empty());
    assert_eq!(env.ipam_commands(), ["ADD", "DEL"]);
}

#[test]
fn failed_configure_rolls_back_device_and_ipam() {
    let env = Env::new();
    env.ipam_ok("1.0.0");
    env.world().fail.push("add_address");
    let e = env.add("1.0.0", json!({})).unwrap_err();
    assert!(e.msg.contains("add address 198.51.100.7/24"), "{e}");
    env.assert_restored();
    assert!(env.state_files().is_empty());
    assert_eq!(env.ipam_commands(), ["ADD", "DEL"]);
}

/// Queues a `static` result with `ips` (address, gateway) and `routes`
/// (dst, gw), in `version`'s shape.
fn ipam_returns(env: &Env, version: &str, ips: &[(&str, &str)], routes: Value) {
    let ips: Vec<Value> = ips
        .iter()
        .map(|(a, g)| {
            let mut ip = json!({"address": a, "gateway": g});
            if version.starts_with("0.") {
                ip["version"] = json!("4");
            }
            ip
        })
        .collect();
    let out = json!({"cniVersion": version, "ips": ips, "routes": routes});
    env.plugin
        .exec
        .push_output(&serde_json::to_vec(&out).unwrap());
}

/// The tutorial's NAD: address gateway 0.0.0.0 and a route to the
/// address's own subnet with `gw` 0.0.0.0. As in the reference, the route
/// goes in beside the kernel's connected route, on-link, and is reported
/// as configured.
#[rstest]
fn tutorial_subnet_route_sits_beside_the_connected_route(
    #[values("0.3.1", "0.4.0", "1.0.0", "1.1.0")] version: &str,
) {
    let env = Env::new();
    let routes = json!([{"dst": "198.51.100.0/24", "gw": "0.0.0.0"}]);
    ipam_returns(
        &env,
        version,
        &[("198.51.100.93/24", "0.0.0.0")],
        routes.clone(),
    );
    let out = env.add(version, json!({})).unwrap();
    assert_eq!(out["routes"], routes);
    assert_eq!(out["ips"][0]["gateway"], "0.0.0.0");
    let w = env.world();
    let p = w.get(Side::Pod, "net1").unwrap();
    assert_eq!(
        routes_of(p),
        ["198.51.100.0/24 - kernel", "198.51.100.0/24 - boot"]
    );
    assert_eq!(p.routes[1].scope, plexus_netlink::Scope::Universe);
}

/// An explicit `gw` 0.0.0.0 is on-link even when the address has a real
/// gateway; only a missing `gw` takes the address gateway. A route to the
/// address's own subnet through a real gateway is added too.
#[test]
fn explicit_zero_gw_is_on_link_missing_gw_takes_the_address_gateway() {
    let env = Env::new();
    ipam_returns(
        &env,
        "1.0.0",
        &[("198.51.100.7/24", "198.51.100.1")],
        json!([
            {"dst": "203.0.113.0/24", "gw": "0.0.0.0"},
            {"dst": "203.0.113.128/25"},
            {"dst": "198.51.100.0/24", "gw": "198.51.100.254"}
        ]),
    );
    env.add("1.0.0", json!({})).unwrap();
    let w = env.world();
    assert_eq!(
        routes_of(w.get(Side::Pod, "net1").unwrap()),
        [
            "198.51.100.0/24 - kernel",
            "203.0.113.0/24 - boot",
            "203.0.113.128/25 198.51.100.1 boot",
            "198.51.100.0/24 198.51.100.254 boot"
        ]
    );
}

/// The same route twice (here once with its gateway defaulted): the kernel
/// refuses the second as identical, which is kept, not an error.
#[test]
fn identical_route_twice_is_added_once() {
    let env = Env::new();
    ipam_returns(
        &env,
        "1.0.0",
        &[("198.51.100.7/24", "198.51.100.1")],
        json!([{"dst": "0.0.0.0/0"}, {"dst": "0.0.0.0/0", "gw": "198.51.100.1"}]),
    );
    let out = env.add("1.0.0", json!({})).unwrap();
    assert_eq!(out["routes"].as_array().unwrap().len(), 2, "{out}");
    let w = env.world();
    assert_eq!(
        routes_of(w.get(Side::Pod, "net1").unwrap()),
        ["198.51.100.0/24 - kernel", "0.0.0.0/0 198.51.100.1 boot"]
    );
}

/// EEXIST without an identical route in the pod, or any other route error:
/// ADD fails naming the route, and rolls back.
#[rstest]
fn route_error_fails_add_naming_the_route_and_rolls_back(#[values(true, false)] exists: bool) {
    let env = Env::new();
    env.ipam_ok("1.0.0");
    if exists {
        env.world().fail_exists.push("create_route");
    } else {
        env.world().fail.push("create_route");
    }
    let e = env.add("1.0.0", json!({})).unwrap_err();
    assert!(
        e.msg.contains("add route 0.0.0.0/0 via 198.51.100.1"),
        "{e}"
    );
    assert_eq!(
        e.msg.contains("already has a different route"),
        exists,
        "{e}"
    );
    env.assert_restored();
    assert!(env.state_files().is_empty());
    assert_eq!(env.ipam_commands(), ["ADD", "DEL"]);
}

#[test]
fn ifname_clash_in_pod_changes_nothing() {
    let env = Env::new();
    env.world()
        .add_link(Side::Pod, "net1", "02:00:00:00:00:99", 1500, true);
    let e = env.add("1.0.0", json!({})).unwrap_err();
    assert!(e.msg.contains("\"net1\" already exists"), "{e}");
    let w = env.world();
    let l = &w.get(Side::Host, "ens5").unwrap().link;
    assert_eq!((l.mtu, l.up), (9000, true));
    assert!(env.ipam_commands().is_empty());
}

#[test]
fn second_add_for_the_same_device_is_refused() {
    let env = Env::new();
    env.ipam_ok("1.0.0");
    env.add("1.0.0", json!({})).unwrap();
    let c = env.conf("1.0.0", json!({}));
    let mut a = env.args(Command::Add, POD, &c);
    a.container_id = "c2".into();
    let e = env.plugin.add(&a).unwrap_err();
    assert!(e.msg.contains("in use by container c1"), "{e}");
    assert!(env.world().get(Side::Pod, "net1").is_some());
}

#[test]
fn stale_record_is_recovered_on_add() {
    let env = Env::new();
    env.ipam_ok("1.0.0");
    env.add("1.0.0", json!({})).unwrap();
    {
        // Pod gone without DEL; device back on the host as net1.
        let mut w = env.world();
        let l = w.pod.take().unwrap().remove(0);
        w.host.push(l);
        w.pod = Some(Vec::new());
        w.alive.clear();
        w.alive.push("/var/run/netns/pod2".into());
        w.pod_path = "/var/run/netns/pod2".into();
    }
    env.ipam_ok("1.0.0");
    let c = env.conf("1.0.0", json!({"device": null, "hwaddr": MAC}));
    let mut a = env.args(Command::Add, "/var/run/netns/pod2", &c);
    a.container_id = "c2".into();
    env.plugin.add(&a).unwrap();
    assert_eq!(env.state_files(), ["c2-net1.json"]);
    let rec: Value =
        serde_json::from_slice(&std::fs::read(env.data.path().join("c2-net1.json")).unwrap())
            .unwrap();
    assert_eq!(rec["host"]["name"], "ens5", "original name recovered");
}

/// sysfs with 0000:00:04.0 -> ens6 (mlx5_core) and 0000:00:05.0 on vfio-pci.
fn sysfs(root: &Path) {
    let devs = root.join("sys/devices/pci0000:00");
    let bus = root.join("sys/bus/pci/devices");
    std::fs::create_dir_all(&bus).unwrap();
    for (addr, driver) in [("0000:00:04.0", "mlx5_core"), ("0000:00:05.0", "vfio-pci")] {
        std::fs::create_dir_all(devs.join(addr)).unwrap();
        std::fs::create_dir_all(root.join("sys/bus/pci/drivers").join(driver)).unwrap();
        symlink(
            format!("../../../devices/pci0000:00/{addr}"),
            bus.join(addr),
        )
        .unwrap();
        symlink(
            format!("../../../bus/pci/drivers/{driver}"),
            devs.join(addr).join("driver"),
        )
        .unwrap();
    }
    std::fs::create_dir_all(devs.join("0000:00:04.0/net/ens6")).unwrap();
}

#[test]
fn allocated_device_id_wins_over_device_name() {
    let mut w = World::new(POD);
    w.add_link(Side::Host, "ens5", MAC, 9000, true);
    w.add_link(Side::Host, "ens6", "02:00:00:00:00:06", 1500, false);
    let env = Env::with_world(w);
    sysfs(&env.plugin.sys_root);
    env.ipam_ok("1.1.0");
    let out = env
        .add(
            "1.1.0",
            json!({"runtimeConfig": {"deviceID": "0000:00:04.0"}}),
        )
        .unwrap();
    assert_eq!(out["interfaces"][0]["mac"], "02:00:00:00:00:06");
    assert_eq!(out["interfaces"][0]["pciID"], "0000:00:04.0");
    assert!(env.world().get(Side::Host, "ens5").is_some());
    env.del(
        POD,
        "1.1.0",
        json!({"runtimeConfig": {"deviceID": "0000:00:04.0"}}),
    )
    .unwrap();
    let w = env.world();
    let l = &w.get(Side::Host, "ens6").unwrap().link;
    assert_eq!((l.mtu, l.up), (1500, false));
}

#[test]
fn userspace_driver_device_is_reported_not_moved() {
    let env = Env::new();
    sysfs(&env.plugin.sys_root);
    env.ipam_ok("1.1.0");
    let out = env
        .add("1.1.0", json!({"device": null, "pciBusID": "00:05.0"}))
        .unwrap();
    assert_eq!(out["interfaces"][0]["pciID"], "0000:00:05.0");
    assert_eq!(out["interfaces"][0]["sandbox"], POD);
    assert!(out["interfaces"][0].get("mac").is_none());
    assert!(env.world().pod.as_ref().unwrap().is_empty());
    env.del(POD, "1.1.0", json!({"device": null, "pciBusID": "00:05.0"}))
        .unwrap();
    assert!(env.state_files().is_empty());
}

#[test]
fn use_interface_network_copies_and_restores_host_config() {
    let env = Env::new();
    {
        let mut w = env.world();
        let l = &mut w.host[0];
        l.addrs.push("198.51.100.5/24".parse().unwrap());
        let mut r = plexus_netlink::Route::new("203.0.113.0/24".parse().unwrap());
        r.gateway = Some("198.51.100.1".parse().unwrap());
        r.oif = Some(l.link.index);
        l.routes.push(r);
    }
    let out = env
        .add("1.0.0", json!({"ipam": null, "useInterfaceNetwork": true}))
        .unwrap();
    assert_eq!(out["ips"][0]["address"], "198.51.100.5/24");
    assert_eq!(out["routes"][0]["dst"], "203.0.113.0/24");
    {
        let w = env.world();
        let p = w.get(Side::Pod, "net1").unwrap();
        assert_eq!(p.addrs, ["198.51.100.5/24".parse().unwrap()]);
        assert_eq!(
            routes_of(p),
            [
                "198.51.100.0/24 - kernel",
                "203.0.113.0/24 198.51.100.1 boot"
            ]
        );
    }
    env.del(
        POD,
        "1.0.0",
        json!({"ipam": null, "useInterfaceNetwork": true}),
    )
    .unwrap();
    env.assert_restored();
    let w = env.world();
    let h = w.get(Side::Host, "ens5").unwrap();
    assert_eq!(h.addrs, ["198.51.100.5/24".parse().unwrap()]);
    assert_eq!(
        routes_of(h),
        [
            "198.51.100.0/24 - kernel",
            "203.0.113.0/24 198.51.100.1 boot"
        ]
    );
    assert!(env.ipam_commands().is_empty());
}

#[rstest]
fn check_compares_pod_with_prev_result(#[values("0.4.0", "1.0.0", "1.1.0")] version: &str) {
    let env = Env::new();
    env.ipam_ok(version);
    let prev = env.add(version, json!({})).unwrap();
    let mut c = env.conf(version, json!({}));
    c["prevResult"] = prev.clone();
    env.plugin
        .check(&env.args(Command::Check, POD, &c))
        .unwrap();

    env.world().pod.as_mut().unwrap()[0].addrs.clear();
    let e = env
        .plugin
        .check(&env.args(Command::Check, POD, &c))
        .unwrap_err();
    assert!(e.msg.contains("198.51.100.7/24"), "{e}");

    let c = env.conf(version, json!({}));
    let e = env
        .plugin
        .check(&env.args(Command::Check, POD, &c))
        .unwrap_err();
    assert!(e.msg.contains("prevResult"), "{e}");
}

#[test]
fn gc_restores_and_forgets_unlisted_attachments() {
    let env = Env::new();
    env.ipam_ok("1.1.0");
    env.add("1.1.0", json!({})).unwrap();
    let mut c = env.conf("1.1.0", json!({}));
    c["cni.dev/valid-attachments"] = json!([{"containerID": "c1", "ifname": "net1"}]);
    env.plugin.gc(&env.args(Command::Gc, "", &c)).unwrap();
    assert_eq!(env.state_files(), ["c1-net1.json"]);
    c["cni.dev/valid-attachments"] = json!([]);
    env.plugin.gc(&env.args(Command::Gc, "", &c)).unwrap();
    assert!(env.state_files().is_empty());
    env.assert_restored();
    assert_eq!(env.ipam_commands(), ["ADD", "GC", "GC"]);
    env.plugin
        .status(&env.args(Command::Status, "", &c))
        .unwrap();
}

#[test]
fn unknown_device_and_missing_netns_are_clear_errors() {
    let env = Env::new();
    let e = env.add("1.0.0", json!({"device": "ens9"})).unwrap_err();
    assert_eq!(e.code, 999);
    assert!(e.msg.contains("device \"ens9\": device not found"), "{e}");
    let c = env.conf("1.0.0", json!({}));
    let e = env
        .plugin
        .add(&env.args(Command::Add, "/var/run/netns/nope", &c))
        .unwrap_err();
    assert!(e.msg.contains("/var/run/netns/nope"), "{e}");
    env.assert_restored();
    assert!(env.ipam_commands().is_empty());
}

#[test]
fn del_fails_and_keeps_record_when_host_names_are_taken() {
    let env = Env::new();
    env.ipam_ok("1.0.0");
    env.add("1.0.0", json!({})).unwrap();
    {
        // Both the pod name and the original name are taken on the host.
        let mut w = env.world();
        w.add_link(Side::Host, "ens5", "02:00:00:00:00:77", 1500, false);
        w.add_link(Side::Host, "net1", "02:00:00:00:00:78", 1500, false);
    }
    let e = env.del(POD, "1.0.0", json!({})).unwrap_err();
    assert!(e.msg.contains("taken"), "{e}");
    assert_eq!(env.state_files(), ["c1-net1.json"]);
    assert_eq!(env.ipam_commands(), ["ADD", "DEL"], "IPAM DEL still ran");
    {
        let mut w = env.world();
        w.host
            .retain(|l| l.link.name != "ens5" && l.link.name != "net1");
    }
    env.del(POD, "1.0.0", json!({})).unwrap();
    env.assert_restored();
}
