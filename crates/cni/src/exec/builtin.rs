//! In-process delegates: a plugin compiled into the running binary answers
//! for its installed copy in `CNI_PATH`, saving one process start per call.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::{plugin_error, Exec, CNI_ENV_VARS};
use crate::error::CniError;
use crate::skel::Plugin;

/// A plugin compiled into this binary: its `type`, its handlers and the
/// versions it supports, as its own `main` would pass them to [`crate::skel::run`].
pub struct Builtin<'a> {
    /// The `type` it answers to (its binary name in `CNI_PATH`).
    pub plugin_type: &'a str,
    /// Its handlers.
    pub plugin: &'a dyn Plugin,
    /// Its `about` text.
    pub about: &'a str,
    /// Its supported CNI versions.
    pub supported: &'a [&'a str],
}

/// Runs a delegate in-process when it is one of `builtins` *and* the binary
/// `CNI_PATH` resolves to is the one installed with ours (the same file as
/// `<dir>/<type>`, where `dir` holds the running executable): the skeleton
/// runs it with the same stdin, `CNI_*` env and output contract as the
/// process, minus one process start-up per call. Anything else, e.g. another
/// `static` earlier in `CNI_PATH`, is handed to `inner`.
pub struct BuiltinExec<'a, E> {
    inner: E,
    /// Resolved on the first delegate call, so VERSION does no extra work.
    own_dir: std::cell::OnceCell<Option<PathBuf>>,
    builtins: Vec<Builtin<'a>>,
}

impl<E: std::fmt::Debug> std::fmt::Debug for BuiltinExec<'_, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let types: Vec<&str> = self.builtins.iter().map(|b| b.plugin_type).collect();
        f.debug_struct("BuiltinExec")
            .field("inner", &self.inner)
            .field("own_dir", &self.own_dir)
            .field("builtins", &types)
            .finish()
    }
}

impl<'a, E: Exec> BuiltinExec<'a, E> {
    /// Builtins are eligible when found in `own_dir` (`None`: never).
    pub fn new(inner: E, own_dir: Option<PathBuf>) -> Self {
        Self {
            inner,
            own_dir: std::cell::OnceCell::from(own_dir),
            builtins: Vec::new(),
        }
    }

    /// With `own_dir` the directory of the running executable.
    pub fn next_to_current_exe(inner: E) -> Self {
        Self {
            inner,
            own_dir: std::cell::OnceCell::new(),
            builtins: Vec::new(),
        }
    }

    /// Adds a builtin.
    #[must_use]
    pub fn with(mut self, builtin: Builtin<'a>) -> Self {
        self.builtins.push(builtin);
        self
    }

    /// The builtin `path` stands for, if it is the installed copy of one.
    pub(super) fn builtin_for(&self, path: &Path) -> Option<&Builtin<'a>> {
        use std::os::unix::fs::MetadataExt;
        let name = path.file_name()?.to_str()?;
        let b = self.builtins.iter().find(|b| b.plugin_type == name)?;
        let dir = self
            .own_dir
            .get_or_init(|| {
                std::env::current_exe()
                    .ok()
                    .and_then(|p| p.parent().map(Path::to_path_buf))
            })
            .as_ref()?;
        let (found, ours) = (
            std::fs::metadata(path).ok()?,
            std::fs::metadata(dir.join(name)).ok()?,
        );
        (found.dev() == ours.dev() && found.ino() == ours.ino()).then_some(b)
    }
}

impl<E: Exec> Exec for BuiltinExec<'_, E> {
    fn exec_plugin(
        &self,
        path: &Path,
        stdin: &[u8],
        env: &[(String, String)],
    ) -> Result<Vec<u8>, CniError> {
        let Some(b) = self.builtin_for(path) else {
            return self.inner.exec_plugin(path, stdin, env);
        };
        // The child's view: our env with the `CNI_*` variables replaced.
        let getenv = |k: &str| match env.iter().find(|(name, _)| name == k) {
            Some((_, v)) => Some(v.clone()),
            None if CNI_ENV_VARS.contains(&k) => None,
            None => std::env::var(k).ok(),
        };
        let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
        let code = crate::skel::run_with(
            b.plugin,
            b.about,
            b.supported,
            &getenv,
            &mut &stdin[..],
            &mut stdout,
            &mut stderr,
        );
        if !stderr.is_empty() {
            // Diagnostics only: a failed stderr write must not change the outcome.
            let _ = std::io::stderr().write_all(&stderr);
        }
        if code == 0 {
            return Ok(stdout);
        }
        Err(plugin_error(
            &format!("exit status: {code}"),
            &stdout,
            &stderr,
        ))
    }

    fn find_in_path(&self, plugin_type: &str, paths: &[PathBuf]) -> Result<PathBuf, CniError> {
        self.inner.find_in_path(plugin_type, paths)
    }
}
