//! The raw HTTP/1.1 client the contract tests use, the paths they hit and a seeded server.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use plexus_testkit::kube::FakeApiServer;
use serde_json::{json, Value};

pub(crate) struct Reply {
    pub(crate) code: u16,
    pub(crate) headers: String,
    pub(crate) body: Value,
    pub(crate) text: String,
}

pub(crate) fn call(
    srv: &FakeApiServer,
    method: &str,
    path: &str,
    ctype: Option<&str>,
    body: &str,
    token: Option<&str>,
) -> Reply {
    let mut s = TcpStream::connect(srv.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nAccept: application/json\r\nContent-Length: {}\r\n", srv.addr(), body.len());
    if let Some(c) = ctype {
        req.push_str(&format!("Content-Type: {c}\r\n"));
    }
    if let Some(t) = token {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, text) = raw.split_once("\r\n\r\n").unwrap();
    let code = head[9..12].parse().unwrap();
    Reply {
        code,
        headers: head.to_ascii_lowercase(),
        body: serde_json::from_str(text).unwrap_or(Value::Null),
        text: text.to_owned(),
    }
}

pub(crate) fn get(srv: &FakeApiServer, path: &str) -> Reply {
    call(srv, "GET", path, None, "", None)
}

pub(crate) const POD: &str = "/api/v1/namespaces/default/pods/p1";
pub(crate) const NAD: &str =
    "/apis/k8s.cni.cncf.io/v1/namespaces/default/network-attachment-definitions/sriov-net";

pub(crate) fn seeded() -> FakeApiServer {
    let srv = FakeApiServer::start().unwrap();
    srv.put_pod(json!({"apiVersion":"v1","kind":"Pod","metadata":{"name":"p1","namespace":"default","annotations":{"a":"1"}},"spec":{"nodeName":"n1"}}))
        .unwrap();
    srv.put_nad("default", "sriov-net", r#"{"type":"host-device"}"#)
        .unwrap();
    srv
}
