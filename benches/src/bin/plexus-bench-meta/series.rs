//! The measured series: each an ADD and a DEL call sequence, run
//! round-robin by [`run_cycles`] with wall time, CPU and the API requests
//! ([`ApiLog`]) of every call recorded.

use std::time::Duration;

use anyhow::{bail, Result};
use nix::sys::resource::{getrusage, UsageWho};
use plexus_testkit::kube::RecordedRequest;
use plexus_testkit::net::CniCall;

use crate::rig::Rig;

/// User+sys CPU of every child this process has reaped (each with the
/// descendants it reaped: a plugin's delegates count). The delta around
/// a spawn-and-wait is that call's CPU; only one call runs at a time.
fn children_cpu() -> Duration {
    let tv = |t: nix::sys::time::TimeVal| {
        Duration::new(
            u64::try_from(t.tv_sec()).unwrap_or(0),
            u32::try_from(t.tv_usec()).unwrap_or(0) * 1_000,
        )
    };
    getrusage(UsageWho::RUSAGE_CHILDREN)
        .map_or(Duration::ZERO, |u| tv(u.user_time()) + tv(u.system_time()))
}

/// One series: the calls of an ADD and of a DEL (run in order, DEL in the
/// given order too), timed as wall time of the whole sequence, and the
/// CPU (user+sys) of its processes and their reaped children.
pub struct Series {
    pub label: &'static str,
    add: Vec<CniCall>,
    del: Vec<CniCall>,
    pub add_times: Vec<Duration>,
    pub del_times: Vec<Duration>,
    pub cycle_times: Vec<Duration>,
    pub cycle_cpu: Vec<Duration>,
}

impl Series {
    pub fn new(label: &'static str, add: Vec<CniCall>, del: Vec<CniCall>) -> Self {
        Self {
            label,
            add,
            del,
            add_times: Vec::new(),
            del_times: Vec::new(),
            cycle_times: Vec::new(),
            cycle_cpu: Vec::new(),
        }
    }
}

/// The API requests of one ADD or DEL: `METHOD path` of each, events apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiLog {
    pub core: Vec<String>,
    pub events: usize,
    /// Connections the fake accepted during the call (TLS handshakes over
    /// https), with the protocol of the first.
    pub connections: usize,
    pub protocol: Option<String>,
}

impl ApiLog {
    fn of(requests: &[RecordedRequest]) -> Self {
        let is_event = |r: &RecordedRequest| r.path.ends_with("/events");
        Self {
            core: requests
                .iter()
                .filter(|r| !is_event(r))
                .map(|r| format!("{} {}", r.method, r.path))
                .collect(),
            events: requests.iter().filter(|r| is_event(r)).count(),
            connections: 0,
            protocol: None,
        }
    }

    /// The log of one call, given the fake's connection log before it.
    fn of_call(rig: &Rig, connections_before: usize) -> Self {
        let conns = rig.api.connections();
        let new = conns.get(connections_before..).unwrap_or_default();
        Self {
            connections: new.len(),
            protocol: new.first().map(|c| {
                c.alpn
                    .clone()
                    .unwrap_or_else(|| if c.tls { "tls" } else { "http" }.into())
            }),
            ..Self::of(&rig.api.requests())
        }
    }

    pub fn total(&self) -> usize {
        self.core.len() + self.events
    }
}

/// Runs `cycles` (+ warm-up) rounds; series rotate their order per round.
/// Returns the API log of every ADD and DEL of the series at `api_series`.
pub fn run_cycles(
    rig: &Rig,
    series: &mut [Series],
    warmup: usize,
    cycles: usize,
    api_series: &[usize],
) -> Result<(Vec<ApiLog>, Vec<ApiLog>)> {
    let (mut add_logs, mut del_logs) = (Vec::new(), Vec::new());
    let n = series.len();
    for round in 0..warmup + cycles {
        for k in 0..n {
            let i = (round + k) % n;
            let s = &mut series[i];
            rig.api.clear_requests();
            let conns = rig.api.connections().len();
            let cpu = children_cpu();
            let mut add = Duration::ZERO;
            for call in &s.add {
                add += rig.run(call)?.elapsed;
            }
            let add_api = ApiLog::of_call(rig, conns);
            rig.api.clear_requests();
            let conns = rig.api.connections().len();
            let mut del = Duration::ZERO;
            for call in &s.del {
                del += rig.run(call)?.elapsed;
            }
            let cpu = children_cpu().saturating_sub(cpu);
            let del_api = ApiLog::of_call(rig, conns);
            if !api_series.contains(&i) && (add_api.total() > 0 || del_api.total() > 0) {
                bail!("{} made API requests: {add_api:?} {del_api:?}", s.label);
            }
            if round >= warmup {
                s.add_times.push(add);
                s.del_times.push(del);
                // The plugins' own time: spawn to exit of each call, without
                // the bench's bookkeeping between calls.
                s.cycle_times.push(add + del);
                s.cycle_cpu.push(cpu);
                if api_series.first() == Some(&i) {
                    add_logs.push(add_api);
                    del_logs.push(del_api);
                }
            }
        }
    }
    Ok((add_logs, del_logs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_log_sets_events_apart() {
        let req = |method: &str, path: &str| RecordedRequest {
            method: method.into(),
            path: path.into(),
            query: None,
            content_type: None,
            body: String::new(),
            authorization: None,
        };
        let log = ApiLog::of(&[
            req("GET", "/api/v1/namespaces/default/pods/p"),
            req("POST", "/api/v1/namespaces/default/events"),
            req("PATCH", "/api/v1/namespaces/default/pods/p/status"),
        ]);
        assert_eq!(
            log.core,
            vec![
                "GET /api/v1/namespaces/default/pods/p",
                "PATCH /api/v1/namespaces/default/pods/p/status"
            ]
        );
        assert_eq!((log.events, log.total()), (1, 3));
    }
}
