//! Root-only tests against the real kernel. Every namespace is created by
//! `unshare` on a scratch thread and held only by its fd: links made inside
//! vanish with it, so nothing leaks even when an assertion fails, and no
//! name is ever visible in the host namespace.
#![allow(clippy::unwrap_used)]

use ipnet::IpNet;
use nix::sched::{unshare, CloneFlags};
use plexus_netlink::{Error, Family, Handle, OperState, Route, Rule, Scope};
use plexus_netns::NetNs;

fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test needs root (network namespaces); run it as root"
    );
}

/// A new, empty network namespace and a handle bound to it.
fn fresh() -> (NetNs, Handle) {
    require_root();
    let ns = std::thread::spawn(|| {
        unshare(CloneFlags::CLONE_NEWNET).unwrap();
        NetNs::current().unwrap()
    })
    .join()
    .unwrap();
    let h = Handle::open_in(&ns).unwrap();
    (ns, h)
}

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

#[test]
fn link_lookup_and_state() {
    let (_ns, h) = fresh();
    h.add_veth("pxa0", "pxb0").unwrap();
    let a = h.link_by_name("pxa0").unwrap();
    assert_eq!(h.link_by_index(a.index).unwrap().name, "pxa0");
    assert_eq!(a.kind.as_deref(), Some("veth"));
    assert!(!a.up);
    let mac = a.mac.unwrap();
    assert_eq!(h.link_by_mac(&mac).unwrap().index, a.index);
    assert_eq!(h.links().unwrap().len(), 3, "lo + veth pair");

    h.set_mtu(a.index, 1400).unwrap();
    h.set_alias(a.index, "was-ens5").unwrap();
    h.set_link_up(a.index, true).unwrap();
    let a2 = h.link_by_name("pxa0").unwrap();
    assert_eq!((a2.mtu, a2.up), (1400, true));
    assert_eq!(a2.alias.as_deref(), Some("was-ens5"));
    assert_eq!(a2.oper_state, OperState::LowerLayerDown, "peer is down");

    h.clear_alias(a.index).unwrap();
    h.set_link_up(a.index, false).unwrap();
    h.rename(a.index, "pxrenamed").unwrap();
    let a3 = h.link_by_index(a.index).unwrap();
    assert_eq!(
        (a3.name.as_str(), a3.up, a3.alias),
        ("pxrenamed", false, None)
    );

    let e = h.link_by_name("pxa0").unwrap_err();
    assert!(e.is_not_found(), "{e}");
    assert!(e.to_string().contains("\"pxa0\""), "{e}");
    let e = h.rename(a.index, "pxb0").unwrap_err();
    assert!(e.is_exists(), "{e}");

    h.delete_link(a.index).unwrap();
    assert!(h.link_by_name("pxb0").unwrap_err().is_not_found());
    assert!(h.delete_link(a.index).unwrap_err().is_not_found());
}

#[test]
fn move_to_netns_renames_in_one_request() {
    let (host, h) = fresh();
    let (pod, p) = fresh();
    h.add_veth("pxvf0", "pxpeer0").unwrap();
    let vf = h.link_by_name("pxvf0").unwrap();
    h.move_to_netns(vf.index, &pod, Some("net1")).unwrap();
    assert!(h.link_by_name("pxvf0").unwrap_err().is_not_found());
    let moved = p.link_by_name("net1").unwrap();
    assert_eq!(moved.mac, vf.mac);

    // And back, under the original name.
    p.move_to_netns(moved.index, &host, Some("pxvf0")).unwrap();
    assert_eq!(h.link_by_name("pxvf0").unwrap().mac, vf.mac);
}

#[test]
fn move_to_netns_with_sets_everything_on_arrival() {
    let (host, h) = fresh();
    let (pod, p) = fresh();
    h.add_veth("pxvf2", "pxpeer3").unwrap();
    let vf = h.link_by_name("pxvf2").unwrap();
    h.set_link_up(vf.index, true).unwrap();
    let into = plexus_netlink::LinkMove {
        name: Some("net1"),
        alias: Some("pxvf2"),
        mtu: Some(1400),
        up: Some(true),
    };
    h.move_to_netns_with(vf.index, &pod, &into).unwrap();
    let moved = p.link_by_name("net1").unwrap();
    assert_eq!(
        (moved.mac, moved.alias.as_deref(), moved.mtu, moved.up),
        (vf.mac, Some("pxvf2"), 1400, true)
    );

    // Back: original name and MTU, alias cleared, left down.
    let back = plexus_netlink::LinkMove {
        name: Some("pxvf2"),
        alias: Some(""),
        mtu: Some(vf.mtu),
        up: Some(false),
    };
    p.move_to_netns_with(moved.index, &host, &back).unwrap();
    let home = h.link_by_name("pxvf2").unwrap();
    assert_eq!(
        (home.mac, home.alias, home.mtu, home.up),
        (vf.mac, None, vf.mtu, false)
    );
}

