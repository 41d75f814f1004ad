//! Root-only: enters fresh namespaces. Each namespace is created by
//! `unshare` on a scratch thread and lives only as long as its fd, so nothing
//! is left behind whatever happens.

#![allow(clippy::unwrap_used)]

use std::panic::{catch_unwind, AssertUnwindSafe};

use nix::sched::{unshare, CloneFlags};
use plexus_netns::{run_in, NetNs};

fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test needs root (network namespaces); run it as root"
    );
}

/// A new, empty network namespace held only by its fd.
fn fresh_netns() -> NetNs {
    std::thread::spawn(|| {
        unshare(CloneFlags::CLONE_NEWNET).unwrap();
        NetNs::current().unwrap()
    })
    .join()
    .unwrap()
}

fn link_names() -> Vec<String> {
    std::fs::read_dir("/sys/class/net")
        .map(|d| {
            d.map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn run_in_enters_and_restores() {
    require_root();
    let ns = fresh_netns();
    let home = NetNs::current().unwrap();
    let inside = run_in(&ns, || NetNs::current().unwrap().same_as(&ns).unwrap()).unwrap();
    assert!(inside);
    assert!(NetNs::current().unwrap().same_as(&home).unwrap());
    // /proc/thread-self/net reflects the thread's namespace: only lo inside.
    let devs = run_in(&ns, || {
        std::fs::read_to_string("/proc/thread-self/net/dev").unwrap()
    })
    .unwrap();
    assert_eq!(devs.lines().count(), 3, "{devs}");
    assert!(!link_names().is_empty());
}

#[test]
fn run_in_restores_after_panic() {
    require_root();
    let ns = fresh_netns();
    let home = NetNs::current().unwrap();
    let r = catch_unwind(AssertUnwindSafe(|| {
        run_in(&ns, || panic!("boom inside the namespace")).unwrap();
    }));
    assert!(r.is_err());
    assert!(NetNs::current().unwrap().same_as(&home).unwrap());
}

#[test]
fn proc_pid_path_is_a_netns_and_proc_file_is_not() {
    require_root();
    assert!(plexus_netns::is_netns("/proc/self/ns/net"));
    assert!(!plexus_netns::is_netns("/proc/self/ns/uts"));
    assert!(!plexus_netns::is_netns("/proc/version"));
}
