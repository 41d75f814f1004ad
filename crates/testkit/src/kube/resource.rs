//! The table of resources the fake serves (group, version, kind, scope,
//! subresources, accepted patch types), how an API path maps onto it, and
//! the discovery and `/version` documents built from that table.

use axum::response::Response;
use serde_json::{json, Map, Value};

use super::status::json_response;
/// A resource the fake serves.
#[derive(Debug)]
pub(super) struct Resource {
    pub(super) group: &'static str,
    pub(super) version: &'static str,
    pub(super) plural: &'static str,
    pub(super) kind: &'static str,
    pub(super) list_kind: &'static str,
    pub(super) has_status: bool,
    /// Built-in types accept strategic merge patches; CRDs do not.
    pub(super) builtin: bool,
    /// Pods and events may be updated without a resourceVersion; CRDs may not.
    pub(super) unconditional_update: bool,
    /// Nodes and cluster-scoped CRDs live outside namespaces.
    pub(super) namespaced: bool,
    /// `metadata.generation` is set on create and bumped on spec changes
    /// (CRDs with a status subresource; nodes and pods here do not need it).
    pub(super) generation: bool,
}

pub(super) const RESOURCES: [Resource; 8] = [
    Resource {
        group: "",
        version: "v1",
        plural: "pods",
        kind: "Pod",
        list_kind: "PodList",
        has_status: true,
        builtin: true,
        unconditional_update: true,
        namespaced: true,
        generation: false,
    },
    Resource {
        group: "",
        version: "v1",
        plural: "events",
        kind: "Event",
        list_kind: "EventList",
        has_status: false,
        builtin: true,
        unconditional_update: true,
        namespaced: true,
        generation: false,
    },
    Resource {
        group: "events.k8s.io",
        version: "v1",
        plural: "events",
        kind: "Event",
        list_kind: "EventList",
        has_status: false,
        builtin: true,
        unconditional_update: true,
        namespaced: true,
        generation: false,
    },
    Resource {
        group: "k8s.cni.cncf.io",
        version: "v1",
        plural: "network-attachment-definitions",
        kind: "NetworkAttachmentDefinition",
        list_kind: "NetworkAttachmentDefinitionList",
        has_status: false,
        builtin: false,
        unconditional_update: false,
        namespaced: true,
        generation: false,
    },
    Resource {
        group: "",
        version: "v1",
        plural: "nodes",
        kind: "Node",
        list_kind: "NodeList",
        has_status: true,
        builtin: true,
        unconditional_update: true,
        namespaced: false,
        generation: false,
    },
    Resource {
        group: "coordination.k8s.io",
        version: "v1",
        plural: "leases",
        kind: "Lease",
        list_kind: "LeaseList",
        has_status: false,
        builtin: true,
        unconditional_update: true,
        namespaced: true,
        generation: false,
    },
    Resource {
        group: "plexus.io",
        version: "v1alpha1",
        plural: "vnicpools",
        kind: "VnicPool",
        list_kind: "VnicPoolList",
        has_status: true,
        builtin: false,
        unconditional_update: false,
        namespaced: false,
        generation: true,
    },
    Resource {
        group: "apps",
        version: "v1",
        plural: "daemonsets",
        kind: "DaemonSet",
        list_kind: "DaemonSetList",
        has_status: true,
        builtin: true,
        unconditional_update: true,
        namespaced: true,
        generation: true,
    },
];

impl Resource {
    pub(super) fn prefix(&self) -> String {
        if self.group.is_empty() {
            format!("/api/{}", self.version)
        } else {
            format!("/apis/{}/{}", self.group, self.version)
        }
    }

    pub(super) fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_owned()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    pub(super) fn item_path(&self, ns: &str, name: &str) -> String {
        if self.namespaced {
            format!("{}/namespaces/{ns}/{}/{name}", self.prefix(), self.plural)
        } else {
            format!("{}/{}/{name}", self.prefix(), self.plural)
        }
    }

    /// `pods` or `network-attachment-definitions.k8s.cni.cncf.io`, as in messages.
    pub(super) fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_owned()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// Where etcd would keep it, as quoted in storage errors.
    pub(super) fn storage_key(&self, ns: &str, name: &str) -> String {
        if self.group.is_empty() {
            format!("/registry/{}/{ns}/{name}", self.plural)
        } else {
            format!("/registry/{}/{}/{ns}/{name}", self.group, self.plural)
        }
    }

    pub(super) fn details(&self, name: &str) -> Value {
        let mut d = Map::new();
        if !name.is_empty() {
            d.insert("name".into(), name.into());
        }
        if !self.group.is_empty() {
            d.insert("group".into(), self.group.into());
        }
        d.insert("kind".into(), self.plural.into());
        Value::Object(d)
    }

