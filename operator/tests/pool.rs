//! The operator against the fake API server and the fake OCI API: attach,
//! status and events, shrink, foreign and primary VNICs left alone, failures
//! mid-way (429 storms, lost responses, a stuck ATTACHING, a restart between
//! attach and status), the opt-in VFIO switch, and leader election.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use plexus_netattach::ClientConfig;
use plexus_oci::auth::{AuthError, CredentialSource};
use plexus_oci::keys::{private_key_from_pem, Credentials};
use plexus_oci::model::{AttachVnicDetails, AttachmentState, CreateVnicDetails, NetworkType};
use plexus_oci::{Compute, OciClient, Policy};
use plexus_operator::crd::{NodePhase, PoolStatus};
use plexus_operator::kube::HttpKube;
use plexus_operator::leader::Elector;
use plexus_operator::{Operator, Settings};
use plexus_testkit::kube::FakeApiServer;
use plexus_testkit::oci::{FakeOci, InstanceSeed, SubnetSeed};
use serde_json::{json, Value};

const KEY: &str = include_str!("../../crates/oci/tests/fixtures/vector-key.pem");
const PUB: &str = include_str!("../../crates/oci/tests/fixtures/vector-key.pub.pem");
const KEY_ID: &str =
    "ocid1.tenancy.oc1..t/ocid1.user.oc1..operator/73:61:a2:21:67:e0:df:be:7e:4b:93:1e:15:98:a5:b7";
const SUBNET: &str = "ocid1.subnet.oc1.phx.pods";
const COMPARTMENT: &str = "ocid1.compartment.oc1..c";
const POOL: &str = "/apis/plexus.io/v1alpha1/vnicpools/pods";
const RESOURCE: &str = "plexus.io/vnic-pods";

#[derive(Debug)]
struct StaticKey(Credentials);

impl CredentialSource for StaticKey {
    fn credentials(&self) -> Result<Credentials, AuthError> {
        Ok(self.0.clone())
    }
    fn region(&self) -> Result<String, AuthError> {
        Ok("us-phoenix-1".into())
    }
    fn invalidate(&self) {}
}

fn instance(n: &str) -> String {
    format!("ocid1.instance.oc1.phx.node{n}")
}

struct Harness {
    kube: FakeApiServer,
    oci: FakeOci,
    client: Arc<OciClient>,
    _tmp: tempfile::TempDir,
}

impl Harness {
    fn new(nodes: &[(&str, NetworkType)]) -> Self {
        let kube = FakeApiServer::start().unwrap();
        let oci = FakeOci::start().unwrap();
        oci.set_delays(
            Duration::from_millis(150),
            Duration::from_millis(80),
            Duration::from_millis(300),
        );
        oci.add_api_key(KEY_ID, plexus_oci::keys::public_key_from_pem(PUB).unwrap());
        oci.add_subnet(SubnetSeed {
            id: SUBNET.into(),
            cidr: "198.51.100.0/24".into(),
            gateway: "198.51.100.1".into(),
            first_host: "198.51.100.20".parse().unwrap(),
        });
        for (i, (name, nt)) in nodes.iter().enumerate() {
            oci.add_instance(InstanceSeed {
                id: instance(name),
                compartment_id: COMPARTMENT.into(),
                availability_domain: "Uocm:PHX-AD-1".into(),
                network_type: *nt,
                primary_subnet: SUBNET.into(),
                primary_mac: format!("02:00:17:00:{i:02x}:01"),
                primary_ip: format!("198.51.100.{}", 2 + i),
                macs: (0..6)
                    .map(|k| format!("02:00:17:0{i}:00:{k:02x}"))
                    .collect(),
            });
            kube.put_object(json!({"apiVersion": "v1", "kind": "Node",
                "metadata": {"name": format!("node-{name}"), "labels": {"pool": "pods"}},
                "spec": {"providerID": format!("oci://{}", instance(name))},
                "status": {"conditions": [{"type": "Ready", "status": "True"}], "allocatable": {"cpu": "2"}}}))
                .unwrap();
        }
        let creds = Credentials {
            key_id: KEY_ID.into(),
            key: Arc::new(private_key_from_pem(KEY).unwrap()),
        };
        let policy = Policy {
            max_attempts: 4,
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(40),
            min_interval: Duration::from_millis(1),
            page_limit: 2,
        };
        let client = Arc::new(OciClient::new(
            &oci.url(),
            Arc::new(StaticKey(creds)),
            policy,
        ));
        Self {
            kube,
            oci,
            client,
            _tmp: tempfile::tempdir().unwrap(),
        }
    }