/// Documents the kernel's clash semantics that `move_to_netns` warns about.
#[test]
fn move_to_netns_name_clash_semantics() {
    let (_host, h) = fresh();
    let (pod, p) = fresh();
    p.add_veth("net1", "pxother").unwrap();
    h.add_veth("pxvf1", "pxpeer1").unwrap();
    let vf = h.link_by_name("pxvf1").unwrap();

    // Current name free in the pod: the move happens, the rename fails.
    let e = h.move_to_netns(vf.index, &pod, Some("net1")).unwrap_err();
    assert!(e.is_exists(), "{e}");
    assert!(h.link_by_name("pxvf1").unwrap_err().is_not_found());
    let stranded = p.link_by_name("pxvf1").unwrap();
    assert_eq!(stranded.mac, vf.mac);

    // Current name also taken in the target: fails atomically, stays put.
    h.add_veth("pxvf1", "pxpeer2").unwrap();
    let second = h.link_by_name("pxvf1").unwrap();
    let e = h
        .move_to_netns(second.index, &pod, Some("net1"))
        .unwrap_err();
    assert!(e.is_exists(), "{e}");
    assert_eq!(h.link_by_name("pxvf1").unwrap().index, second.index);
}

#[test]
fn addresses_add_list_delete_flush() {
    let (_ns, h) = fresh();
    h.add_veth("pxa1", "pxb1").unwrap();
    let a = h.link_by_name("pxa1").unwrap();
    h.set_link_up(a.index, true).unwrap();
    h.add_address(a.index, &net("198.51.100.2/24")).unwrap();
    h.add_address(a.index, &net("203.0.113.9/25")).unwrap();
    h.add_address_flags(a.index, &net("2001:db8::2/64"), plexus_netlink::IFA_F_NODAD)
        .unwrap();
    let e = h.add_address(a.index, &net("198.51.100.2/24")).unwrap_err();
    assert!(e.is_exists(), "{e}");

    let got = h.addresses(Some(a.index)).unwrap();
    let nets: Vec<String> = got.iter().map(|x| x.addr.to_string()).collect();
    assert!(nets.contains(&"198.51.100.2/24".to_string()), "{nets:?}");
    assert!(nets.contains(&"203.0.113.9/25".to_string()), "{nets:?}");
    assert!(nets.contains(&"2001:db8::2/64".to_string()), "{nets:?}");
    let v4 = got
        .iter()
        .find(|x| x.addr == net("198.51.100.2/24"))
        .unwrap();
    assert_eq!(v4.scope, Scope::Universe);
    assert_eq!(v4.label.as_deref(), Some("pxa1"));

    h.del_address(a.index, &net("203.0.113.9/25")).unwrap();
    let e = h.del_address(a.index, &net("203.0.113.9/25")).unwrap_err();
    assert!(e.is_not_found(), "{e}");

    h.flush_addresses(a.index, Some(Family::V4)).unwrap();
    let left = h.addresses(Some(a.index)).unwrap();
    assert!(left.iter().all(|x| x.family() == Family::V6), "{left:?}");
    h.flush_addresses(a.index, None).unwrap();
    assert!(h
        .addresses(Some(a.index))
        .unwrap()
        .iter()
        .all(|x| x.addr.addr().is_ipv6() && x.scope == Scope::Link));
}

