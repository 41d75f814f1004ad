//! The minimal CRI client: `tests/runtime/cri.py` (Debian has no crictl),
//! one process per call, JSON out. Errors keep containerd's message, which
//! for a failed network setup carries the CNI plugin's error text.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use super::{assets, PYTHON};

/// gRPC deadline of one CRI call. A sandbox takes well under a second here;
/// a plugin that hangs makes containerd wait as long as the caller does, and
/// when the deadline passes containerd cancels the call and kills the plugin.
const CALL_TIMEOUT_SECS: &str = "30";

/// A failed CRI call: the gRPC status code and containerd's message (for a
/// sandbox whose network setup failed it carries the CNI plugin's error).
#[derive(Debug, Clone)]
pub struct CriError {
    pub message: String,
}

impl std::fmt::Display for CriError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CriError {}

/// The minimal CRI client (`tests/runtime/cri.py`), one process per call.
#[derive(Debug, Clone)]
pub struct Cri {
    sock: PathBuf,
    pb_dir: PathBuf,
}

impl Cri {
    /// A client for the CRI socket `sock`; `pb_dir` holds the module protoc
    /// generated from `cri_min.proto`.
    pub fn new(sock: PathBuf, pb_dir: PathBuf) -> Self {
        Self { sock, pb_dir }
    }

    pub fn sock(&self) -> &Path {
        &self.sock
    }

    pub fn pb_dir(&self) -> &Path {
        &self.pb_dir
    }