    fn pool(&self, per_node: u32, switch: bool) {
        let pool = json!({"apiVersion": "plexus.io/v1alpha1", "kind": "VnicPool",
            "metadata": {"name": "pods"},
            "spec": {"nodeSelector": {"pool": "pods"}, "subnetId": SUBNET, "nsgIds": ["ocid1.nsg.oc1..n"],
                "vnicsPerNode": per_node, "resourceName": RESOURCE, "switchToVfio": switch}});
        match self.kube.get_object(POOL) {
            None => self.kube.put_object(pool).map(|_| ()).unwrap(),
            Some(_) => {
                // Through the API, as kubectl would: the spec change bumps
                // metadata.generation.
                let body = json!({"spec": pool["spec"]}).to_string();
                ureq::patch(&format!("{}{POOL}", self.kube.url()))
                    .set("content-type", "application/merge-patch+json")
                    .send_string(&body)
                    .unwrap();
            }
        }
    }

    fn operator(&self, attach_timeout: Duration) -> Operator {
        let cfg = format!("apiVersion: v1\nkind: Config\nclusters:\n- name: f\n  cluster:\n    server: {}\nusers:\n- name: u\n  user: {{}}\ncontexts:\n- name: f\n  context:\n    cluster: f\n    user: u\ncurrent-context: f\n", self.kube.url());
        let config =
            ClientConfig::from_kubeconfig_str(&cfg, Path::new("/"), Path::new("kubeconfig"))
                .unwrap();
        let kube = Arc::new(HttpKube::new(config, "plexus-operator").unwrap());
        Operator::new(kube, self.client.clone(), Settings { attach_timeout })
    }

    fn status(&self) -> PoolStatus {
        let pool = self.kube.get_object(POOL).unwrap();
        serde_json::from_value(pool["status"].clone()).unwrap_or_default()
    }

    fn node_status(&self, node: &str) -> plexus_operator::crd::NodeStatus {
        self.status()
            .nodes
            .into_iter()
            .find(|n| n.name == node)
            .unwrap()
    }

    /// Reconciles until `done(status)` or panics after 15 s.
    fn run_until(&self, op: &Operator, what: &str, done: impl Fn(&PoolStatus) -> bool) {
        let start = Instant::now();
        loop {
            let _ = op.reconcile_all();
            if done(&self.status()) {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(15),
                "timed out waiting for {what}: {:#?}",
                self.status()
            );
            std::thread::sleep(Duration::from_millis(60));
        }
    }

    /// The node agent's device plugin advertising `n` VNICs.
    fn advertise(&self, node: &str, n: u32) {
        let mut obj = self
            .kube
            .get_object(&format!("/api/v1/nodes/{node}"))
            .unwrap();
        obj["status"]["allocatable"][RESOURCE] = json!(n.to_string());
        self.kube.put_object(obj).unwrap();
    }

    fn secondaries(&self, node: &str) -> Vec<plexus_oci::model::VnicAttachment> {
        self.oci
            .attachments(&instance(node))
            .into_iter()
            .filter(|a| a.display_name.as_deref() != Some("primary"))
            .collect()
    }

