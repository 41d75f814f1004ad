//! The hwaddr selector, GC and STATUS.

use serde_json::{json, Value};

use crate::support::{ok_json, state_files, Rig, VF_MAC};

#[test]
fn hwaddr_selector_gc_and_status() {
    let rig = Rig::new();
    let conf = rig.conf("1.1.0", json!({"device": null, "hwaddr": VF_MAC}));
    let out = ok_json(&rig.add(&conf));
    assert_eq!(out["interfaces"][0]["mac"], VF_MAC);
    assert_eq!(state_files(rig.data.path()), ["c1-net1.json"]);
    let stdin = |valid: Value| {
        let mut c = conf.clone();
        c["cni.dev/valid-attachments"] = valid;
        serde_json::to_vec(&c).unwrap()
    };
    ok_json(&rig.run("STATUS", "", "", &stdin(json!([]))));
    // Still listed: kept.
    ok_json(&rig.run(
        "GC",
        "",
        "",
        &stdin(json!([{"containerID": "c1", "ifname": "net1"}])),
    ));
    assert!(rig.pod.link("net1").is_some());
    // No longer listed: device restored, record dropped.
    ok_json(&rig.run("GC", "", "", &stdin(json!([]))));
    rig.assert_restored();
    // DEL afterwards is still fine.
    ok_json(&rig.del(&conf));
}
