//! The harness: the fake API server and fake OCI with nodes, a pool, and an operator.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use plexus_netattach::ClientConfig;
use plexus_oci::auth::{AuthError, CredentialSource};
use plexus_oci::keys::{private_key_from_pem, Credentials};
use plexus_oci::model::NetworkType;
use plexus_oci::{OciClient, Policy};
use plexus_operator::crd::{NodePhase, PoolStatus};
use plexus_operator::kube::HttpKube;
use plexus_operator::{Operator, Settings};
use plexus_testkit::kube::FakeApiServer;
use plexus_testkit::oci::{FakeOci, InstanceSeed, SubnetSeed};
use serde_json::json;

pub(crate) const KEY: &str = include_str!("../../../crates/oci/tests/fixtures/vector-key.pem");
pub(crate) const PUB: &str = include_str!("../../../crates/oci/tests/fixtures/vector-key.pub.pem");
pub(crate) const KEY_ID: &str =
    "ocid1.tenancy.oc1..t/ocid1.user.oc1..operator/73:61:a2:21:67:e0:df:be:7e:4b:93:1e:15:98:a5:b7";
pub(crate) const SUBNET: &str = "ocid1.subnet.oc1.phx.pods";
pub(crate) const COMPARTMENT: &str = "ocid1.compartment.oc1..c";
pub(crate) const POOL: &str = "/apis/plexus.io/v1alpha1/vnicpools/pods";
pub(crate) const RESOURCE: &str = "plexus.io/vnic-pods";

#[derive(Debug)]
pub(crate) struct StaticKey(pub(crate) Credentials);

impl CredentialSource for StaticKey {
    fn credentials(&self) -> Result<Credentials, AuthError> {
        Ok(self.0.clone())
    }
    fn region(&self) -> Result<String, AuthError> {
        Ok("us-phoenix-1".into())
    }
    fn invalidate(&self) {}
}

pub(crate) fn instance(n: &str) -> String {
    format!("ocid1.instance.oc1.phx.node{n}")
}

pub(crate) struct Harness {
    pub(crate) kube: FakeApiServer,
    pub(crate) oci: FakeOci,
    pub(crate) client: Arc<OciClient>,
    pub(crate) _tmp: tempfile::TempDir,
}

impl Harness {
    pub(crate) fn new(nodes: &[(&str, NetworkType)]) -> Self {
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

    pub(crate) fn pool(&self, per_node: u32, switch: bool) {
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

    pub(crate) fn operator(&self, attach_timeout: Duration) -> Operator {
        let cfg = format!("apiVersion: v1\nkind: Config\nclusters:\n- name: f\n  cluster:\n    server: {}\nusers:\n- name: u\n  user: {{}}\ncontexts:\n- name: f\n  context:\n    cluster: f\n    user: u\ncurrent-context: f\n", self.kube.url());
        let config =
            ClientConfig::from_kubeconfig_str(&cfg, Path::new("/"), Path::new("kubeconfig"))
                .unwrap();
        let kube = Arc::new(HttpKube::new(config, "plexus-operator").unwrap());
        Operator::new(kube, self.client.clone(), Settings { attach_timeout })
    }

    pub(crate) fn status(&self) -> PoolStatus {
        let pool = self.kube.get_object(POOL).unwrap();
        serde_json::from_value(pool["status"].clone()).unwrap_or_default()
    }

    pub(crate) fn node_status(&self, node: &str) -> plexus_operator::crd::NodeStatus {
        self.status()
            .nodes
            .into_iter()
            .find(|n| n.name == node)
            .unwrap()
    }

    /// Reconciles until `done(status)` or panics after 15 s.
    pub(crate) fn run_until(&self, op: &Operator, what: &str, done: impl Fn(&PoolStatus) -> bool) {
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
    pub(crate) fn advertise(&self, node: &str, n: u32) {
        let mut obj = self
            .kube
            .get_object(&format!("/api/v1/nodes/{node}"))
            .unwrap();
        obj["status"]["allocatable"][RESOURCE] = json!(n.to_string());
        self.kube.put_object(obj).unwrap();
    }

    pub(crate) fn secondaries(&self, node: &str) -> Vec<plexus_oci::model::VnicAttachment> {
        self.oci
            .attachments(&instance(node))
            .into_iter()
            .filter(|a| a.display_name.as_deref() != Some("primary"))
            .collect()
    }

    pub(crate) fn events(&self) -> Vec<(String, String, String)> {
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

pub(crate) fn all_phase(s: &PoolStatus, nodes: usize, phase: NodePhase) -> bool {
    s.nodes.len() == nodes && s.nodes.iter().all(|n| n.phase == phase)
}
