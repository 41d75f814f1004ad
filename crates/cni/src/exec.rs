//! Delegate execution (`pkg/invoke`): find a plugin binary in `CNI_PATH`, run
//! it with `CNI_*` env and a config on stdin, and turn a failure into the
//! delegate's own CNI error. Used for IPAM and by the meta plugin for every
//! delegate. The process side sits behind [`Exec`] so handlers test with
//! [`crate::testing::FakeExec`].

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::process::{Command as Process, ExitStatus, Stdio};

use crate::error::CniError;
use crate::result::CniResult;
use crate::skel::{CmdArgs, Command};
use crate::version;

mod builtin;
pub use builtin::{Builtin, BuiltinExec};

/// Runs plugin binaries.
pub trait Exec {
    /// Runs `path` with `env` added to the environment and `stdin` as input;
    /// returns stdout on success, the plugin's CNI error on failure.
    fn exec_plugin(
        &self,
        path: &Path,
        stdin: &[u8],
        env: &[(String, String)],
    ) -> Result<Vec<u8>, CniError>;

    /// Finds plugin `plugin_type` in `paths` (first match wins).
    fn find_in_path(&self, plugin_type: &str, paths: &[PathBuf]) -> Result<PathBuf, CniError>;
}

impl<E: Exec + ?Sized> Exec for &E {
    fn exec_plugin(
        &self,
        path: &Path,
        stdin: &[u8],
        env: &[(String, String)],
    ) -> Result<Vec<u8>, CniError> {
        (**self).exec_plugin(path, stdin, env)
    }

    fn find_in_path(&self, plugin_type: &str, paths: &[PathBuf]) -> Result<PathBuf, CniError> {
        (**self).find_in_path(plugin_type, paths)
    }
}

/// The `CNI_*` values a delegate is run with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DelegateEnv {
    /// `CNI_CONTAINERID`.
    pub container_id: String,
    /// `CNI_NETNS`.
    pub netns: String,
    /// `CNI_IFNAME`.
    pub ifname: String,
    /// `CNI_ARGS`.
    pub args: String,
    /// `CNI_PATH`.
    pub path: Vec<PathBuf>,
}

impl From<&CmdArgs> for DelegateEnv {
    /// A delegate (e.g. IPAM) sees the same env as its caller.
    fn from(a: &CmdArgs) -> Self {
        Self {
            container_id: a.container_id.clone(),
            netns: a.netns.clone(),
            ifname: a.ifname.clone(),
            args: a.args.clone(),
            path: a.path.clone(),
        }
    }
}

/// Names of every variable [`DelegateEnv::to_env`] sets; inherited copies are
/// removed so a delegate never sees its caller's stale values.
pub const CNI_ENV_VARS: &[&str] = &[
    "CNI_COMMAND",
    "CNI_CONTAINERID",
    "CNI_NETNS",
    "CNI_IFNAME",
    "CNI_ARGS",
    "CNI_PATH",
];

impl DelegateEnv {
    /// The env pairs for `command`; empty values are left out.
    pub fn to_env(&self, command: Command) -> Vec<(String, String)> {
        let path = std::env::join_paths(&self.path)
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        [
            ("CNI_COMMAND", command.as_str().to_string()),
            ("CNI_CONTAINERID", self.container_id.clone()),
            ("CNI_NETNS", self.netns.clone()),
            ("CNI_IFNAME", self.ifname.clone()),
            ("CNI_ARGS", self.args.clone()),
            ("CNI_PATH", path),
        ]
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }
}

/// Runs real processes. The child's stdin, stdout and stderr are anonymous
/// in-memory files (`memfd_create`), not pipes: the config is written before
/// the spawn and the output read after `wait`, so a call needs no helper
/// threads, no pipe ping-pong while the child writes, and cannot block on a
/// full pipe or on a grandchild that keeps a pipe open. The child's stderr is
/// copied to ours once it exits and kept for the error message when it prints
/// nothing on stdout. Where memfd is unavailable, pipes and two helper
/// threads do the same.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessExec;

impl ProcessExec {
    fn command(path: &Path, env: &[(String, String)]) -> Process {
        let mut cmd = Process::new(path);
        for name in CNI_ENV_VARS {
            cmd.env_remove(name);
        }
        cmd.envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        // A killed caller takes its delegates with it.
        plexus_netns::process::die_with_parent(&mut cmd);
        cmd
    }

