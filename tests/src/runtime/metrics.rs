//! containerd's Prometheus metrics, served on the node netns' loopback
//! (`[metrics] address` in its config). The CRI plugin times each sandbox's
//! network setup (`sandbox_create_network`: the whole CNI ADD of the
//! conflist as containerd sees it, `loopback` included); the delta of its
//! `_sum` around one RunPodSandbox is that pod's figure.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use anyhow::{bail, Context, Result};

/// Where containerd serves its metrics inside the node netns.
pub const METRICS_ADDR: &str = "127.0.0.1:1338";

/// A histogram's running sum (seconds) and count.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Histogram {
    pub sum: f64,
    pub count: u64,
}

/// GET `/v1/metrics` from `addr`. Call from a thread inside the node netns.
pub fn scrape(addr: &str) -> Result<String> {
    let mut s = TcpStream::connect(addr).with_context(|| format!("connect {addr}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(b"GET /v1/metrics HTTP/1.0\r\nHost: containerd\r\n\r\n")?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    match text.split_once("\r\n\r\n") {
        Some((head, body)) if head.starts_with("HTTP/1.") && head.contains(" 200 ") => {
            Ok(body.to_owned())
        }
        _ => bail!("metrics answer is not a 200: {:.200}", text),
    }
}

/// The histogram whose metric name contains `name` (label-less series), from
/// Prometheus text format.
pub fn histogram(text: &str, name: &str) -> Result<Histogram> {
    let value = |suffix: &str| -> Result<f64> {
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .find_map(|l| {
                let (metric, v) = l.rsplit_once(' ')?;
                (metric.contains(name) && metric.ends_with(suffix))
                    .then(|| v.trim().parse::<f64>().ok())
                    .flatten()
            })
            .with_context(|| format!("no {name}…{suffix} in containerd's metrics"))
    };
    Ok(Histogram {
        sum: value("_sum")?,
        count: value("_count")? as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_sum_and_count() {
        let text = "# HELP x\n\
            containerd_cri_sandbox_create_network_seconds_bucket{le=\"0.005\"} 1\n\
            containerd_cri_sandbox_create_network_seconds_sum 0.75\n\
            containerd_cri_sandbox_create_network_seconds_count 3\n\
            containerd_cri_sandbox_delete_network_seconds_sum 9\n";
        let h = histogram(text, "sandbox_create_network").unwrap_or(Histogram {
            sum: -1.0,
            count: 0,
        });
        assert_eq!(
            h,
            Histogram {
                sum: 0.75,
                count: 3
            }
        );
        assert!(histogram(text, "no_such_metric").is_err());
    }
}
