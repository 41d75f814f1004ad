//! In-memory [`PodApi`] for handler tests: seeded pods and NADs, recorded
//! patches and events, and queued failures per call.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

use serde_json::Value;

use crate::api::{ApiError, Event, Pod, PodApi, PodRef};
use crate::nad::{NadSpec, NetworkAttachmentDefinition, NAD_API_VERSION, NAD_KIND};
use crate::NETWORK_STATUS_ANNOTATION;

/// Which [`PodApi`] call a queued failure applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Call {
    GetPod,
    GetNad,
    PatchNetworkStatus,
    CreateEvent,
}

/// A recorded network-status patch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedPatch {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub status_json: String,
}

#[derive(Default)]
struct State {
    pods: BTreeMap<(String, String), Pod>,
    nads: BTreeMap<(String, String), NetworkAttachmentDefinition>,
    patches: Vec<RecordedPatch>,
    events: Vec<(PodRef, Event)>,
    failures: BTreeMap<Call, VecDeque<ApiError>>,
    calls: Vec<Call>,
    latency: std::time::Duration,
    in_flight: usize,
    max_in_flight: usize,
}

/// A fake pod API; interior mutability so it can be shared by reference.
#[derive(Default)]
pub struct FakePodApi {
    state: Mutex<State>,
}

impl std::fmt::Debug for FakePodApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FakePodApi")
    }
}

impl FakePodApi {
    pub fn new() -> Self {
        Self::default()
    }

    fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        let mut guard = match self.state.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut guard)
    }

    /// Adds (or replaces) a pod with the given annotations.
    pub fn add_pod(&self, namespace: &str, name: &str, uid: &str, annotations: &[(&str, &str)]) {
        let ann: serde_json::Map<String, Value> = annotations
            .iter()
            .map(|(k, v)| ((*k).to_owned(), Value::String((*v).to_owned())))
            .collect();
        let raw = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace, "uid": uid, "annotations": ann},
            "spec": {},
        });
        if let Ok(pod) = Pod::from_value(raw) {
            self.put_pod(pod);
        }
    }

    /// Adds (or replaces) a pod object.
    pub fn put_pod(&self, pod: Pod) {
        let key = (pod.metadata.namespace.clone(), pod.metadata.name.clone());
        self.with(|s| s.pods.insert(key, pod));
    }

    pub fn remove_pod(&self, namespace: &str, name: &str) {
        self.with(|s| s.pods.remove(&(namespace.to_owned(), name.to_owned())));
    }

    /// Adds a NAD with `spec.config` and optional resourceName annotation.
    pub fn add_nad(&self, namespace: &str, name: &str, config: &str, resource_name: Option<&str>) {
        let mut nad = NetworkAttachmentDefinition {
            api_version: NAD_API_VERSION.into(),
            kind: NAD_KIND.into(),
            metadata: Default::default(),
            spec: NadSpec {
                config: config.into(),
            },
        };
        nad.metadata.name = name.into();
        nad.metadata.namespace = namespace.into();
        if let Some(r) = resource_name {
            nad.metadata
                .annotations
                .insert(crate::RESOURCE_NAME_ANNOTATION.into(), r.into());
        }
        self.with(|s| s.nads.insert((namespace.into(), name.into()), nad));
    }

    /// Makes the next call of `call` fail with `err` (queued, FIFO).
    pub fn fail_next(&self, call: Call, err: ApiError) {
        self.with(|s| s.failures.entry(call).or_default().push_back(err));
    }

    pub fn pod(&self, namespace: &str, name: &str) -> Option<Pod> {
        self.with(|s| s.pods.get(&(namespace.into(), name.into())).cloned())
    }

    pub fn patches(&self) -> Vec<RecordedPatch> {
        self.with(|s| s.patches.clone())
    }

    pub fn events(&self) -> Vec<(PodRef, Event)> {
        self.with(|s| s.events.clone())
    }

    /// Every call made, in order (including failed ones).
    pub fn calls(&self) -> Vec<Call> {
        self.with(|s| s.calls.clone())
    }

    /// Every call takes `latency` (outside the lock, so concurrent calls
    /// overlap as on a real server).
    pub fn set_latency(&self, latency: std::time::Duration) {
        self.with(|s| s.latency = latency);
    }

    /// The most calls that were in progress at once.
    pub fn max_in_flight(&self) -> usize {
        self.with(|s| s.max_in_flight)
    }

    fn enter(&self, call: Call) -> Result<(), ApiError> {
        let latency = self.with(|s| {
            s.calls.push(call);
            s.in_flight += 1;
            s.max_in_flight = s.max_in_flight.max(s.in_flight);
            s.latency
        });
        std::thread::sleep(latency);
        self.with(|s| {
            s.in_flight -= 1;
            match s.failures.get_mut(&call).and_then(VecDeque::pop_front) {
                Some(err) => Err(err),
                None => Ok(()),
            }
        })
    }
}

