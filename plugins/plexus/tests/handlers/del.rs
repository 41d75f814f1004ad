//! DEL: replay from the cache without the API, failures and retries, the golden v1 cache.

use plexus::handlers;
use plexus_cni::{CniError, Command};
use plexus_netattach::testing::Call as Api;
use plexus_netattach::ApiError;
use rstest::rstest;
use serde_json::json;

use crate::common::*;
use crate::support::{added_with_net_a, nad_conf, s};

#[rstest]
fn del_replays_the_cache_without_the_api(
    #[values("0.3.1", "0.4.0", "1.0.0", "1.1.0")] version: &str,
) {
    let (h, stdin, conf) = added_with_net_a(version);
    h.exec.clear();
    let api_calls = h.kube.api.calls().len();
    let connects = *h.kube.connects.lock().unwrap();
    // The pod and NAD are gone and the API is down: DEL must not care.
    h.kube.api.remove_pod(POD_NS, POD_NAME);
    h.kube.api.fail_next(
        Api::GetPod,
        ApiError::Transport("connection refused".into()),
    );

    handlers::del(&args(Command::Del, "c1", &stdin), &conf, &h.deps()).unwrap();

    assert_eq!(
        h.exec.summary(),
        vec![s("DEL", "hd-a", "net1"), s("DEL", "cluster-cni", "eth0")]
    );
    assert_eq!(h.kube.api.calls().len(), api_calls);
    assert_eq!(*h.kube.connects.lock().unwrap(), connects);
    let calls = h.exec.calls();
    // prevResult only for delegates at >= 0.4.0, as libcni.
    assert_eq!(
        calls[0].stdin.get("prevResult").is_some(),
        version != "0.3.1"
    );
    if version != "0.3.1" {
        assert_eq!(
            calls[0].stdin["prevResult"]["interfaces"][0]["name"],
            "net1"
        );
    }
    // The netns of the test does not exist: delegates get an empty one.
    assert_eq!(calls[0].netns, "");
    assert!(h.cache.entries().is_empty());
    // A second DEL (containerd's RemovePodSandbox) succeeds too.
    handlers::del(&args(Command::Del, "c1", &stdin), &conf, &h.deps()).unwrap();
}

#[rstest]
fn del_without_cache_deletes_the_config_cluster_network(
    #[values("0.3.1", "0.4.0", "1.0.0", "1.1.0")] version: &str,
) {
    let h = Harness::new();
    let (stdin, conf) = h.conf(version, json!({}));
    handlers::del(&args(Command::Del, "never-added", &stdin), &conf, &h.deps()).unwrap();
    assert_eq!(h.exec.summary(), vec![s("DEL", "cluster-cni", "eth0")]);
    assert!(h.kube.api.calls().is_empty());
    // A NAD-only cluster network cannot be resolved without the API: success.
    let h = Harness::new();
    let (stdin, conf) = h.conf(version, json!({"clusterNetwork": "kube-system/flannel"}));
    handlers::del(&args(Command::Del, "c9", &stdin), &conf, &h.deps()).unwrap();
    assert!(h.exec.calls().is_empty());
}

#[rstest]
fn del_goes_on_past_failures_and_reports_the_real_ones(
    #[values("0.3.1", "0.4.0", "1.0.0", "1.1.0")] version: &str,
) {
    let h = Harness::new();
    h.add_pod(Some("net-a,net-b"));
    h.add_nad("default", "net-a", nad_conf(version, "hd-a", json!({})));
    h.add_nad("default", "net-b", nad_conf(version, "hd-b", json!({})));
    let (stdin, conf) = h.conf(version, json!({}));
    handlers::add(&args(Command::Add, "c1", &stdin), &conf, &h.deps()).unwrap();
    h.exec.clear();
    // Code 3 is the spec's "nothing to clean up": not a failure.
    h.exec.fail(
        "hd-b",
        "DEL",
        CniError::new(
            CniError::UNKNOWN_CONTAINER,
            "failed to find \"net2\": Link not found",
            "",
        ),
    );
    h.exec.fail("hd-a", "DEL", CniError::generic("EBUSY"));
    let err = handlers::del(&args(Command::Del, "c1", &stdin), &conf, &h.deps()).unwrap_err();
    assert_eq!(h.exec.calls().len(), 3, "every delegate was tried");
    let msg = err.to_string();
    assert!(
        msg.contains("EBUSY") && !msg.contains("Link not found"),
        "{msg}"
    );
    // A real failure keeps the record the retried DEL needs (unlike Multus'
    // default, see docs/plexus.md).
    assert_eq!(h.cache.entries().len(), 1);
}

