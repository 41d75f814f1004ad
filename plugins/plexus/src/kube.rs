//! The bounded use of the Kubernetes API during one CNI call: the client is
//! built only when first needed (DEL from cache never builds it), every GET is
//! retried only for retryable errors and only within `apiRetryBudgetSeconds`,
//! and each NAD is fetched at most once per call.

use std::cell::{OnceCell, RefCell};
use std::collections::HashMap;
use std::time::Duration;

use plexus_cni::retry::{exponential, retry, Limits};
use plexus_netattach::api::PodRef;
use plexus_netattach::http::side_by_side;
use plexus_netattach::{ApiError, Event, NetworkAttachmentDefinition, Pod, PodApi};

use crate::config::PlexusConf;
use crate::error::PlexusError;

/// Component name on events, as `kubectl describe pod` shows it.
pub const EVENT_COMPONENT: &str = "plexus";

/// Builds the pod API client from the plexus config (kubeconfig, timeout).
pub trait KubeConnect {
    fn connect(&self, conf: &PlexusConf) -> Result<Box<dyn PodApi + '_>, PlexusError>;
}

/// The real connector: the kubeconfig named by `kubeconfig` (its token file
/// is re-read on every request by the client), `apiTimeoutSeconds` per
/// request. Retries are ours ([`with_retry`]), so the client makes one
/// attempt per call.
#[derive(Debug, Clone, Copy, Default)]
pub struct HttpKube;

impl KubeConnect for HttpKube {
    fn connect(&self, conf: &PlexusConf) -> Result<Box<dyn PodApi + '_>, PlexusError> {
        let path = std::path::Path::new(&conf.kubeconfig);
        let config = plexus_netattach::kubeconfig::ClientConfig::from_kubeconfig_file(path)
            .map_err(|e| PlexusError::Api {
                what: format!("cannot load kubeconfig {}", path.display()),
                reason: e.to_string(),
                retryable: false,
            })?;
        Ok(Box::new(
            plexus_netattach::http::HttpPodApi::new(config)
                .with_timeout(conf.api_timeout)
                .with_retry(plexus_netattach::http::RetryPolicy::none())
                .with_event_component(EVENT_COMPONENT),
        ))
    }
}

pub use plexus_cni::retry::{Sleeper, ThreadSleeper};

/// Runs `call` until it succeeds, fails with a non-retryable error, or the
/// next wait would exceed `budget`. Backoff 100 ms doubling to 1 s, or the
/// server's Retry-After when it sends one.
pub fn with_retry<T>(
    budget: Duration,
    sleeper: &dyn Sleeper,
    mut call: impl FnMut() -> Result<T, ApiError>,
) -> Result<T, ApiError> {
    let limits = Limits {
        max_attempts: u32::MAX,
        budget,
    };
    let wait = |e: &ApiError, n| match e {
        ApiError::Retryable {
            retry_after: Some(r),
            ..
        } => Some(*r),
        _ if e.is_retryable() => Some(exponential(BACKOFF, MAX_BACKOFF, n)),
        _ => None,
    };
    retry(limits, sleeper, |_| call(), wait).map_err(|g| g.error)
}

const BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

fn api_err(what: String, e: &ApiError) -> PlexusError {
    PlexusError::Api {
        what,
        reason: e.to_string(),
        retryable: e.is_retryable(),
    }
}

/// One call's view of the API: lazily connected, NADs memoized.
pub struct Kube<'a> {
    connector: &'a dyn KubeConnect,
    sleeper: &'a dyn Sleeper,
    conf: &'a PlexusConf,
    api: OnceCell<Box<dyn PodApi + 'a>>,
    nads: RefCell<HashMap<(String, String), Result<NetworkAttachmentDefinition, ApiError>>>,
}

impl<'a> Kube<'a> {
    pub fn new(
        connector: &'a dyn KubeConnect,
        sleeper: &'a dyn Sleeper,
        conf: &'a PlexusConf,
    ) -> Self {
        Self {
            connector,
            sleeper,
            conf,
            api: OnceCell::new(),
            nads: RefCell::new(HashMap::new()),
        }
    }

    fn api(&self) -> Result<&(dyn PodApi + 'a), PlexusError> {
        if let Some(a) = self.api.get() {
            return Ok(a.as_ref());
        }
        let a = self.connector.connect(self.conf)?;
        Ok(self.api.get_or_init(|| a).as_ref())
    }

    /// GET the pod.
    pub fn get_pod(&self, namespace: &str, name: &str) -> Result<Pod, PlexusError> {
        let api = self.api()?;
        with_retry(self.conf.api_retry_budget, self.sleeper, || {
            api.get_pod(namespace, name)
        })
        .map_err(|e| api_err(format!("error getting pod {namespace}/{name}"), &e))
    }

