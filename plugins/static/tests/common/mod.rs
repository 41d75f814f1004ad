//! Shared helpers: run the `static` binary with an explicit env and stdin.

#![allow(dead_code, clippy::expect_used, clippy::unwrap_used)]

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::{json, Value};

/// Exit code, stdout and stderr of one run.
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    /// Stdout parsed as exactly one JSON document (fails on anything extra).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}): {:?}", self.stdout))
    }
}

pub fn our_static() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_static"))
}

/// Env for `command` with every variable the skeleton requires.
pub fn env_for(command: &str) -> Vec<(String, String)> {
    [
        ("CNI_COMMAND", command),
        ("CNI_CONTAINERID", "px-contract-1"),
        ("CNI_NETNS", "/var/run/netns/px-none"),
        ("CNI_IFNAME", "net1"),
        ("CNI_PATH", "/nonexistent-px"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
    .collect()
}

pub fn with(mut env: Vec<(String, String)>, key: &str, value: &str) -> Vec<(String, String)> {
    env.retain(|(k, _)| k != key);
    env.push((key.to_string(), value.to_string()));
    env
}

pub fn without(mut env: Vec<(String, String)>, key: &str) -> Vec<(String, String)> {
    env.retain(|(k, _)| k != key);
    env
}

/// Runs `bin` with only `env` set and `stdin` piped in.
pub fn run(bin: &Path, env: &[(String, String)], stdin: &[u8]) -> Out {
    let mut child = Command::new(bin)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
    if let Some(mut w) = child.stdin.take() {
        // The plugin may exit before reading (VERSION): ignore EPIPE.
        let _ = w.write_all(stdin);
    }
    let out = child.wait_with_output().expect("wait");
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A config using every key static accepts.
pub fn full_conf(version: &str) -> Value {
    json!({
        "cniVersion": version,
        "name": "px-static",
        "type": "static",
        "ipam": {
            "type": "static",
            "addresses": [
                {"address": "198.51.100.2/24", "gateway": "198.51.100.1"},
                {"address": "2001:db8::2/64", "gateway": "2001:db8::1"}
            ],
            "routes": [
                {"dst": "0.0.0.0/0"},
                {"dst": "203.0.113.0/24", "gw": "198.51.100.254", "mtu": 1400, "advmss": 1360,
                 "priority": 5, "table": 100, "scope": 0}
            ],
            "dns": {
                "nameservers": ["203.0.113.53"],
                "domain": "example.test",
                "search": ["example.test"],
                "options": ["ndots:2"]
            }
        }
    })
}

pub fn bytes(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).expect("encode")
}
