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
mod tests {
    use super::*;
    use crate::skel::Plugin;
    use crate::testing::FakeExec;
    use std::os::unix::fs::PermissionsExt;

    fn env() -> DelegateEnv {
        DelegateEnv {
            container_id: "c1".into(),
            netns: "/var/run/netns/x".into(),
            ifname: "net1".into(),
            args: "IgnoreUnknown=1".into(),
            path: vec!["/opt/cni/bin".into(), "/usr/lib/cni".into()],
        }
    }

    #[test]
    fn env_pairs() {
        let mut e = env();
        e.netns.clear();
        let pairs = e.to_env(Command::Del);
        assert!(pairs.contains(&("CNI_COMMAND".into(), "DEL".into())));
        assert!(pairs.contains(&("CNI_PATH".into(), "/opt/cni/bin:/usr/lib/cni".into())));
        assert!(!pairs.iter().any(|(k, _)| k == "CNI_NETNS"));
    }

    #[test]
    fn delegate_add_with_fake() {
        let fake = FakeExec::new().with_plugin("static");
        fake.push_output(br#"{"cniVersion":"1.0.0","ips":[{"address":"198.51.100.2/24"}]}"#);
        let conf = br#"{"cniVersion":"1.0.0","name":"n","type":"static"}"#;
        let r = delegate_add("static", conf, &env(), &fake).unwrap();
        assert_eq!(r.ips[0].address.to_string(), "198.51.100.2/24");
        let calls = fake.calls();
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].path, PathBuf::from("/opt/cni/bin/static"));
        assert_eq!(calls[0].command(), Some("ADD"));
        assert_eq!(calls[0].stdin, conf.to_vec());
    }

    #[test]
    fn delegate_error_passes_through() {
        let fake = FakeExec::new().with_plugin("static");
        fake.push_error(CniError::invalid_config("bad"));
        let e = delegate_del("static", b"{}", &env(), &fake).unwrap_err();
        assert_eq!(e, CniError::invalid_config("bad"));
        assert_eq!(fake.calls()[0].command(), Some("DEL"));
        fake.push_output(b"");
        assert!(delegate_gc("static", b"{}", &env(), &fake).is_ok());
        assert!(delegate_status("static", b"{}", &env(), &fake).is_ok());
        assert!(delegate_check("static", b"{}", &env(), &fake).is_ok());
    }

    #[test]
    fn missing_plugin_names_type_and_paths() {
        let fake = FakeExec::new();
        let e = delegate_add("nope", b"{}", &env(), &fake).unwrap_err();
        assert_eq!(
            e.msg,
            r#"failed to find plugin "nope" in path [/opt/cni/bin /usr/lib/cni]"#
        );
        assert!(fake.calls().is_empty());
        assert!(find_in_path("a/b", &env().path, |_| true).is_err());
        assert!(find_in_path("", &env().path, |_| true).is_err());
        assert!(find_in_path("x", &[], |_| true)
            .unwrap_err()
            .msg
            .contains("CNI_PATH"));
    }

    #[test]
    fn plugin_error_fallbacks() {
        assert_eq!(
            plugin_error("exit 1", b"", b"").msg,
            "netplugin failed with no error message: exit 1"
        );
        assert_eq!(
            plugin_error("exit 1", b"", b"oops\n").msg,
            r#"netplugin failed: "oops""#
        );
        assert!(plugin_error("exit 1", b"junk", b"")
            .msg
            .contains("error parsing its diagnostic"));
        assert_eq!(
            plugin_error("x", br#"{"code":7,"msg":"m","details":"d"}"#, b"").details,
            "d"
        );
    }

    #[test]
    fn process_exec_script() {
        let dir = tempfile::tempdir().unwrap();
        let ok = dir.path().join("okplug");
        std::fs::write(
            &ok,
            "#!/bin/sh\necho \"cmd=$CNI_COMMAND if=$CNI_IFNAME in=$(cat)\"\necho diag >&2\n",
        )
        .unwrap();
        let bad = dir.path().join("badplug");
        std::fs::write(
            &bad,
            "#!/bin/sh\ncat >/dev/null\necho '{\"code\":11,\"msg\":\"later\"}'\nexit 1\n",
        )
        .unwrap();
        for p in [&ok, &bad] {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let paths = vec![PathBuf::from("/nonexistent-px"), dir.path().to_path_buf()];
        let found = ProcessExec.find_in_path("okplug", &paths).unwrap();
        assert_eq!(found, ok);
        let out = ProcessExec
            .exec_plugin(&found, b"{\"x\":1}", &env().to_env(Command::Add))
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out),
            "cmd=ADD if=net1 in={\"x\":1}\n"
        );
        let e = ProcessExec.exec_plugin(&bad, b"{}", &[]).unwrap_err();
        assert_eq!(e, CniError::try_again("later"));
        assert!(ProcessExec
            .exec_plugin(&dir.path().join("none"), b"", &[])
            .is_err());
    }

    /// Answers ADD with its interface name; fails DEL with code 11.
    struct Echo;

    impl Plugin for Echo {
        fn add(&self, a: &CmdArgs) -> Result<serde_json::Value, CniError> {
            Ok(serde_json::json!({"cniVersion": "1.0.0", "interfaces": [{"name": a.ifname}]}))
        }
        fn del(&self, _a: &CmdArgs) -> Result<(), CniError> {
            Err(CniError::try_again("busy"))
        }
        fn check(&self, _a: &CmdArgs) -> Result<(), CniError> {
            Ok(())
        }
    }

    #[test]
    fn builtin_runs_in_process_only_for_the_installed_copy() {
        let own = tempfile::tempdir().unwrap();
        let other = tempfile::tempdir().unwrap();
        for d in [&own, &other] {
            std::fs::write(d.path().join("echo"), "#!/bin/sh\nexit 99\n").unwrap();
        }
        let fake = FakeExec::new().with_plugin("echo");
        fake.push_output(br#"{"cniVersion":"1.0.0"}"#);
        let exec = BuiltinExec::new(&fake, Some(own.path().to_path_buf())).with(Builtin {
            plugin_type: "echo",
            plugin: &Echo,
            about: "echo",
            supported: version::SUPPORTED,
        });
        let conf = br#"{"cniVersion":"1.0.0","name":"n","type":"echo"}"#;
        let mut e = env();
        e.path = vec![own.path().to_path_buf()];
        let r = delegate_add("echo", conf, &e, &exec).unwrap();
        assert_eq!(r.interfaces[0].name, "net1");
        let err = delegate_del("echo", conf, &e, &exec).unwrap_err();
        assert_eq!(err, CniError::try_again("busy"));
        // The skeleton's own checks apply too.
        let err = exec
            .exec_plugin(&own.path().join("echo"), b"{}", &e.to_env(Command::Add))
            .unwrap_err();
        assert_eq!(err.code, 7);
        assert!(fake.calls().is_empty(), "{:?}", fake.calls());
        // Another copy earlier in CNI_PATH is not ours: it is exec'd.
        e.path = vec![other.path().to_path_buf(), own.path().to_path_buf()];
        delegate_add("echo", conf, &e, &exec).unwrap();
        assert_eq!(fake.calls().len(), 1);
        assert_eq!(fake.calls()[0].path, other.path().join("echo"));
        // Without an own directory nothing is builtin.
        let none = BuiltinExec::new(&fake, None);
        assert!(none.builtin_for(&own.path().join("echo")).is_none());
    }

    /// Both ways of running a plugin: a big config in, big output on both
    /// streams (more than a pipe holds), stderr kept for the error message.
    #[test]
    fn memfd_and_pipe_paths_agree() {
        let dir = tempfile::tempdir().unwrap();
        let echo = dir.path().join("echoplug");
        std::fs::write(
            &echo,
            "#!/bin/sh\ncat\nhead -c 200000 /dev/zero | tr '\\0' x >&2\necho >&2 last\n",
        )
        .unwrap();
        let quiet = dir.path().join("quietplug");
        std::fs::write(&quiet, "#!/bin/sh\necho oops >&2\nexit 3\n").unwrap();
        for p in [&echo, &quiet] {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let big: Vec<u8> = (0..300_000u32).map(|i| b'a' + (i % 26) as u8).collect();
        let env = env().to_env(Command::Add);
        let via_memfd = ProcessExec::exec_with_memfd(&echo, &big, &env)
            .expect("memfd available")
            .unwrap();
        let via_pipes = ProcessExec::exec_with_pipes(&echo, &big, &env).unwrap();
        for f in [&via_memfd, &via_pipes] {
            assert!(f.status.success());
            assert_eq!(f.stdout, big);
            assert_eq!(f.stderr.len(), 200_005);
            assert!(f.stderr.ends_with(b"last\n"));
        }
        let via_memfd = ProcessExec::exec_with_memfd(&quiet, b"{}", &env)
            .expect("memfd available")
            .unwrap();
        let via_pipes = ProcessExec::exec_with_pipes(&quiet, b"{}", &env).unwrap();
        for f in [&via_memfd, &via_pipes] {
            assert_eq!(f.status.code(), Some(3));
            assert!(f.stdout.is_empty());
            assert_eq!(f.stderr, b"oops\n");
        }
        let e = ProcessExec.exec_plugin(&quiet, b"{}", &env).unwrap_err();
        assert_eq!(e.msg, r#"netplugin failed: "oops""#);
    }
}
