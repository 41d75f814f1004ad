//! Leader election: one leader at a time, takeover after expiry.

use std::path::Path;
use std::time::Duration;

use plexus_netattach::ClientConfig;
use plexus_operator::kube::HttpKube;
use plexus_operator::leader::Elector;
use serde_json::Value;

use crate::support::Harness;

#[test]
fn one_leader_at_a_time_and_takeover_after_expiry() {
    let h = Harness::new(&[]);
    let cfg = format!("apiVersion: v1\nkind: Config\nclusters:\n- name: f\n  cluster:\n    server: {}\nusers:\n- name: u\n  user: {{}}\ncontexts:\n- name: f\n  context:\n    cluster: f\n    user: u\ncurrent-context: f\n", h.kube.url());
    let config = ClientConfig::from_kubeconfig_str(&cfg, Path::new("/"), Path::new("kc")).unwrap();
    let kube = HttpKube::new(config, "t").unwrap();
    let mut a = Elector::new(
        "kube-system",
        "plexus-operator",
        "a",
        Duration::from_secs(1),
    );
    let mut b = Elector::new(
        "kube-system",
        "plexus-operator",
        "b",
        Duration::from_secs(1),
    );
    assert!(a.try_lead(&kube));
    assert!(!b.try_lead(&kube));
    std::thread::sleep(Duration::from_millis(400));
    assert!(a.try_lead(&kube), "renewal");
    assert!(!b.try_lead(&kube), "renewed record seen afresh");
    // a stops renewing: b takes over once it saw the record unchanged for 1 s.
    std::thread::sleep(Duration::from_millis(1100));
    assert!(b.try_lead(&kube));
    let lease: Value = h
        .kube
        .get_object("/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/plexus-operator")
        .unwrap();
    assert_eq!(lease["spec"]["holderIdentity"], "b");
    assert_eq!(lease["spec"]["leaseTransitions"], 1);
    assert!(!a.try_lead(&kube), "a lost it");
}