    fn events(&self) -> Vec<(String, String, String)> {
        self.kube
            .objects_under("/api/v1/namespaces/default/events/")
            .iter()
            .map(|e| {
                (
                    e["type"].as_str().unwrap_or("").into(),
                    e["reason"].as_str().unwrap_or("").into(),
                    e["message"].as_str().unwrap_or("").into(),
                )
            })
            .collect()
    }
}

fn all_phase(s: &PoolStatus, nodes: usize, phase: NodePhase) -> bool {
    s.nodes.len() == nodes && s.nodes.iter().all(|n| n.phase == phase)
}

#[test]
fn attaches_reports_and_shrinks_without_touching_foreign_vnics() {
    let h = Harness::new(&[("a", NetworkType::Vfio), ("b", NetworkType::Vfio)]);
    h.pool(2, false);
    let op = h.operator(Duration::from_secs(30));
    h.run_until(&op, "attached", |s| all_phase(s, 2, NodePhase::Configuring));
    let st = h.node_status("node-a");
    assert_eq!((st.wanted, st.attached, st.allocatable), (2, 2, 0));
    assert_eq!(st.network_type.as_deref(), Some("VFIO"));
    assert_eq!(st.instance_id, instance("a"));
    for n in ["a", "b"] {
        let s = h.secondaries(n);
        assert_eq!(s.len(), 2, "{s:#?}");
        assert!(s
            .iter()
            .all(|a| a.lifecycle_state == AttachmentState::Attached));
    }
    // IMDS on node a now lists primary + the two VNICs, MACs upper-case.
    let imds = h.oci.imds_vnics(&instance("a"));
    assert_eq!(imds.as_array().unwrap().len(), 3);
    assert_eq!(imds[1]["macAddr"], "02:00:17:00:00:00");
    let reasons: Vec<String> = h.events().into_iter().map(|e| e.1).collect();
    assert_eq!(
        reasons.iter().filter(|r| *r == "AttachingVnic").count(),
        4,
        "{reasons:?}"
    );
    assert_eq!(
        reasons.iter().filter(|r| *r == "VnicAttached").count(),
        4,
        "{reasons:?}"
    );

    // The agent configured them: allocatable closes the loop.
    h.advertise("node-a", 2);
    h.advertise("node-b", 2);
    h.run_until(&op, "ready", |s| {
        all_phase(s, 2, NodePhase::Ready) && s.ready_nodes == 2
    });

    // Someone attaches a VNIC by hand on node a: never ours to detach.
    let foreign = AttachVnicDetails {
        create_vnic_details: CreateVnicDetails {
            subnet_id: SUBNET.into(),
            display_name: Some("plexus-pods-1".into()),
            nsg_ids: vec![],
            freeform_tags: BTreeMap::new(),
            assign_public_ip: false,
            skip_source_dest_check: None,
        },
        instance_id: instance("a"),
        display_name: Some("by-hand".into()),
    };
    let hand = h.client.attach_vnic(&foreign, "by-hand").unwrap();

    // Shrink to one per node: slot 1 goes, the foreign and primary stay.
    h.pool(1, false);
    h.advertise("node-a", 1);
    h.advertise("node-b", 1);
    h.run_until(&op, "shrunk", |s| {
        all_phase(s, 2, NodePhase::Ready) && s.nodes.iter().all(|n| n.wanted == 1)
    });
    std::thread::sleep(Duration::from_millis(200));
    let live: Vec<_> = h
        .secondaries("a")
        .into_iter()
        .filter(|a| a.lifecycle_state != AttachmentState::Detached)
        .collect();
    assert_eq!(live.len(), 2, "slot 0 and the foreign VNIC: {live:#?}");
    assert!(live.iter().any(|a| a.id == hand.id));
    assert!(h
        .oci
        .attachments(&instance("a"))
        .iter()
        .any(|a| a.display_name.as_deref() == Some("primary")
            && a.lifecycle_state == AttachmentState::Attached));
    assert_eq!(h.status().observed_generation, 2);
    assert!(h.events().iter().any(|e| e.1 == "DetachingVnic"));
}

