//! Graceful pod deletion as kube-apiserver v1.28 does it: a DELETE of a pod
//! bound to a node does not remove it, it sets `deletionTimestamp` (now +
//! the grace period) and `deletionGracePeriodSeconds` and answers 200 with
//! the pod; the pod stays readable and writable (a status PATCH during
//! teardown gets 200) until the kubelet deletes it with grace 0. Unbound
//! pods, pods in a terminal phase and `gracePeriodSeconds=0` go at once.

use serde_json::{json, Value};

/// Default of `spec.terminationGracePeriodSeconds` (set at create by the
/// real server's defaulting).
const DEFAULT_GRACE_SECONDS: i64 = 30;

/// The grace period a DELETE of `pod` gets: `gracePeriodSeconds` from the
/// query or the `DeleteOptions` body, else the pod's own; 0 when the pod is
/// not bound to a node or already finished.
pub(super) fn grace_seconds(pod: &Value, query: &str, body: &[u8]) -> i64 {
    let unbound = pod["spec"]["nodeName"].as_str().unwrap_or("").is_empty();
    let finished = matches!(
        pod["status"]["phase"].as_str(),
        Some("Succeeded" | "Failed")
    );
    if unbound || finished {
        return 0;
    }
    let from_query = query.split('&').find_map(|kv| {
        kv.strip_prefix("gracePeriodSeconds=")
            .and_then(|v| v.parse::<i64>().ok())
    });
    let from_body = || {
        serde_json::from_slice::<Value>(body)
            .ok()
            .and_then(|o| o["gracePeriodSeconds"].as_i64())
    };
    from_query
        .or_else(from_body)
        .or_else(|| pod["spec"]["terminationGracePeriodSeconds"].as_i64())
        .unwrap_or(DEFAULT_GRACE_SECONDS)
        .max(0)
}

/// Marks `pod` as terminating `grace` seconds from `now_secs`; a pod already
/// terminating keeps the earlier deadline (a DELETE can only shorten it).
/// Returns whether the pod changed.
pub(super) fn mark_terminating(pod: &mut Value, grace: i64, now_secs: u64) -> bool {
    let deadline = now_secs.saturating_add(u64::try_from(grace).unwrap_or(0));
    let meta = &mut pod["metadata"];
    if let Some(old) = meta["deletionGracePeriodSeconds"].as_i64() {
        if old <= grace {
            return false;
        }
    }
    meta["deletionTimestamp"] = json!(plexus_cni::timefmt::rfc3339(deadline));
    meta["deletionGracePeriodSeconds"] = json!(grace);
    true
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn grace_rules() {
        let bound = json!({"spec": {"nodeName": "n1"}});
        assert_eq!(grace_seconds(&bound, "", b""), 30);
        assert_eq!(grace_seconds(&bound, "gracePeriodSeconds=0", b""), 0);
        assert_eq!(grace_seconds(&bound, "", br#"{"gracePeriodSeconds":5}"#), 5);
        let own = json!({"spec": {"nodeName": "n1", "terminationGracePeriodSeconds": 7}});
        assert_eq!(grace_seconds(&own, "", b""), 7);
        assert_eq!(grace_seconds(&json!({"spec": {}}), "", b""), 0);
        let done = json!({"spec": {"nodeName": "n1"}, "status": {"phase": "Succeeded"}});
        assert_eq!(grace_seconds(&done, "", b""), 0);
    }

    #[test]
    fn deadline_only_shortens() {
        let mut pod = json!({"metadata": {"name": "p"}});
        assert!(mark_terminating(&mut pod, 30, 1_700_000_000));
        assert_eq!(pod["metadata"]["deletionGracePeriodSeconds"], 30);
        assert_eq!(pod["metadata"]["deletionTimestamp"], "2023-11-14T22:13:50Z");
        assert!(!mark_terminating(&mut pod, 60, 1_700_000_000));
        assert!(mark_terminating(&mut pod, 10, 1_700_000_000));
        assert_eq!(pod["metadata"]["deletionGracePeriodSeconds"], 10);
    }
}
