//! Leader election on a `coordination.k8s.io/v1` Lease, as client-go's
//! leaderelection does it: the holder renews `renewTime` every period; a
//! candidate takes over when it has observed the same record unchanged for
//! `leaseDurationSeconds` on its own clock (so clock skew between replicas
//! does not matter); every write is an optimistic-locked PUT, so two
//! candidates cannot both win.

use std::time::{Duration, Instant, SystemTime};

use serde_json::{json, Value};

use crate::kube::Kube;

/// One candidate.
#[derive(Debug)]
pub struct Elector {
    namespace: String,
    name: String,
    identity: String,
    duration: Duration,
    /// The last record seen and when it was first seen unchanged.
    observed: Option<(Value, Instant)>,
}

fn micro_time(at: SystemTime) -> String {
    let d = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let base = plexus_cni::timefmt::rfc3339(d.as_secs());
    format!("{}.{:06}Z", base.trim_end_matches('Z'), d.subsec_micros())
}

impl Elector {
    pub fn new(namespace: &str, name: &str, identity: &str, duration: Duration) -> Self {
        Self {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            identity: identity.to_owned(),
            duration,
            observed: None,
        }
    }

    /// Acquires or renews; `true` while this candidate leads.
    pub fn try_lead(&mut self, kube: &dyn Kube) -> bool {
        match self.attempt(kube) {
            Ok(lead) => lead,
            Err(e) => {
                tracing::warn!(error = %e, "lease update failed");
                false
            }
        }
    }

    fn attempt(&mut self, kube: &dyn Kube) -> Result<bool, plexus_netattach::ApiError> {
        let now = SystemTime::now();
        let secs = self.duration.as_secs().max(1);
        let Some(lease) = kube.get_lease(&self.namespace, &self.name)? else {
            let lease = json!({
                "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": {"holderIdentity": self.identity, "leaseDurationSeconds": secs,
                    "acquireTime": micro_time(now), "renewTime": micro_time(now), "leaseTransitions": 0},
            });
            kube.write_lease(&self.namespace, &lease, true)?;
            return Ok(true);
        };
        let spec = &lease["spec"];
        let holder = spec["holderIdentity"].as_str().unwrap_or("");
        let record = json!([spec["holderIdentity"], spec["renewTime"]]);
        let seen_since = match &self.observed {
            Some((r, at)) if *r == record => *at,
            _ => {
                let at = Instant::now();
                self.observed = Some((record, at));
                at
            }
        };
        let held_by_me = holder == self.identity;
        let duration = spec["leaseDurationSeconds"]
            .as_u64()
            .map_or(self.duration, Duration::from_secs);
        let expired = holder.is_empty() || seen_since.elapsed() >= duration;
        if !held_by_me && !expired {
            return Ok(false);
        }
        let mut next = lease.clone();
        next["spec"]["holderIdentity"] = json!(self.identity);
        next["spec"]["leaseDurationSeconds"] = json!(secs);
        next["spec"]["renewTime"] = json!(micro_time(now));
        if !held_by_me {
            next["spec"]["acquireTime"] = json!(micro_time(now));
            let transitions = spec["leaseTransitions"].as_u64().unwrap_or(0);
            next["spec"]["leaseTransitions"] = json!(transitions + 1);
            tracing::info!(previous = %holder, "taking over the lease");
        }
        kube.write_lease(&self.namespace, &next, false)?;
        Ok(true)
    }
}
