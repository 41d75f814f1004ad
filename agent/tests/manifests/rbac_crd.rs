//! The node manifest's RBAC (exactly the rules needed) and the NAD CRD.

use std::collections::BTreeSet;

use crate::support::{of_kind, plexus_manifest};

#[test]
fn rbac_is_exactly_the_needed_set() {
    let all = plexus_manifest();
    let roles = of_kind(&all, "ClusterRole");
    assert_eq!(roles.len(), 1);
    let mut got = BTreeSet::new();
    for rule in roles[0]["rules"].as_array().unwrap() {
        for g in rule["apiGroups"].as_array().unwrap() {
            for r in rule["resources"].as_array().unwrap() {
                for v in rule["verbs"].as_array().unwrap() {
                    got.insert(format!(
                        "{}/{}:{}",
                        g.as_str().unwrap(),
                        r.as_str().unwrap(),
                        v.as_str().unwrap()
                    ));
                }
            }
        }
    }
    let want: BTreeSet<String> = [
        "/pods:get",
        "/pods/status:patch",
        "k8s.cni.cncf.io/network-attachment-definitions:get",
        "/events:create",
        "apps/daemonsets:get",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(got, want);
    assert!(of_kind(&all, "Role").is_empty());

    let binding = of_kind(&all, "ClusterRoleBinding");
    assert_eq!(binding[0]["roleRef"]["name"], roles[0]["metadata"]["name"]);
    let sa = of_kind(&all, "ServiceAccount");
    assert_eq!(binding[0]["subjects"][0]["name"], sa[0]["metadata"]["name"]);
    assert_eq!(binding[0]["subjects"][0]["namespace"], "kube-system");
    assert_eq!(sa[0]["metadata"]["namespace"], "kube-system");
}

#[test]
fn crd_matches_upstream_shape() {
    let all = plexus_manifest();
    let crd = of_kind(&all, "CustomResourceDefinition");
    assert_eq!(crd.len(), 1);
    let c = crd[0];
    assert_eq!(
        c["metadata"]["name"],
        "network-attachment-definitions.k8s.cni.cncf.io"
    );
    assert_eq!(c["spec"]["group"], "k8s.cni.cncf.io");
    assert_eq!(c["spec"]["scope"], "Namespaced");
    assert_eq!(c["spec"]["names"]["kind"], "NetworkAttachmentDefinition");
    assert_eq!(
        c["spec"]["names"]["plural"],
        "network-attachment-definitions"
    );
    let v = &c["spec"]["versions"][0];
    assert_eq!(v["name"], "v1");
    assert_eq!(v["served"], true);
    assert_eq!(v["storage"], true);
    assert_eq!(
        v["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["config"]["type"],
        "string"
    );
    assert!(of_kind(&all, "Namespace").is_empty());
}
