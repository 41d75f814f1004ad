//! Attach, status, events and shrink; 429 storms, lost responses and restarts.

use std::collections::BTreeMap;
use std::time::Duration;

use plexus_oci::model::{AttachVnicDetails, AttachmentState, CreateVnicDetails, NetworkType};
use plexus_oci::Compute;
use plexus_operator::crd::NodePhase;

use crate::support::{all_phase, instance, Harness, SUBNET};

#[test]
fn attaches_reports_and_shrinks_without_touching_foreign_vnics() {
    let h = Harness::new(&[("a", NetworkType::Vfio), ("b", NetworkType::Vfio)]);
    h.pool(2, false);
    let op = h.operator(Duration::from_secs(30));
    h.run_until(&op, "attached", |s| all_phase(s, 2, NodePhase::Configuring));
    let st = h.node_status("node-a");
    assert_eq!((st.wanted, st.attached, st.allocatable), (2, 2, 0));
    assert_eq!(st.network_type.as_deref(), Some("VFIO"));
    assert_eq!(st.instance_id, instance("a"));
    for n in ["a", "b"] {
        let s = h.secondaries(n);
        assert_eq!(s.len(), 2, "{s:#?}");
        assert!(s
            .iter()
            .all(|a| a.lifecycle_state == AttachmentState::Attached));
    }
    // IMDS on node a now lists primary + the two VNICs, MACs upper-case.
    let imds = h.oci.imds_vnics(&instance("a"));
    assert_eq!(imds.as_array().unwrap().len(), 3);
    assert_eq!(imds[1]["macAddr"], "02:00:17:00:00:00");
    let reasons: Vec<String> = h.events().into_iter().map(|e| e.1).collect();
    assert_eq!(
        reasons.iter().filter(|r| *r == "AttachingVnic").count(),
        4,
        "{reasons:?}"
    );
    assert_eq!(
        reasons.iter().filter(|r| *r == "VnicAttached").count(),
        4,
        "{reasons:?}"
    );

    // The agent configured them: allocatable closes the loop.
    h.advertise("node-a", 2);
    h.advertise("node-b", 2);
    h.run_until(&op, "ready", |s| {
        all_phase(s, 2, NodePhase::Ready) && s.ready_nodes == 2
    });

    // Someone attaches a VNIC by hand on node a: never ours to detach.
    let foreign = AttachVnicDetails {
        create_vnic_details: CreateVnicDetails {
            subnet_id: SUBNET.into(),
            display_name: Some("plexus-pods-1".into()),
            nsg_ids: vec![],
            freeform_tags: BTreeMap::new(),
            assign_public_ip: false,
            skip_source_dest_check: None,
        },
        instance_id: instance("a"),
        display_name: Some("by-hand".into()),
    };
    let hand = h.client.attach_vnic(&foreign, "by-hand").unwrap();

    // Shrink to one per node: slot 1 goes, the foreign and primary stay.
    h.pool(1, false);
    h.advertise("node-a", 1);
    h.advertise("node-b", 1);
    h.run_until(&op, "shrunk", |s| {
        all_phase(s, 2, NodePhase::Ready) && s.nodes.iter().all(|n| n.wanted == 1)
    });
    std::thread::sleep(Duration::from_millis(200));
    let live: Vec<_> = h
        .secondaries("a")
        .into_iter()
        .filter(|a| a.lifecycle_state != AttachmentState::Detached)
        .collect();
    assert_eq!(live.len(), 2, "slot 0 and the foreign VNIC: {live:#?}");
    assert!(live.iter().any(|a| a.id == hand.id));
    assert!(h
        .oci
        .attachments(&instance("a"))
        .iter()
        .any(|a| a.display_name.as_deref() == Some("primary")
            && a.lifecycle_state == AttachmentState::Attached));
    assert_eq!(h.status().observed_generation, 2);
    assert!(h.events().iter().any(|e| e.1 == "DetachingVnic"));
}

#[test]
fn storms_lost_responses_and_restarts_never_duplicate() {
    let h = Harness::new(&[("a", NetworkType::Vfio)]);
    h.pool(1, false);
    // A lost response: OCI attached, the client saw a 504 and retried with
    // the same token, getting the same attachment back.
    h.oci.inject_lost_response("POST", "/vnicAttachments", 1);
    let op = h.operator(Duration::from_secs(30));
    op.reconcile_all().unwrap();
    assert_eq!(
        h.secondaries("a").len(),
        1,
        "the lost-response attach exists once"
    );
    let first: Vec<u16> = h
        .oci
        .requests()
        .iter()
        .filter(|r| r.method == "POST")
        .map(|r| r.status)
        .collect();
    assert_eq!(first, [504, 200], "replayed by its retry token");

    // Grow to two, into a 429 storm longer than one call's retries.
    h.pool(2, false);
    h.oci.inject("POST", "/vnicAttachments", 429, 6);
    let _ = op.reconcile_all();
    let st = h.node_status("node-a");
    assert_eq!(st.phase, NodePhase::Failed);
    assert_eq!(st.error.as_ref().unwrap().code, "TooManyRequests");
    assert!(h
        .events()
        .iter()
        .any(|e| e.0 == "Warning" && e.1 == "AttachFailed" && e.2.contains("TooManyRequests")));
    assert_eq!(h.secondaries("a").len(), 1);

    // Attach goes through but the pool status write fails (the operator
    // "dies" between attach and status); both slots stay ATTACHING.
    h.oci.set_stuck_attaching(true);
    h.kube
        .inject("PATCH", "/apis/plexus.io/v1alpha1/vnicpools", 500, 1);
    assert!(op.reconcile_all().is_err());
    drop(op);
    assert_eq!(h.secondaries("a").len(), 2);
    // A fresh replica with no memory sees them ATTACHING and waits.
    let op2 = h.operator(Duration::from_millis(400));
    for _ in 0..3 {
        op2.reconcile_all().unwrap();
    }
    assert_eq!(h.secondaries("a").len(), 2, "no duplicate after restart");
    let st = h.node_status("node-a");
    assert_eq!((st.attached, st.attaching), (0, 2));
    // Stuck past the timeout: reported with a code, still no new attach.
    std::thread::sleep(Duration::from_millis(450));
    op2.reconcile_all().unwrap();
    let st = h.node_status("node-a");
    assert_eq!(
        (st.phase, st.error.as_ref().unwrap().code.as_str()),
        (NodePhase::Failed, "AttachTimeout")
    );
    h.oci.set_stuck_attaching(false);
    h.advertise("node-a", 2);
    h.run_until(&op2, "ready", |s| all_phase(s, 1, NodePhase::Ready));
    assert_eq!(h.secondaries("a").len(), 2);
    let log = h.oci.requests();
    let posts: Vec<_> = log.iter().filter(|r| r.method == "POST").collect();
    let ok = posts.iter().filter(|r| r.status == 200).count();
    let lost = posts.iter().filter(|r| r.status == 504).count();
    let tokens: std::collections::BTreeSet<_> =
        posts.iter().map(|r| r.retry_token.clone()).collect();
    // Slot 0: acted on but answered 504, then replayed by its token (200);
    // slot 1: 429s, then 200 once. Two tokens, two VNICs.
    assert_eq!((ok, lost, tokens.len()), (2, 1, 2), "{posts:#?}");
}
