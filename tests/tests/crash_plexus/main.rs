//! Crash consistency of the meta plugin: `plexus` (or the `host-device` it
//! delegates to) SIGKILLed at every marker syscall of ADD and DEL, and the
//! Kubernetes API failing (5xx, answers slower than the plugin's timeout).
//! Then what the runtime does next (DEL; a retried ADD; DEL again), and the
//! shared checker must find the node consistent: the VF home as it was or in
//! exactly one live pod, its address in one place, no stray plexus cache
//! entry, host-device record, temp file or held lock.
//!
//! plexus runs in a node netns (through a wrapper, under strace when it is
//! the victim), the fake API listens there, the cluster network is `static`
//! (it only computes eth0's result), the NAD is host-device + static. The
//! host-device in plexus' `binDir` is a wrapper too, so it can be the victim.
//!
//! Root only (panics otherwise).
// Test-only crate: fixture helpers fail the test by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod fixture;

use std::time::Duration;

use anyhow::{ensure, Result};
use plexus_e2e::crash::{Mode, TestMount};
use plexus_netns::NetNs;
use serde_json::json;

use fixture::{outcome, Fixture, Victim, ADDR, POD};

#[test]
fn crash_plexus_killed_during_add_then_del_and_retry() -> Result<()> {
    let f = Fixture::new()?;
    let n = f.sweep_add(Victim::Plexus)?;
    eprintln!("plexus ADD: {n} kill points consistent");
    Ok(())
}

#[test]
fn crash_plexus_killed_during_add_then_add_again() -> Result<()> {
    let f = Fixture::new()?;
    let n = f.sweep_add_again(Victim::Plexus)?;
    eprintln!("plexus ADD then ADD again: {n} kill points consistent");
    Ok(())
}

#[test]
fn crash_plexus_killed_during_del_then_del_again() -> Result<()> {
    let f = Fixture::new()?;
    let n = f.sweep_del(Victim::Plexus)?;
    eprintln!("plexus DEL: {n} kill points consistent");
    Ok(())
}

#[test]
fn crash_plexus_host_device_killed_under_plexus() -> Result<()> {
    let f = Fixture::new()?;
    let add = f.sweep_add(Victim::HostDevice)?;
    let del = f.sweep_del(Victim::HostDevice)?;
    eprintln!("host-device under plexus: ADD {add}, DEL {del} kill points consistent");
    Ok(())
}

/// The API server failing: 5xx on the pod GET and on the status PATCH,
/// answers slower than `apiTimeoutSeconds`. Whatever ADD decides, the node
/// is consistent, and DEL (needing no API) cleans it.
#[test]
fn crash_plexus_api_faults() -> Result<()> {
    let f = Fixture::new()?;
    let pod = format!("/api/v1/namespaces/default/pods/{POD}");
    f.api.inject("GET", &pod, 503, 100);
    f.under_fault("get503", "GET pod 503")?;
    f.api.inject("PATCH", &pod, 500, 100);
    f.under_fault("patch500", "PATCH status 500")?;
    f.api
        .inject_latency("GET", &pod, Duration::from_secs(4), 100);
    f.under_fault("getslow", "GET pod slower than the timeout")?;
    f.api
        .inject_latency("PATCH", &pod, Duration::from_secs(4), 100);
    f.under_fault("patchslow", "PATCH slower than the timeout")?;
    Ok(())
}

/// Two runtimes (or a runtime and its retry) racing ADD and DEL for one
/// container: whatever order they land in, the node is consistent while the
/// container may still exist, and the DEL kubelet sends last cleans it.
#[test]
fn crash_plexus_racing_add_and_del_one_container() -> Result<()> {
    let f = Fixture::new()?;
    // Writes the wrapper once, before two callers share it.
    f.ok("DEL", "warmup")?;
    for i in 0..12 {
        let cid = format!("race{i}");
        f.pod(&cid);
        let (add, del) = std::thread::scope(|s| {
            let add = s.spawn(|| f.call("ADD", &cid, &Mode::Plain));
            if i % 2 == 1 {
                std::thread::sleep(Duration::from_millis(5 * i));
            }
            let del = s.spawn(|| f.call("DEL", &cid, &Mode::Plain));
            (add.join().unwrap(), del.join().unwrap())
        });
        ensure!(
            del.status.success(),
            "racing DEL failed: {}{}",
            del.stdout,
            del.stderr
        );
        let when = format!("race {i} (ADD ok: {})", add.status.success());
        f.check(&[&cid], &when)?;
        f.ok("DEL", &cid)?;
        f.check(&[], &format!("{when}, final DEL"))?;
    }
    Ok(())
}

