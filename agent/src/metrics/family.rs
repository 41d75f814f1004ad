//! A labelled metric family that encodes its members in label order.
//!
//! `prometheus_client`'s own `Family` keeps members in a `HashMap`, so the
//! order of samples changes from process to process; a sorted family keeps
//! scrapes diffable and the golden test meaningful.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex};

use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder};
use prometheus_client::metrics::{MetricType, TypedMetric};

/// Metrics of one family keyed by their label set, encoded in order.
#[derive(Debug)]
pub struct SortedFamily<S, M> {
    members: Arc<Mutex<BTreeMap<S, M>>>,
}

impl<S, M> Clone for SortedFamily<S, M> {
    fn clone(&self) -> Self {
        Self {
            members: self.members.clone(),
        }
    }
}

impl<S, M> Default for SortedFamily<S, M> {
    fn default() -> Self {
        Self {
            members: Arc::new(Mutex::new(BTreeMap::new())),
        }
    }
}

impl<S: Ord + Clone, M: Default> SortedFamily<S, M> {
    /// Runs `f` on the member for `labels`, creating it first if needed.
    pub fn with<R>(&self, labels: &S, f: impl FnOnce(&M) -> R) {
        if let Ok(mut members) = self.members.lock() {
            // The metric's own return value (the previous count) is not needed.
            let _ = f(members.entry(labels.clone()).or_default());
        }
    }
}

impl<S, M> EncodeMetric for SortedFamily<S, M>
where
    S: EncodeLabelSet + Debug + Send + Sync,
    M: EncodeMetric + TypedMetric + Debug + Send + Sync,
{
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let members = self.members.lock().map_err(|_| std::fmt::Error)?;
        for (labels, metric) in members.iter() {
            metric.encode(encoder.encode_family(labels)?)?;
        }
        Ok(())
    }

    fn metric_type(&self) -> MetricType {
        M::TYPE
    }
}
