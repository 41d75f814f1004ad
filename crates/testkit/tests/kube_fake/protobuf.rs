//! Protobuf bodies as client-go sends them: a status update and an event.

use std::io::{Read, Write};
use std::net::TcpStream;

use plexus_testkit::kube::FakeApiServer;
use serde_json::Value;

use crate::support::{get, seeded, Reply, NAD, POD};

/// Minimal protobuf encoder for the Kubernetes envelope, as client-go writes it.
mod proto {
    fn varint(mut v: u64, out: &mut Vec<u8>) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    pub fn bytes(no: u64, b: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        varint(no << 3 | 2, &mut out);
        varint(b.len() as u64, &mut out);
        out.extend_from_slice(b);
        out
    }

    pub fn str(no: u64, s: &str) -> Vec<u8> {
        bytes(no, s.as_bytes())
    }

    pub fn int(no: u64, v: u64) -> Vec<u8> {
        let mut out = Vec::new();
        varint(no << 3, &mut out);
        varint(v, &mut out);
        out
    }

    pub fn msg(parts: &[Vec<u8>]) -> Vec<u8> {
        parts.concat()
    }

    pub fn map_entry(no: u64, k: &str, v: &str) -> Vec<u8> {
        bytes(no, &msg(&[str(1, k), str(2, v)]))
    }

    /// `k8s\0` + runtime.Unknown{typeMeta, raw}.
    pub fn envelope(api_version: &str, kind: &str, raw: &[u8]) -> Vec<u8> {
        let type_meta = msg(&[str(1, api_version), str(2, kind)]);
        let mut out = b"k8s\0".to_vec();
        out.extend(msg(&[bytes(1, &type_meta), bytes(2, raw)]));
        out
    }
}

fn call_bytes(srv: &FakeApiServer, method: &str, path: &str, ctype: &str, body: &[u8]) -> Reply {
    let mut s = TcpStream::connect(srv.addr()).unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAccept: application/vnd.kubernetes.protobuf,application/json\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, text) = raw.split_once("\r\n\r\n").unwrap();
    Reply {
        code: head[9..12].parse().unwrap(),
        headers: head.to_ascii_lowercase(),
        body: serde_json::from_str(text).unwrap_or(Value::Null),
        text: text.to_owned(),
    }
}

#[test]
fn protobuf_status_update_and_event_like_client_go() {
    use proto::*;
    let srv = seeded();
    let current = get(&srv, POD).body;
    let uid = current["metadata"]["uid"].as_str().unwrap().to_owned();
    let rv = current["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_owned();
    let meta = |uid: &str| {
        msg(&[
            str(1, "p1"),
            str(3, "default"),
            str(5, uid),
            str(6, &rv),
            map_entry(12, "a", "1"),
            map_entry(12, "k8s.v1.cni.cncf.io/network-status", "[]"),
        ])
    };
    let pod = |uid: &str| envelope("v1", "Pod", &bytes(1, &meta(uid)));
    let status = format!("{POD}/status");
    let pb = "application/vnd.kubernetes.protobuf";

    let r = call_bytes(
        &srv,
        "PUT",
        &status,
        pb,
        &pod("99999999-9999-4999-8999-999999999999"),
    );
    assert_eq!(r.code, 409, "{}", r.text);
    assert!(r.body["message"]
        .as_str()
        .unwrap()
        .contains("Precondition failed: UID in precondition"));

    let r = call_bytes(&srv, "PUT", &status, pb, &pod(&uid));
    assert_eq!(r.code, 200, "{}", r.text);
    let stored = srv.get_object(POD).unwrap();
    assert_eq!(
        stored["metadata"]["annotations"]["k8s.v1.cni.cncf.io/network-status"],
        "[]"
    );
    assert_eq!(stored["spec"]["nodeName"], "n1", "spec kept");

    let involved = msg(&[
        str(1, "Pod"),
        str(2, "default"),
        str(3, "p1"),
        str(4, &uid),
        str(5, "v1"),
    ]);
    let event = msg(&[
        bytes(1, &msg(&[str(1, "p1.187a"), str(3, "default")])),
        bytes(2, &involved),
        str(3, "AddedInterface"),
        str(4, "Add net1 [198.51.100.5/24] from default/sriov-net"),
        bytes(5, &str(1, "multus")),
        bytes(6, &int(1, 1_764_153_600)),
        bytes(7, &int(1, 1_764_153_600)),
        int(8, 1),
        str(9, "Normal"),
    ]);
    let r = call_bytes(
        &srv,
        "POST",
        "/api/v1/namespaces/default/events",
        pb,
        &envelope("v1", "Event", &event),
    );
    assert_eq!(r.code, 201, "{}", r.text);
    let stored = srv
        .get_object("/api/v1/namespaces/default/events/p1.187a")
        .unwrap();
    assert_eq!(stored["involvedObject"]["uid"], uid.as_str());
    assert_eq!(
        stored["message"],
        "Add net1 [198.51.100.5/24] from default/sriov-net"
    );
    assert_eq!(stored["source"]["component"], "multus");
    assert_eq!(stored["firstTimestamp"], "2025-11-26T10:40:00Z");
    assert_eq!(stored["count"], 1);
    assert_eq!(stored["type"], "Normal");

    let garbage = call_bytes(&srv, "PUT", &status, pb, b"not protobuf");
    assert_eq!(garbage.code, 400);
    let crd = call_bytes(
        &srv,
        "PUT",
        NAD,
        pb,
        &envelope("k8s.cni.cncf.io/v1", "NetworkAttachmentDefinition", &[]),
    );
    assert_eq!(crd.code, 415, "CRDs have no protobuf");
}
