//! Running a CNI plugin as a runtime would: [`CniCall`] sets exactly the
//! `CNI_*` environment and stdin of one invocation, [`CniOutput`] is what
//! it produced.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// One CNI plugin invocation with an exact environment (everything cleared
/// except `PATH`), as a runtime would make it. Unset fields are left out of
/// the environment rather than set empty, so "missing variable" paths can be
/// exercised too.
#[derive(Debug, Clone)]
pub struct CniCall {
    pub bin: PathBuf,
    pub command: String,
    pub container_id: Option<String>,
    pub netns: Option<String>,
    pub ifname: Option<String>,
    pub cni_path: Option<String>,
    pub args: Option<String>,
    pub stdin: Vec<u8>,
}

/// What a plugin invocation produced.
#[derive(Debug, Clone)]
pub struct CniOutput {
    pub status: ExitStatus,
    /// stdout parsed as JSON; `Value::Null` when stdout is empty or not JSON.
    pub json: Value,
    pub stdout: String,
    pub stderr: String,
    /// Wall time from spawn to exit, stdin write and output capture included.
    pub elapsed: Duration,
}

impl CniOutput {
    /// The result JSON, panicking with the plugin's output if it failed.
    pub fn assert_ok(&self) -> &Value {
        if !self.status.success() {
            panic!(
                "plugin failed ({}): stdout={} stderr={}",
                self.status,
                self.stdout.trim(),
                self.stderr.trim()
            );
        }
        &self.json
    }
}

impl CniCall {
    /// A call with only `CNI_COMMAND` set; add the rest with the setters.
    pub fn new(bin: impl Into<PathBuf>, command: &str) -> Self {
        Self {
            bin: bin.into(),
            command: command.to_owned(),
            container_id: None,
            netns: None,
            ifname: None,
            cni_path: None,
            args: None,
            stdin: Vec::new(),
        }
    }

    pub fn container_id(mut self, v: impl Into<String>) -> Self {
        self.container_id = Some(v.into());
        self
    }

    pub fn netns(mut self, v: impl AsRef<Path>) -> Self {
        self.netns = Some(v.as_ref().to_string_lossy().into_owned());
        self
    }

    pub fn ifname(mut self, v: impl Into<String>) -> Self {
        self.ifname = Some(v.into());
        self
    }

    pub fn cni_path(mut self, v: impl AsRef<Path>) -> Self {
        self.cni_path = Some(v.as_ref().to_string_lossy().into_owned());
        self
    }

    pub fn args(mut self, v: impl Into<String>) -> Self {
        self.args = Some(v.into());
        self
    }

    pub fn stdin(mut self, v: impl Into<Vec<u8>>) -> Self {
        self.stdin = v.into();
        self
    }

    /// The same call with another command (ADD → CHECK → DEL share the rest).
    pub fn with_command(&self, command: &str) -> Self {
        let mut next = self.clone();
        next.command = command.to_owned();
        next
    }

    /// The `CNI_*` variables this call sets, in spec order.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        let mut env = vec![("CNI_COMMAND", self.command.clone())];
        let optional = [
            ("CNI_CONTAINERID", &self.container_id),
            ("CNI_NETNS", &self.netns),
            ("CNI_IFNAME", &self.ifname),
            ("CNI_ARGS", &self.args),
            ("CNI_PATH", &self.cni_path),
        ];
        for (key, value) in optional {
            if let Some(value) = value {
                env.push((key, value.clone()));
            }
        }
        env
    }

    /// Runs the plugin to completion; panics only if it cannot be started.
    pub fn run(&self) -> CniOutput {
        let path = std::env::var("PATH").unwrap_or_else(|_| {
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_owned()
        });
        let mut cmd = Command::new(&self.bin);
        cmd.env_clear()
            .env("PATH", path)
            .envs(self.env())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let start = Instant::now();
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => panic!("cannot start {}: {e}", self.bin.display()),
        };
        if let Some(mut stdin) = child.stdin.take() {
            // A plugin may exit without reading stdin (VERSION); a broken pipe
            // is then expected and not an error of the call.
            let _ = stdin.write_all(&self.stdin);
        }
        let out = match child.wait_with_output() {
            Ok(o) => o,
            Err(e) => panic!("waiting for {} failed: {e}", self.bin.display()),
        };
        let elapsed = start.elapsed();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let json = serde_json::from_str(&stdout).unwrap_or(Value::Null);
        CniOutput {
            status: out.status,
            json,
            stdout,
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            elapsed,
        }
    }
}