    pub(super) fn accepted_patch_types(&self) -> &'static str {
        if self.builtin {
            "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json"
        } else {
            "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml"
        }
    }
}

/// What a resource path addresses.
#[derive(Debug)]
pub(super) enum Target<'a> {
    Collection {
        res: &'a Resource,
        ns: Option<String>,
    },
    Item {
        res: &'a Resource,
        ns: String,
        name: String,
        status: bool,
    },
}

pub(super) fn parse_target(path: &str) -> Option<Target<'static>> {
    for res in &RESOURCES {
        let prefix = res.prefix();
        let Some(rest) = path.strip_prefix(&prefix) else {
            continue;
        };
        let segs: Vec<&str> = rest.trim_start_matches('/').split('/').collect();
        if !res.namespaced {
            // Cluster scope: namespace "" stands for "none".
            let (ns, name) = (String::new(), segs.get(1).map(|n| (*n).to_owned()));
            let target = match (segs.as_slice(), name) {
                ([plural], _) if *plural == res.plural => Target::Collection { res, ns: Some(ns) },
                ([plural, _], Some(name)) if *plural == res.plural && !name.is_empty() => {
                    Target::Item {
                        res,
                        ns,
                        name,
                        status: false,
                    }
                }
                ([plural, _, "status"], Some(name)) if *plural == res.plural => Target::Item {
                    res,
                    ns,
                    name,
                    status: true,
                },
                _ => continue,
            };
            return Some(target);
        }
        let target = match segs.as_slice() {
            [plural] if *plural == res.plural => Target::Collection { res, ns: None },
            ["namespaces", ns, plural] if *plural == res.plural => Target::Collection {
                res,
                ns: Some((*ns).to_owned()),
            },
            ["namespaces", ns, plural, name] if *plural == res.plural && !name.is_empty() => {
                Target::Item {
                    res,
                    ns: (*ns).to_owned(),
                    name: (*name).to_owned(),
                    status: false,
                }
            }
            ["namespaces", ns, plural, name, "status"]
                if *plural == res.plural && res.has_status =>
            {
                Target::Item {
                    res,
                    ns: (*ns).to_owned(),
                    name: (*name).to_owned(),
                    status: true,
                }
            }
            _ => continue,
        };
        return Some(target);
    }
    None
}

pub(super) fn version() -> Value {
    json!({
        "major": "1",
        "minor": "31",
        "gitVersion": "v1.31.0-plexus-fake",
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": "go1.22.5",
        "compiler": "gc",
        "platform": "linux/amd64"
    })
}

pub(super) fn discovery(path: &str) -> Option<Response> {
    let resource_list = |gv: &str| {
        let resources: Vec<Value> = RESOURCES
            .iter()
            .filter(|r| r.api_version() == gv)
            .flat_map(|r| {
                let mut out = vec![json!({
                    "name": r.plural,
                    "singularName": "",
                    "namespaced": r.namespaced,
                    "kind": r.kind,
                    "verbs": ["create", "delete", "get", "list", "patch", "update"],
                })];
                if r.has_status {
                    out.push(json!({
                        "name": format!("{}/status", r.plural),
                        "singularName": "",
                        "namespaced": r.namespaced,
                        "kind": r.kind,
                        "verbs": ["get", "patch", "update"],
                    }));
                }
                out
            })
            .collect();
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources})
    };
    let body = match path.trim_end_matches('/') {
        "/api" => json!({
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1:6443"}],
        }),
        "/apis" => {
            let groups: Vec<Value> = [
                ("apps", "v1"),
                ("events.k8s.io", "v1"),
                ("k8s.cni.cncf.io", "v1"),
                ("coordination.k8s.io", "v1"),
                ("plexus.io", "v1alpha1"),
            ]
            .iter()
            .map(|(g, v)| {
                let gv = json!({"groupVersion": format!("{g}/{v}"), "version": v});
                json!({"name": g, "versions": [gv.clone()], "preferredVersion": gv})
            })
            .collect();
            json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
        }
        "/api/v1" => resource_list("v1"),
        "/apis/apps/v1" => resource_list("apps/v1"),
        "/apis/events.k8s.io/v1" => resource_list("events.k8s.io/v1"),
        "/apis/k8s.cni.cncf.io/v1" => resource_list("k8s.cni.cncf.io/v1"),
        "/apis/coordination.k8s.io/v1" => resource_list("coordination.k8s.io/v1"),
        "/apis/plexus.io/v1alpha1" => resource_list("plexus.io/v1alpha1"),
        _ => return None,
    };
    Some(json_response(200, &body))
}