    fn spawn_error(path: &Path, e: &std::io::Error) -> CniError {
        CniError::generic(format!("failed to execute plugin {}: {e}", path.display()))
    }

    fn wait_error(path: &Path, e: &std::io::Error) -> CniError {
        CniError::generic(format!("failed to wait for plugin {}: {e}", path.display()))
    }

    /// The memfd path; `None` when memfds cannot be created here.
    fn exec_with_memfd(
        path: &Path,
        stdin: &[u8],
        env: &[(String, String)],
    ) -> Option<Result<Finished, CniError>> {
        let (mut input, mut out, mut err) = (
            memfd(c"cni-stdin")?,
            memfd(c"cni-stdout")?,
            memfd(c"cni-stderr")?,
        );
        Some((|| {
            let io = |e: std::io::Error| Self::spawn_error(path, &e);
            input.write_all(stdin).map_err(io)?;
            input.rewind().map_err(io)?;
            let dup = |f: &File| f.try_clone().map(Stdio::from).map_err(io);
            let status = Self::command(path, env)
                .stdin(Stdio::from(input))
                .stdout(dup(&out)?)
                .stderr(dup(&err)?)
                .status()
                .map_err(io)?;
            Ok(Finished {
                status,
                stdout: read_back(&mut out),
                stderr: read_back(&mut err),
            })
        })())
    }

    /// The fallback: pipes, with stdin fed and stderr drained by scoped
    /// threads so a chatty plugin cannot deadlock on a full pipe.
    fn exec_with_pipes(
        path: &Path,
        stdin: &[u8],
        env: &[(String, String)],
    ) -> Result<Finished, CniError> {
        let mut child = Self::command(path, env)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| Self::spawn_error(path, &e))?;
        let mut child_in = child.stdin.take();
        let mut child_out = child.stdout.take();
        let mut child_err = child.stderr.take();
        let (stdout, stderr) = std::thread::scope(|s| {
            s.spawn(move || {
                if let Some(mut w) = child_in.take() {
                    // A plugin that exits without reading stdin is not an exec error.
                    let _ = w.write_all(stdin);
                }
            });
            let err_thread = s.spawn(move || {
                let mut kept = Vec::new();
                if let Some(r) = child_err.as_mut() {
                    let _ = r.read_to_end(&mut kept);
                }
                kept
            });
            let mut out = Vec::new();
            if let Some(r) = child_out.as_mut() {
                let _ = r.read_to_end(&mut out);
            }
            (out, err_thread.join().unwrap_or_default())
        });
        let status = child.wait().map_err(|e| Self::wait_error(path, &e))?;
        Ok(Finished {
            status,
            stdout,
            stderr,
        })
    }
}

/// A child that exited, with what it wrote.
struct Finished {
    status: ExitStatus,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

/// An anonymous in-memory file, close-on-exec (the spawn dups it onto the
/// child's stdio).
fn memfd(name: &std::ffi::CStr) -> Option<File> {
    nix::sys::memfd::memfd_create(name, nix::sys::memfd::MemFdCreateFlag::MFD_CLOEXEC)
        .ok()
        .map(File::from)
}

/// Everything the child wrote to `f` (its offset is shared with the child's
/// descriptor, so it starts from the beginning).
fn read_back(f: &mut File) -> Vec<u8> {
    let mut buf = Vec::new();
    if f.rewind().is_ok() {
        // Output is best effort: a short read leaves what was read.
        let _ = f.read_to_end(&mut buf);
    }
    buf
}

impl Exec for ProcessExec {
    fn exec_plugin(
        &self,
        path: &Path,
        stdin: &[u8],
        env: &[(String, String)],
    ) -> Result<Vec<u8>, CniError> {
        let Finished {
            status,
            stdout,
            stderr,
        } = match Self::exec_with_memfd(path, stdin, env) {
            Some(r) => r?,
            None => Self::exec_with_pipes(path, stdin, env)?,
        };
        if !stderr.is_empty() {
            // Diagnostics only: a failed stderr write must not change the outcome.
            let _ = std::io::stderr().write_all(&stderr);
        }
        if status.success() {
            return Ok(stdout);
        }
        Err(plugin_error(&status.to_string(), &stdout, &stderr))
    }