    /// GET a NAD; `Ok(None)` when it does not exist. Each distinct NAD is
    /// requested once per call.
    pub fn get_nad(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<NetworkAttachmentDefinition>, PlexusError> {
        let key = (namespace.to_string(), name.to_string());
        let cached = self.nads.borrow().get(&key).cloned();
        let res = match cached {
            Some(r) => r,
            None => {
                let api = self.api()?;
                let r = with_retry(self.conf.api_retry_budget, self.sleeper, || {
                    api.get_nad(namespace, name)
                });
                self.nads.borrow_mut().insert(key, r.clone());
                r
            }
        };
        match res {
            Ok(n) => Ok(Some(n)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(api_err(
                format!("error getting NetworkAttachmentDefinition {namespace}/{name}"),
                &e,
            )),
        }
    }

    /// GETs the NADs not fetched yet side by side, so a pod with several
    /// networks waits one round trip, not one per NAD. One
    /// attempt each: a retryable failure is left for [`Self::get_nad`] to
    /// retry in order. A single NAD is left to [`Self::get_nad`] too.
    pub fn prefetch_nads(&self, keys: &[(String, String)]) -> Result<(), PlexusError> {
        let mut missing: Vec<&(String, String)> = Vec::new();
        {
            let cache = self.nads.borrow();
            for k in keys {
                if !cache.contains_key(k) && !missing.contains(&k) {
                    missing.push(k);
                }
            }
        }
        if missing.len() < 2 {
            return Ok(());
        }
        let api = self.api()?;
        let results = side_by_side(&missing, |(ns, name)| api.get_nad(ns, name));
        let mut cache = self.nads.borrow_mut();
        for (key, r) in missing.iter().zip(results) {
            if !r.as_ref().is_err_and(ApiError::is_retryable) {
                cache.insert((*key).clone(), r);
            }
        }
        Ok(())
    }

    /// PATCH the network-status annotation (UID precondition). `Ok(false)`
    /// when the pod is gone, which Multus tolerates too.
    pub fn patch_network_status(
        &self,
        namespace: &str,
        name: &str,
        uid: &str,
        status_json: &str,
    ) -> Result<bool, PlexusError> {
        let api = self.api()?;
        match with_retry(self.conf.api_retry_budget, self.sleeper, || {
            api.patch_network_status(namespace, name, uid, status_json)
        }) {
            Ok(()) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(api_err(
                format!("error setting network-status on pod {namespace}/{name}"),
                &e,
            )),
        }
    }

    /// The writes at the end of ADD: the network-status PATCH (as
    /// [`Self::patch_network_status`]) and, at the same time on another
    /// thread, the events (best effort, one attempt each, failures logged).
    /// Multus too posts `AddedInterface` before the status update, so a
    /// failed PATCH (ADD rolls back) may leave events behind.
    pub fn publish(
        &self,
        pod: &PodRef,
        status_json: &str,
        events: &[Event],
    ) -> Result<bool, PlexusError> {
        let api = self.api()?;
        std::thread::scope(|s| {
            let posted = (!events.is_empty()).then(|| s.spawn(|| api.create_events(pod, events)));
            let patched =
                self.patch_network_status(&pod.namespace, &pod.name, &pod.uid, status_json);
            let results = posted
                .map(|h| h.join().unwrap_or_default())
                .unwrap_or_default();
            for e in results.into_iter().filter_map(Result::err) {
                let e = api_err(
                    format!("error posting event for pod {}/{}", pod.namespace, pod.name),
                    &e,
                );
                tracing::warn!(error = %e, "cannot post AddedInterface event");
            }
            patched
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    struct CountingSleeper(Cell<u32>);
    impl Sleeper for CountingSleeper {
        fn sleep(&self, _d: Duration) {
            self.0.set(self.0.get() + 1);
        }
    }

    fn busy() -> ApiError {
        ApiError::Retryable {
            code: 503,
            reason: "ServiceUnavailable".into(),
            message: "busy".into(),
            retry_after: None,
        }
    }

    #[test]
    fn retries_within_budget_only() {
        let s = CountingSleeper(Cell::new(0));
        let mut n = 0;
        let r: Result<(), _> = with_retry(Duration::from_millis(350), &s, || {
            n += 1;
            Err(busy())
        });
        assert!(r.is_err());
        // waits 100 + 200 ms fit in 350 ms; the next 400 ms does not.
        assert_eq!((n, s.0.get()), (3, 2));
    }

    #[test]
    fn no_budget_means_one_attempt_and_non_retryable_stops() {
        let s = CountingSleeper(Cell::new(0));
        let mut n = 0;
        let _ = with_retry::<()>(Duration::ZERO, &s, || {
            n += 1;
            Err(busy())
        });
        assert_eq!(n, 1);
        let mut m = 0;
        let _ = with_retry::<()>(Duration::from_secs(10), &s, || {
            m += 1;
            Err(ApiError::Forbidden {
                message: "no".into(),
            })
        });
        assert_eq!(m, 1);
        let mut k = 0;
        let ok = with_retry(Duration::from_secs(10), &s, || {
            k += 1;
            if k < 2 {
                Err(busy())
            } else {
                Ok(7)
            }
        });
        assert_eq!(ok, Ok(7));
    }
}