#[rstest]
fn del_judges_gone_by_code_not_by_message(
    #[values("0.3.1", "0.4.0", "1.0.0", "1.1.0")] version: &str,
) {
    let (h, stdin, conf) = added_with_net_a(version);
    // A third-party delegate's real failure that happens to say "not found"
    // (or an exec ENOENT) must not pass as "already gone".
    h.exec.fail(
        "hd-a",
        "DEL",
        CniError::generic("failed to release VF: no such file or directory (not found)"),
    );
    let err = handlers::del(&args(Command::Del, "c1", &stdin), &conf, &h.deps()).unwrap_err();
    assert!(err.to_string().contains("failed to release VF"), "{err}");
    assert_eq!(h.cache.entries().len(), 1, "the record DEL needs is kept");
    // A delegate binary gone missing (exec ENOENT) is no "already gone".
    h.exec.clear_failures();
    h.exec.remove("hd-a");
    assert!(handlers::del(&args(Command::Del, "c1", &stdin), &conf, &h.deps()).is_err());
    assert_eq!(h.cache.entries().len(), 1);
    // Once the delegate recovers, the retried DEL replays the same record.
    h.exec.clear();
    h.exec.clear_failures();
    handlers::del(&args(Command::Del, "c1", &stdin), &conf, &h.deps()).unwrap();
    assert_eq!(
        h.exec.summary(),
        vec![s("DEL", "hd-a", "net1"), s("DEL", "cluster-cni", "eth0")]
    );
    assert!(h.cache.entries().is_empty());
}

#[rstest]
fn retry_delete_on_error_keeps_the_entry(#[values("0.3.1", "1.1.0")] version: &str) {
    let h = Harness::new();
    h.add_pod(None);
    let (stdin, conf) = h.conf(version, json!({"retryDeleteOnError": true}));
    handlers::add(&args(Command::Add, "c1", &stdin), &conf, &h.deps()).unwrap();
    h.exec
        .fail("cluster-cni", "DEL", CniError::generic("EBUSY"));
    assert!(handlers::del(&args(Command::Del, "c1", &stdin), &conf, &h.deps()).is_err());
    assert_eq!(h.cache.entries().len(), 1);
}

/// Golden: a v1 cache file written by an earlier plexus must still replay.
#[test]
fn golden_cache_v1_replays_on_del() {
    let h = Harness::new();
    let cache_dir = h.dir.path().join("cache");
    std::fs::create_dir_all(&cache_dir).unwrap();
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/cache-v1.json"),
        cache_dir.join("3def4cdd07b3-eth0.json"),
    )
    .unwrap();
    let store = plexus::cache::FsCacheStore::new(&cache_dir);
    let deps = plexus::handlers::Deps {
        cache: &store,
        ..h.deps()
    };
    let (stdin, conf) = h.conf("1.0.0", json!({}));
    handlers::check(&args(Command::Check, "3def4cdd07b3", &stdin), &conf, &deps).unwrap();
    // 0.3.1 cluster network: no CHECK (libcni refuses it); net1 checked.
    assert_eq!(h.exec.summary(), vec![s("CHECK", "host-device", "net1")]);
    h.exec.clear();
    handlers::del(&args(Command::Del, "3def4cdd07b3", &stdin), &conf, &deps).unwrap();
    assert_eq!(
        h.exec.summary(),
        vec![
            s("DEL", "host-device", "net1"),
            s("DEL", "portmap", "eth0"),
            s("DEL", "flannel", "eth0")
        ]
    );
    let calls = h.exec.calls();
    assert_eq!(calls[0].stdin["pciBusID"], "0000:00:04.0");
    assert_eq!(
        calls[0].stdin["prevResult"]["ips"][0]["address"],
        "203.0.113.93/24"
    );
    assert!(
        calls[1].stdin.get("prevResult").is_none(),
        "0.3.1: no prevResult on DEL"
    );
    assert_eq!(
        calls[1].stdin["runtimeConfig"]["portMappings"][0]["hostPort"],
        8080
    );
    assert!(std::fs::read_dir(&cache_dir).unwrap().next().is_none());
}