#[test]
fn storms_lost_responses_and_restarts_never_duplicate() {
    let h = Harness::new(&[("a", NetworkType::Vfio)]);
    h.pool(1, false);
    // A lost response: OCI attached, the client saw a 504 and retried with
    // the same token, getting the same attachment back.
    h.oci.inject_lost_response("POST", "/vnicAttachments", 1);
    let op = h.operator(Duration::from_secs(30));
    op.reconcile_all().unwrap();
    assert_eq!(
        h.secondaries("a").len(),
        1,
        "the lost-response attach exists once"
    );
    let first: Vec<u16> = h
        .oci
        .requests()
        .iter()
        .filter(|r| r.method == "POST")
        .map(|r| r.status)
        .collect();
    assert_eq!(first, [504, 200], "replayed by its retry token");

    // Grow to two, into a 429 storm longer than one call's retries.
    h.pool(2, false);
    h.oci.inject("POST", "/vnicAttachments", 429, 6);
    let _ = op.reconcile_all();
    let st = h.node_status("node-a");
    assert_eq!(st.phase, NodePhase::Failed);
    assert_eq!(st.error.as_ref().unwrap().code, "TooManyRequests");
    assert!(h
        .events()
        .iter()
        .any(|e| e.0 == "Warning" && e.1 == "AttachFailed" && e.2.contains("TooManyRequests")));
    assert_eq!(h.secondaries("a").len(), 1);

    // Attach goes through but the pool status write fails (the operator
    // "dies" between attach and status); both slots stay ATTACHING.
    h.oci.set_stuck_attaching(true);
    h.kube
        .inject("PATCH", "/apis/plexus.io/v1alpha1/vnicpools", 500, 1);
    assert!(op.reconcile_all().is_err());
    drop(op);
    assert_eq!(h.secondaries("a").len(), 2);
    // A fresh replica with no memory sees them ATTACHING and waits.
    let op2 = h.operator(Duration::from_millis(400));
    for _ in 0..3 {
        op2.reconcile_all().unwrap();
    }
    assert_eq!(h.secondaries("a").len(), 2, "no duplicate after restart");
    let st = h.node_status("node-a");
    assert_eq!((st.attached, st.attaching), (0, 2));
    // Stuck past the timeout: reported with a code, still no new attach.
    std::thread::sleep(Duration::from_millis(450));
    op2.reconcile_all().unwrap();
    let st = h.node_status("node-a");
    assert_eq!(
        (st.phase, st.error.as_ref().unwrap().code.as_str()),
        (NodePhase::Failed, "AttachTimeout")
    );
    h.oci.set_stuck_attaching(false);
    h.advertise("node-a", 2);
    h.run_until(&op2, "ready", |s| all_phase(s, 1, NodePhase::Ready));
    assert_eq!(h.secondaries("a").len(), 2);
    let log = h.oci.requests();
    let posts: Vec<_> = log.iter().filter(|r| r.method == "POST").collect();
    let ok = posts.iter().filter(|r| r.status == 200).count();
    let lost = posts.iter().filter(|r| r.status == 504).count();
    let tokens: std::collections::BTreeSet<_> =
        posts.iter().map(|r| r.retry_token.clone()).collect();
    // Slot 0: acted on but answered 504, then replayed by its token (200);
    // slot 1: 429s, then 200 once. Two tokens, two VNICs.
    assert_eq!((ok, lost, tokens.len()), (2, 1, 2), "{posts:#?}");
}