#[test]
fn routes_in_tables_both_families() {
    let (_ns, h) = fresh();
    h.add_veth("pxa2", "pxb2").unwrap();
    let a = h.link_by_name("pxa2").unwrap();
    let b = h.link_by_name("pxb2").unwrap();
    h.set_link_up(a.index, true).unwrap();
    h.set_link_up(b.index, true).unwrap();
    h.add_address(a.index, &net("198.51.100.2/24")).unwrap();
    h.add_address_flags(a.index, &net("2001:db8::2/64"), plexus_netlink::IFA_F_NODAD)
        .unwrap();

    // default via gw dev X table 1000, plus the subnet route in that table.
    let mut dflt = Route::new(net("0.0.0.0/0"));
    dflt.gateway = Some("198.51.100.1".parse().unwrap());
    dflt.oif = Some(a.index);
    dflt.table = 1000;
    let mut subnet = Route::new(net("198.51.100.0/24"));
    subnet.oif = Some(a.index);
    subnet.scope = Scope::Link;
    subnet.table = 1000;
    h.add_route(&subnet).unwrap();
    h.add_route(&dflt).unwrap();
    assert!(h.add_route(&dflt).unwrap_err().is_exists());

    let mut extra = Route::new(net("203.0.113.0/24"));
    extra.gateway = Some("198.51.100.1".parse().unwrap());
    extra.priority = Some(50);
    extra.mtu = Some(1400);
    extra.advmss = Some(1360);
    h.add_route(&extra).unwrap();
    let mut v6 = Route::new(net("2001:db8:1::/48"));
    v6.gateway = Some("2001:db8::1".parse().unwrap());
    v6.oif = Some(a.index);
    h.add_route(&v6).unwrap();

    let t1000 = h.routes(Some(Family::V4), Some(1000)).unwrap();
    assert_eq!(t1000.len(), 2, "{t1000:?}");
    let d = t1000.iter().find(|r| r.dst.prefix_len() == 0).unwrap();
    assert_eq!(d.gateway, dflt.gateway);
    assert_eq!(d.oif, Some(a.index));
    let main = h.routes(Some(Family::V4), Some(254)).unwrap();
    let e = main
        .iter()
        .find(|r| r.dst == net("203.0.113.0/24"))
        .unwrap();
    assert_eq!(
        (e.priority, e.mtu, e.advmss),
        (Some(50), Some(1400), Some(1360))
    );
    assert_eq!(e.oif, Some(a.index), "kernel resolves the device");
    let kernel = main
        .iter()
        .find(|r| r.dst == net("198.51.100.0/24"))
        .unwrap();
    assert_eq!(kernel.protocol, plexus_netlink::RTPROT_KERNEL);
    let six = h.routes(Some(Family::V6), None).unwrap();
    assert!(
        six.iter().any(|r| r.dst == net("2001:db8:1::/48")),
        "{six:?}"
    );

    let mut changed = extra.clone();
    changed.priority = Some(50);
    changed.mtu = Some(1300);
    h.replace_route(&changed).unwrap();
    let main = h.routes(Some(Family::V4), Some(254)).unwrap();
    let e = main
        .iter()
        .find(|r| r.dst == net("203.0.113.0/24"))
        .unwrap();
    assert_eq!(e.mtu, Some(1300));

    h.del_route(&dflt).unwrap();
    let e = h.del_route(&dflt).unwrap_err();
    assert!(e.is_not_found(), "{e}");
    assert!(e.to_string().contains("table 1000"), "{e}");
    h.del_route(&v6).unwrap();
}

#[test]
fn rules_add_list_delete() {
    let (_ns, h) = fresh();
    let mut r = Rule::from_source(net("198.51.100.7/32"), 1001);
    r.priority = Some(1001);
    h.add_rule(&r).unwrap();
    let e = h.add_rule(&r).unwrap_err();
    assert!(matches!(e, Error::Exists { .. }), "{e}");
    let mut r6 = Rule::from_source(net("2001:db8::7/128"), 1001);
    r6.priority = Some(1001);
    h.add_rule(&r6).unwrap();

    let v4 = h.rules(Family::V4).unwrap();
    let found = v4.iter().find(|x| x.src == r.src).unwrap();
    assert_eq!((found.table, found.priority), (1001, Some(1001)));
    assert!(
        v4.iter().any(|x| x.table == 254),
        "main rule listed: {v4:?}"
    );
    assert!(h.rules(Family::V6).unwrap().iter().any(|x| x.src == r6.src));

    let sel = Rule {
        family: Family::V4,
        priority: Some(1002),
        table: 1002,
        src: None,
        dst: Some(net("203.0.113.0/24")),
        iif: Some("lo".into()),
        oif: Some("pxout0".into()),
    };
    h.add_rule(&sel).unwrap();
    let got = h.rules(Family::V4).unwrap();
    assert!(got.contains(&sel), "{got:?}");
    h.del_rule(&sel).unwrap();

    h.del_rule(&r).unwrap();
    assert!(h.del_rule(&r).unwrap_err().is_not_found());
    assert!(!h.rules(Family::V4).unwrap().iter().any(|x| x.src == r.src));
}
