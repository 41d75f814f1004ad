//! Test double for [`Exec`]: records every call and answers from a script,
//! so handlers that delegate can be tested without processes.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::error::CniError;
use crate::exec::{find_in_path, Exec};

/// One recorded `exec_plugin` call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecCall {
    /// Binary path.
    pub path: PathBuf,
    /// Stdin bytes.
    pub stdin: Vec<u8>,
    /// Env pairs passed.
    pub env: Vec<(String, String)>,
}

impl ExecCall {
    /// The value of env var `key` in this call.
    pub fn env_var(&self, key: &str) -> Option<&str> {
        self.env
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// `CNI_COMMAND` of this call.
    pub fn command(&self) -> Option<&str> {
        self.env_var("CNI_COMMAND")
    }

    /// Stdin parsed as JSON (`Null` when it is not JSON).
    pub fn stdin_json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.stdin).unwrap_or(serde_json::Value::Null)
    }
}

/// A fake [`Exec`]. Plugins registered with [`FakeExec::with_plugin`] are
/// "found" in the first `CNI_PATH` entry; each call pops the next scripted
/// answer, or returns empty stdout when the script is exhausted.
#[derive(Debug, Default)]
pub struct FakeExec {
    plugins: Vec<String>,
    script: Mutex<VecDeque<Result<Vec<u8>, CniError>>>,
    calls: Mutex<Vec<ExecCall>>,
}

impl FakeExec {
    /// An empty fake that finds no plugin.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes `plugin_type` findable.
    #[must_use]
    pub fn with_plugin(mut self, plugin_type: &str) -> Self {
        self.plugins.push(plugin_type.to_string());
        self
    }

    /// Queues a successful stdout.
    pub fn push_output(&self, stdout: &[u8]) {
        self.script_lock().push_back(Ok(stdout.to_vec()));
    }

    /// Queues a failure.
    pub fn push_error(&self, err: CniError) {
        self.script_lock().push_back(Err(err));
    }

    /// All calls so far.
    pub fn calls(&self) -> Vec<ExecCall> {
        self.calls
            .lock()
            .map(|c| c.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    fn script_lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Result<Vec<u8>, CniError>>> {
        self.script
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Exec for FakeExec {
    fn exec_plugin(
        &self,
        path: &Path,
        stdin: &[u8],
        env: &[(String, String)],
    ) -> Result<Vec<u8>, CniError> {
        self.calls
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(ExecCall {
                path: path.to_path_buf(),
                stdin: stdin.to_vec(),
                env: env.to_vec(),
            });
        self.script_lock()
            .pop_front()
            .unwrap_or_else(|| Ok(Vec::new()))
    }

    fn find_in_path(&self, plugin_type: &str, paths: &[PathBuf]) -> Result<PathBuf, CniError> {
        let first = paths.first().cloned();
        find_in_path(plugin_type, paths, |p| {
            first
                .as_ref()
                .is_some_and(|dir| p.parent() == Some(dir.as_path()))
                && self.plugins.iter().any(|t| p.ends_with(t))
        })
    }
}