fn not_found(kind: &str, name: &str) -> ApiError {
    ApiError::NotFound {
        message: format!("{kind} \"{name}\" not found"),
    }
}

impl PodApi for FakePodApi {
    fn get_pod(&self, namespace: &str, name: &str) -> Result<Pod, ApiError> {
        self.enter(Call::GetPod)?;
        self.pod(namespace, name)
            .ok_or_else(|| not_found("pods", name))
    }

    fn get_nad(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<NetworkAttachmentDefinition, ApiError> {
        self.enter(Call::GetNad)?;
        self.with(|s| s.nads.get(&(namespace.into(), name.into())).cloned())
            .ok_or_else(|| not_found("network-attachment-definitions.k8s.cni.cncf.io", name))
    }

    fn patch_network_status(
        &self,
        namespace: &str,
        name: &str,
        uid: &str,
        status_json: &str,
    ) -> Result<(), ApiError> {
        self.enter(Call::PatchNetworkStatus)?;
        self.with(|s| {
            let pod = s
                .pods
                .get_mut(&(namespace.into(), name.into()))
                .ok_or_else(|| not_found("pods", name))?;
            if pod.metadata.uid != uid {
                // What kube-apiserver answers a patch that changes the uid.
                return Err(ApiError::Status {
                    code: 422,
                    reason: "Invalid".into(),
                    message: format!(
                        "Pod \"{name}\" is invalid: metadata.uid: Invalid value: \"{uid}\": field is immutable"
                    ),
                });
            }
            pod.metadata
                .annotations
                .insert(NETWORK_STATUS_ANNOTATION.into(), status_json.into());
            if let Some(meta) = pod.raw.get_mut("metadata").and_then(Value::as_object_mut) {
                let ann = meta
                    .entry("annotations")
                    .or_insert_with(|| Value::Object(Default::default()));
                if let Some(ann) = ann.as_object_mut() {
                    ann.insert(NETWORK_STATUS_ANNOTATION.into(), status_json.into());
                }
            }
            s.patches.push(RecordedPatch {
                namespace: namespace.into(),
                name: name.into(),
                uid: uid.into(),
                status_json: status_json.into(),
            });
            Ok(())
        })
    }

    fn create_event(&self, pod: &PodRef, event: &Event) -> Result<(), ApiError> {
        self.enter(Call::CreateEvent)?;
        self.with(|s| s.events.push((pod.clone(), event.clone())));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fake_round_trip() {
        let api = FakePodApi::new();
        api.add_pod(
            "default",
            "p",
            "u1",
            &[("k8s.v1.cni.cncf.io/networks", "a")],
        );
        api.add_nad(
            "default",
            "a",
            r#"{"type":"host-device"}"#,
            Some("oracle.com/vnic"),
        );
        let pod = api.get_pod("default", "p").unwrap();
        assert_eq!(pod.networks_annotation(), Some("a"));
        assert_eq!(
            api.get_nad("default", "a").unwrap().resource_name(),
            Some("oracle.com/vnic")
        );
        assert!(api.get_nad("default", "b").unwrap_err().is_not_found());

        let err = api
            .patch_network_status("default", "p", "other", "[]")
            .unwrap_err();
        assert!(
            matches!(err, ApiError::Status { code: 422, ref message, .. } if message.contains("metadata.uid: Invalid value: \"other\": field is immutable"))
        );
        api.patch_network_status("default", "p", "u1", "[]")
            .unwrap();
        let pod = api.get_pod("default", "p").unwrap();
        assert_eq!(pod.annotation(NETWORK_STATUS_ANNOTATION), Some("[]"));
        assert_eq!(
            pod.raw["metadata"]["annotations"][NETWORK_STATUS_ANNOTATION],
            "[]"
        );

        api.fail_next(Call::GetPod, ApiError::Timeout("slow".into()));
        assert!(api.get_pod("default", "p").unwrap_err().is_retryable());
        assert!(api.get_pod("default", "p").is_ok());

        let ev = Event::added_interface("net1", &["198.51.100.5/24".into()], "default/a");
        api.create_event(&pod.to_ref(), &ev).unwrap();
        assert_eq!(api.events()[0].1, ev);
        assert_eq!(api.patches().len(), 1);
        assert_eq!(api.calls().len(), 9);
    }
}