    /// Runs one client command; stdout is one JSON document.
    pub fn call(&self, args: &[&str], stdin: Option<&Value>) -> Result<Value, CriError> {
        let mut cmd = Command::new(PYTHON);
        cmd.arg(assets().join("cri.py"))
            .arg("--sock")
            .arg(&self.sock)
            .arg("--pb-dir")
            .arg(&self.pb_dir)
            .arg("--timeout")
            .arg(CALL_TIMEOUT_SECS)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let fail = |message: String| CriError { message };
        let mut child = cmd
            .spawn()
            .map_err(|e| fail(format!("cannot run {PYTHON} cri.py: {e}")))?;
        if let Some(mut input) = child.stdin.take() {
            if let Some(v) = stdin {
                input
                    .write_all(v.to_string().as_bytes())
                    .map_err(|e| fail(format!("writing cri.py stdin: {e}")))?;
            }
        }
        let out = child
            .wait_with_output()
            .map_err(|e| fail(format!("waiting for cri.py: {e}")))?;
        if !out.status.success() {
            return Err(fail(format!(
                "cri.py {} ({}): {}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        serde_json::from_slice(&out.stdout).map_err(|e| {
            fail(format!(
                "cri.py {} printed invalid JSON ({e}): {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stdout)
            ))
        })
    }

    /// Runs one client command and SIGKILLs the client after `after` unless it
    /// finished: a kubelet killed (or timing out) mid-call. containerd sees
    /// the connection drop and cancels the request context, which kills a
    /// CNI plugin it is running. `Ok(true)` if the client had to be killed.
    pub fn call_killed_after(
        &self,
        args: &[&str],
        stdin: Option<&Value>,
        after: std::time::Duration,
    ) -> Result<bool, CriError> {
        let fail = |message: String| CriError { message };
        let mut child = Command::new(PYTHON)
            .arg(assets().join("cri.py"))
            .arg("--sock")
            .arg(&self.sock)
            .arg("--pb-dir")
            .arg(&self.pb_dir)
            .arg("--timeout")
            .arg(CALL_TIMEOUT_SECS)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| fail(format!("cannot run {PYTHON} cri.py: {e}")))?;
        if let Some(mut input) = child.stdin.take() {
            if let Some(v) = stdin {
                let _ = input.write_all(v.to_string().as_bytes());
            }
        }
        let deadline = std::time::Instant::now() + after;
        loop {
            match child.try_wait() {
                Ok(Some(_)) => return Ok(false),
                Ok(None) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                _ => break,
            }
        }
        let _ = child.kill();
        let _ = child.wait();
        Ok(true)
    }

    /// Sandboxes the runtime knows, with their metadata (`id`,
    /// `metadata.uid`, `state`).
    pub fn sandboxes(&self) -> Result<Vec<Value>, CriError> {
        let pods = self.call(&["pods"], None)?;
        Ok(pods["items"].as_array().cloned().unwrap_or_default())
    }

    /// CRI `Status`: conditions and, verbose, the loaded CNI config.
    pub fn status(&self) -> Result<Value, CriError> {
        self.call(&["status"], None)
    }

    /// Ids of all sandboxes the runtime knows, in any state.
    pub fn sandbox_ids(&self) -> Result<Vec<String>, CriError> {
        let pods = self.call(&["pods"], None)?;
        Ok(pods["items"]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .filter_map(|p| p["id"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default())
    }

    pub fn run_pod(&self, config: &Value) -> Result<String, CriError> {
        self.run_pod_timed(config).map(|(id, _)| id)
    }

    /// RunPodSandbox, and how long the RPC took as the client timed it
    /// (containerd returns once the sandbox is ready: network set up, pause
    /// container running), without the Python client's own start-up.
    pub fn run_pod_timed(&self, config: &Value) -> Result<(String, Duration), CriError> {
        let out = self.call(&["runp"], Some(config))?;
        let id = out["id"].as_str().map(str::to_owned);
        let ms = out["elapsed_ms"].as_f64().filter(|ms| *ms >= 0.0);
        match (id, ms) {
            (Some(id), Some(ms)) => Ok((id, Duration::from_secs_f64(ms / 1e3))),
            _ => Err(CriError {
                message: format!("RunPodSandbox answered without an id or a time: {out}"),
            }),
        }
    }

    /// Verbose `PodSandboxStatus`, with `info` decoded.
    pub fn inspect(&self, id: &str) -> Result<Value, CriError> {
        self.call(&["inspectp", id], None)
    }

    pub fn stop(&self, id: &str) -> Result<(), CriError> {
        self.call(&["stopp", id], None).map(|_| ())
    }

    pub fn remove(&self, id: &str) -> Result<(), CriError> {
        self.call(&["rmp", id], None).map(|_| ())
    }

    /// CreateContainer in sandbox `pod` (kubelet passes the sandbox config
    /// again); returns the container id.
    pub fn create_container(
        &self,
        pod: &str,
        config: &Value,
        sandbox_config: &Value,
    ) -> Result<String, CriError> {
        let req = serde_json::json!({
            "pod_sandbox_id": pod,
            "config": config,
            "sandbox_config": sandbox_config,
        });
        let out = self.call(&["create"], Some(&req))?;
        out["id"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| CriError {
                message: format!("CreateContainer answered without an id: {out}"),
            })
    }

    pub fn start_container(&self, id: &str) -> Result<(), CriError> {
        self.call(&["start", id], None).map(|_| ())
    }

    /// StopContainer: SIGTERM, SIGKILL after `grace_secs` (kubelet passes
    /// the pod's terminationGracePeriodSeconds).
    pub fn stop_container(&self, id: &str, grace_secs: i64) -> Result<(), CriError> {
        self.call(&["stop", id, &grace_secs.to_string()], None)
            .map(|_| ())
    }

    pub fn remove_container(&self, id: &str) -> Result<(), CriError> {
        self.call(&["rm", id], None).map(|_| ())
    }

    /// Verbose ContainerStatus (`status.state`, `status.exit_code`, ...).
    pub fn container_status(&self, id: &str) -> Result<Value, CriError> {
        self.call(&["inspect", id], None)
    }

    /// ExecSync, as kubelet runs an exec probe: `cmd` inside the container,
    /// `timeout_secs` the probe's timeoutSeconds. Returns (exit code,
    /// stdout, stderr).
    pub fn exec_sync(
        &self,
        id: &str,
        cmd: &[String],
        timeout_secs: i64,
    ) -> Result<(i64, String, String), CriError> {
        let req = serde_json::json!({"cmd": cmd, "timeout": timeout_secs});
        let out = self.call(&["exec", id], Some(&req))?;
        Ok((
            out["exit_code"].as_i64().unwrap_or(-1),
            out["stdout"].as_str().unwrap_or_default().to_owned(),
            out["stderr"].as_str().unwrap_or_default().to_owned(),
        ))
    }
}