#[test]
fn switches_paravirtualized_nodes_to_vfio_one_at_a_time() {
    let h = Harness::new(&[
        ("a", NetworkType::Paravirtualized),
        ("b", NetworkType::Paravirtualized),
    ]);
    h.pool(1, false);
    let op = h.operator(Duration::from_secs(30));
    op.reconcile_all().unwrap();
    assert!(all_phase(&h.status(), 2, NodePhase::Paravirtualized));
    assert!(
        h.secondaries("a").is_empty(),
        "no VNICs while paravirtualized"
    );

    h.kube.put_pod(json!({"metadata": {"name": "app", "namespace": "default"}, "spec": {"nodeName": "node-a"}})).unwrap();
    h.kube.put_pod(json!({"metadata": {"name": "agent", "namespace": "kube-system",
        "ownerReferences": [{"kind": "DaemonSet", "name": "plexus-agent", "apiVersion": "apps/v1", "uid": "x"}]},
        "spec": {"nodeName": "node-a"}})).unwrap();
    h.pool(1, true);
    op.reconcile_all().unwrap();
    let node_a = h.kube.get_object("/api/v1/nodes/node-a").unwrap();
    assert_eq!(node_a["spec"]["unschedulable"], true, "cordoned");
    let node_b = h.kube.get_object("/api/v1/nodes/node-b").unwrap();
    assert!(
        node_b["spec"]["unschedulable"].is_null(),
        "one node at a time"
    );
    assert!(
        h.kube
            .get_object("/api/v1/namespaces/default/pods/app")
            .is_none(),
        "evicted"
    );
    assert!(
        h.kube
            .get_object("/api/v1/namespaces/kube-system/pods/agent")
            .is_some(),
        "DaemonSet pod stays"
    );

    h.advertise("node-a", 1);
    h.advertise("node-b", 1);
    h.run_until(&op, "both switched", |s| all_phase(s, 2, NodePhase::Ready));
    for n in ["a", "b"] {
        let (nt, state, reboots) = h.oci.instance_state(&instance(n)).unwrap();
        assert_eq!(
            (nt, state.as_str(), reboots),
            (NetworkType::Vfio, "RUNNING", 1)
        );
        let node = h
            .kube
            .get_object(&format!("/api/v1/nodes/node-{n}"))
            .unwrap();
        assert_eq!(node["spec"]["unschedulable"], false, "uncordoned");
        assert!(node["metadata"]["annotations"]["plexus.io/vfio-switch"].is_null());
    }
    let reasons: Vec<String> = h.events().into_iter().map(|e| e.1).collect();
    assert_eq!(
        reasons.iter().filter(|r| *r == "VfioSwitchDone").count(),
        2,
        "{reasons:?}"
    );
}

#[test]
fn a_failed_switch_halts_the_pool() {
    let h = Harness::new(&[
        ("a", NetworkType::Paravirtualized),
        ("b", NetworkType::Paravirtualized),
    ]);
    h.pool(1, true);
    h.oci.inject("PUT", "/instances", 409, 10);
    let op = h.operator(Duration::from_secs(30));
    for _ in 0..4 {
        op.reconcile_all().unwrap();
    }
    let st = h.node_status("node-a");
    assert_eq!(
        (st.phase, st.error.as_ref().unwrap().code.as_str()),
        (NodePhase::Failed, "IncorrectState")
    );
    let node_b = h.kube.get_object("/api/v1/nodes/node-b").unwrap();
    assert!(
        node_b["spec"]["unschedulable"].is_null(),
        "halted before node b"
    );
    assert!(h.events().iter().any(|e| e.1 == "VfioSwitchFailed"));
}

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