    fn find_in_path(&self, plugin_type: &str, paths: &[PathBuf]) -> Result<PathBuf, CniError> {
        find_in_path(plugin_type, paths, |p| p.is_file())
    }
}

/// The error for a failed plugin: its own CNI error when stdout holds one.
fn plugin_error(status: &str, stdout: &[u8], stderr: &[u8]) -> CniError {
    if stdout.iter().all(u8::is_ascii_whitespace) {
        if stderr.is_empty() {
            return CniError::generic(format!("netplugin failed with no error message: {status}"));
        }
        return CniError::generic(format!(
            "netplugin failed: {:?}",
            String::from_utf8_lossy(stderr).trim_end()
        ));
    }
    serde_json::from_slice::<CniError>(stdout).unwrap_or_else(|e| {
        CniError::generic(format!(
            "netplugin failed but error parsing its diagnostic message {:?}: {e}",
            String::from_utf8_lossy(stdout)
        ))
    })
}

/// Finds `plugin_type` in `paths` using `exists` (so fakes share the rules).
pub fn find_in_path(
    plugin_type: &str,
    paths: &[PathBuf],
    exists: impl Fn(&Path) -> bool,
) -> Result<PathBuf, CniError> {
    if plugin_type.is_empty() {
        return Err(CniError::generic("no plugin name provided"));
    }
    if plugin_type.contains('/') {
        return Err(CniError::generic(format!(
            "invalid plugin name: {plugin_type}"
        )));
    }
    if paths.is_empty() {
        return Err(CniError::generic(format!(
            "failed to find plugin {plugin_type:?}: no paths provided (CNI_PATH is empty)"
        )));
    }
    paths
        .iter()
        .map(|dir| dir.join(plugin_type))
        .find(|p| exists(p))
        .ok_or_else(|| {
            let list: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
            CniError::generic(format!(
                "failed to find plugin {plugin_type:?} in path [{}]",
                list.join(" ")
            ))
        })
}

fn run_delegate(
    plugin_type: &str,
    conf: &[u8],
    env: &DelegateEnv,
    command: Command,
    exec: &(impl Exec + ?Sized),
) -> Result<Vec<u8>, CniError> {
    let path = exec.find_in_path(plugin_type, &env.path)?;
    exec.exec_plugin(&path, conf, &env.to_env(command))
}

/// ADD on a delegate; its result is parsed in its own `cniVersion` (the
/// config's when absent, like libcni).
pub fn delegate_add(
    plugin_type: &str,
    conf: &[u8],
    env: &DelegateEnv,
    exec: &(impl Exec + ?Sized),
) -> Result<CniResult, CniError> {
    let out = run_delegate(plugin_type, conf, env, Command::Add, exec)?;
    let conf_version = version::config_version(conf)?;
    CniResult::from_slice(&out, &conf_version)
}

/// CHECK on a delegate.
pub fn delegate_check(
    plugin_type: &str,
    conf: &[u8],
    env: &DelegateEnv,
    exec: &(impl Exec + ?Sized),
) -> Result<(), CniError> {
    run_delegate(plugin_type, conf, env, Command::Check, exec).map(drop)
}

/// DEL on a delegate.
pub fn delegate_del(
    plugin_type: &str,
    conf: &[u8],
    env: &DelegateEnv,
    exec: &(impl Exec + ?Sized),
) -> Result<(), CniError> {
    run_delegate(plugin_type, conf, env, Command::Del, exec).map(drop)
}

/// STATUS on a delegate.
pub fn delegate_status(
    plugin_type: &str,
    conf: &[u8],
    env: &DelegateEnv,
    exec: &(impl Exec + ?Sized),
) -> Result<(), CniError> {
    run_delegate(plugin_type, conf, env, Command::Status, exec).map(drop)
}

/// GC on a delegate.
pub fn delegate_gc(
    plugin_type: &str,
    conf: &[u8],
    env: &DelegateEnv,
    exec: &(impl Exec + ?Sized),
) -> Result<(), CniError> {
    run_delegate(plugin_type, conf, env, Command::Gc, exec).map(drop)
}

#[cfg(test)]
mod tests;