/// plexus' cache dir read-only, then full (a 64 KiB tmpfs filled up): ADD
/// fails with a CNI error and undoes the delegates, or succeeds; DEL always
/// succeeds; the node ends consistent.
#[test]
fn crash_plexus_cache_dir_read_only_or_full() -> Result<()> {
    let f = Fixture::new()?;
    let cache = f.tmp.path().join("cache");
    std::fs::create_dir_all(&cache)?;
    {
        let _ro = TestMount::bind_read_only(&cache)?;
        f.under_fault("ro", "read-only cache dir")?;
    }
    let _full = TestMount::tiny_tmpfs(&cache)?;
    let _ = std::fs::write(cache.join("filler"), vec![b' '; 128 * 1024]);
    let out = f.call("ADD", "full", &Mode::Plain);
    let _ = std::fs::remove_file(cache.join("filler"));
    if out.status.success() {
        f.check(&["full"], "full cache dir: ADD succeeded")?;
    } else {
        ensure!(
            out.json["code"].as_u64().is_some(),
            "full: no CNI error: {}",
            out.stdout
        );
        f.check(&[], "full cache dir: ADD failed")?;
    }
    f.ok("DEL", "full")?;
    f.check(&[], "full cache dir: after DEL")
}

/// The NAD names a device-plugin resource and the kubelet's PodResources
/// socket is down (missing, or a stale socket file nobody serves): ADD
/// fails with a CNI error before touching anything, DEL succeeds.
#[test]
fn crash_plexus_pod_resources_down() -> Result<()> {
    let f = Fixture::new()?;
    let nad = json!({
        "apiVersion": "k8s.cni.cncf.io/v1", "kind": "NetworkAttachmentDefinition",
        "metadata": {"name": "vf", "namespace": "default",
            "annotations": {"k8s.v1.cni.cncf.io/resourceName": "oracle.com/vf"}},
        "spec": {"config": json!({
            "cniVersion": "1.0.0", "type": "host-device", "device": f.vf_name,
            "dataDir": f.tmp.path().join("host-device"),
            "ipam": {"type": "static", "addresses": [{"address": format!("{ADDR}/24")}]},
        }).to_string()},
    });
    f.api.put_object(nad).map_err(anyhow::Error::msg)?;
    let stale = f.tmp.path().join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale)?);
    for (name, socket) in [
        ("missing", f.tmp.path().join("none.sock")),
        ("stale", stale),
    ] {
        {
            let mut extra = f.extra.lock().unwrap();
            extra.insert("podResourcesSocket".into(), json!(socket));
            extra.insert("podResourcesTimeoutSeconds".into(), json!(1));
        }
        let out = f.call("ADD", name, &Mode::Plain);
        ensure!(
            !out.status.success(),
            "ADD {name} succeeded without PodResources"
        );
        ensure!(
            out.json["code"].as_u64().is_some(),
            "{name}: no CNI error: {}",
            out.stdout
        );
        f.check(&[], &format!("PodResources {name}: ADD failed"))?;
        f.ok("DEL", name)?;
        f.check(&[], &format!("PodResources {name}: after DEL"))?;
    }
    Ok(())
}

/// An API server that sends a response's headers and the start of its body,
/// then hangs (a proxy or server stalled mid-response): plexus gives up at
/// `apiTimeoutSeconds` with a retriable CNI error, nothing changed; DEL
/// needs no API.
#[test]
fn crash_plexus_api_hangs_mid_body() -> Result<()> {
    use std::io::{Read, Write};
    let f = Fixture::new()?;
    let node = NetNs::open(f.node.path())?;
    let listener = plexus_netns::run_in(&node, || std::net::TcpListener::bind("127.0.0.1:0"))??;
    let url = format!("http://{}", listener.local_addr()?);
    listener.set_nonblocking(true)?;
    let stop = std::sync::atomic::AtomicBool::new(false);
    let kubeconfig = f.tmp.path().join("kubeconfig");
    let text = std::fs::read_to_string(&kubeconfig)?.replace(&f.api.url(), &url);
    std::fs::write(&kubeconfig, text)?;
    let result = std::thread::scope(|s| {
        s.spawn(|| {
            let mut held = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut conn, _)) => {
                        let mut buf = [0u8; 4096];
                        let _ = conn.read(&mut buf);
                        let _ = conn.write_all(
                            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
                              Content-Length: 4096\r\n\r\n{\"kind\":\"Pod\",\"metadata\":{",
                        );
                        held.push(conn);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        let r = (|| {
            let out = f.call("ADD", "hang", &Mode::Plain);
            eprintln!(
                "API hangs mid-body: ADD -> {} after {:?}",
                outcome(&out),
                out.elapsed
            );
            ensure!(!out.status.success(), "ADD succeeded against a hanging API");
            ensure!(
                out.json["code"] == 11,
                "not a retriable error: {}",
                out.stdout
            );
            ensure!(
                out.elapsed < Duration::from_secs(15),
                "ADD hung {:?}",
                out.elapsed
            );
            f.check(&[], "API hangs mid-body: ADD failed")?;
            f.ok("DEL", "hang")?;
            f.check(&[], "API hangs mid-body: after DEL")
        })();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        r
    });
    result
}