/// Every request the operator sent is allowed by deploy/operator.yaml's
/// ClusterRole (anywhere) or Role (in its namespace): the manifest's RBAC is
/// sufficient, and a right missing from it fails here.
fn assert_rbac_allows(requests: &[plexus_testkit::kube::RecordedRequest]) {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/operator.yaml"
    ))
    .unwrap();
    let mut rules: Vec<(Option<String>, Value)> = Vec::new();
    for doc in serde_norway::Deserializer::from_str(&text) {
        let v: Value = serde::Deserialize::deserialize(doc).unwrap();
        let ns = match v["kind"].as_str() {
            Some("ClusterRole") => None,
            Some("Role") => Some(v["metadata"]["namespace"].as_str().unwrap().to_owned()),
            _ => continue,
        };
        for r in v["rules"].as_array().unwrap() {
            rules.push((ns.clone(), r.clone()));
        }
    }
    let has = |list: &Value, x: &str| list.as_array().is_some_and(|l| l.iter().any(|i| i == x));
    for req in requests {
        let segs: Vec<&str> = req.path.trim_matches('/').split('/').collect();
        let (group, rest) = match segs.as_slice() {
            ["api", _v, rest @ ..] => ("", rest),
            ["apis", g, _v, rest @ ..] => (*g, rest),
            _ => panic!("unexpected path {}", req.path),
        };
        let (ns, rest) = match rest {
            ["namespaces", ns, rest @ ..] => (Some(*ns), rest),
            rest => (None, rest),
        };
        let (resource, name, collection) = match rest {
            [res] => (res.to_string(), None, true),
            [res, name] => (res.to_string(), Some(*name), false),
            [res, name, sub] => (format!("{res}/{sub}"), Some(*name), false),
            _ => panic!("unexpected path {}", req.path),
        };
        let verb = match (req.method.as_str(), collection) {
            ("GET", true) => "list",
            ("GET", false) => "get",
            ("POST", _) => "create",
            ("PUT", _) => "update",
            ("PATCH", _) => "patch",
            ("DELETE", _) => "delete",
            (m, _) => panic!("unexpected method {m}"),
        };
        let allowed = rules.iter().any(|(rule_ns, r)| {
            rule_ns.as_deref().is_none_or(|n| Some(n) == ns)
                && has(&r["apiGroups"], group)
                && has(&r["resources"], &resource)
                && has(&r["verbs"], verb)
                && (r["resourceNames"].is_null()
                    || name.is_some_and(|n| has(&r["resourceNames"], n)))
        });
        assert!(allowed, "RBAC in deploy/operator.yaml does not allow {verb} {group}/{resource} {ns:?} {name:?} ({} {})", req.method, req.path);
    }
}

#[test]
fn the_manifest_rbac_covers_every_call() {
    let h = Harness::new(&[("a", NetworkType::Paravirtualized)]);
    h.pool(1, true);
    h.kube.put_pod(json!({"metadata": {"name": "app", "namespace": "default"}, "spec": {"nodeName": "node-a"}})).unwrap();
    let op = h.operator(Duration::from_secs(30));
    h.advertise("node-a", 1);
    h.run_until(&op, "switched", |s| all_phase(s, 1, NodePhase::Ready));
    h.pool(0, true);
    h.run_until(&op, "shrunk", |s| {
        s.nodes.iter().all(|n| n.wanted == 0 && n.attaching == 0)
    });
    let cfg = format!("apiVersion: v1\nkind: Config\nclusters:\n- name: f\n  cluster:\n    server: {}\nusers:\n- name: u\n  user: {{}}\ncontexts:\n- name: f\n  context:\n    cluster: f\n    user: u\ncurrent-context: f\n", h.kube.url());
    let kube = HttpKube::new(
        ClientConfig::from_kubeconfig_str(&cfg, Path::new("/"), Path::new("kc")).unwrap(),
        "t",
    )
    .unwrap();
    let mut e = Elector::new(
        "kube-system",
        "plexus-operator",
        "a",
        Duration::from_secs(1),
    );
    assert!(e.try_lead(&kube) && e.try_lead(&kube));
    // The test's own pool writes are not the operator's.
    let ours: Vec<_> = h
        .kube
        .requests()
        .into_iter()
        .filter(|r| !(r.path == POOL && r.method == "PATCH"))
        .collect();
    assert!(ours.iter().any(|r| r.path.ends_with("/eviction")));
    assert_rbac_allows(&ours);
}
