//! Running one delegate network the way libcni runs a conflist
//! (`libcni/api.go`): ADD each plugin in order feeding the previous result as
//! `prevResult`; DEL in reverse with the final ADD result (only for
//! cniVersion ≥ 0.4.0); CHECK in order with the final result; GC and STATUS
//! only for ≥ 1.1.0. Every plugin gets `name`, `cniVersion` and the
//! `runtimeConfig` subset it declared (`build_plugin_conf`).
//!
//! This is the delegate boundary: each plugin's stdout is decoded once into
//! a [`CniResult`] and carried typed from here on; it is rendered in the
//! chain's version only when handed back to a plugin as `prevResult`.

use std::path::PathBuf;

use plexus_cni::config::{build_plugin_conf, inject_gc_attachments, GcAttachment};
use plexus_cni::error::CniError;
use plexus_cni::exec::{DelegateEnv, Exec};
use plexus_cni::version::greater_than_or_equal;
use plexus_cni::{CniResult, Command, NetConfList};
use serde_json::{Map, Value};

/// Where and as what a delegate runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunEnv {
    pub container_id: String,
    pub netns: String,
    pub ifname: String,
    pub cni_args: String,
    pub path: Vec<PathBuf>,
}

impl RunEnv {
    fn delegate_env(&self) -> DelegateEnv {
        DelegateEnv {
            container_id: self.container_id.clone(),
            netns: self.netns.clone(),
            ifname: self.ifname.clone(),
            args: self.cni_args.clone(),
            path: self.path.clone(),
        }
    }
}

/// A delegate conflist.
#[derive(Debug, Clone, Copy)]
pub struct Chain<'a> {
    pub conf: &'a NetConfList,
}

impl<'a> Chain<'a> {
    pub fn new(conf: &'a NetConfList) -> Self {
        Self { conf }
    }

    pub fn version(&self) -> &str {
        match self.conf.cni_version.as_str() {
            "" => plexus_cni::version::DEFAULT_CONFIG_VERSION,
            v => v,
        }
    }

    pub fn name(&self) -> &str {
        &self.conf.name
    }

    fn plugins(&self) -> &'a [Value] {
        &self.conf.plugins
    }

    fn at_least(&self, v: &str) -> bool {
        greater_than_or_equal(self.version(), v).unwrap_or(false)
    }

    fn run(
        &self,
        exec: &dyn Exec,
        plugin: &Value,
        command: Command,
        env: &RunEnv,
        input: Input<'_>,
    ) -> Result<Vec<u8>, CniError> {
        let Input { prev, caps, gc } = input;
        let plugin_type = plugin_type(plugin);
        let prev = prev.map(|r| r.to_json(self.version())).transpose()?;
        let mut conf = build_plugin_conf(plugin, self.name(), self.version(), prev.as_ref(), caps)?;
        if let Some(list) = gc {
            inject_gc_attachments(&mut conf, list)?;
        }
        let stdin = serde_json::to_vec(&conf)
            .map_err(|e| CniError::generic(format!("cannot encode delegate config: {e}")))?;
        let denv = env.delegate_env();
        let path = exec.find_in_path(plugin_type, &denv.path)?;
        exec.exec_plugin(&path, &stdin, &denv.to_env(command))
    }

    /// ADD through the chain; returns the last plugin's result, decoded in
    /// its own `cniVersion` (the chain's when it names none, as libcni).
    pub fn add(
        &self,
        exec: &dyn Exec,
        env: &RunEnv,
        caps: &Map<String, Value>,
    ) -> Result<CniResult, CniError> {
        let mut prev: Option<CniResult> = None;
        for plugin in self.plugins() {
            let out = self.run(
                exec,
                plugin,
                Command::Add,
                env,
                Input {
                    prev: prev.as_ref(),
                    caps,
                    gc: None,
                },
            )?;
            let r = CniResult::from_slice(&out, self.version()).map_err(|e| {
                CniError::decode(format!(
                    "failed to parse result of plugin {:?}: {}",
                    plugin_type(plugin),
                    e.msg
                ))
            })?;
            prev = Some(r);
        }
        prev.ok_or_else(|| {
            CniError::invalid_config(format!("network {:?} has no plugins", self.name()))
        })
    }

    /// DEL in reverse order; unlike libcni it goes on past a failing plugin
    /// (so IPAM-style cleanups further up still run) and returns the first
    /// error. The cached result is passed only for ≥ 0.4.0, like libcni.
    pub fn del(
        &self,
        exec: &dyn Exec,
        env: &RunEnv,
        caps: &Map<String, Value>,
        result: Option<&CniResult>,
    ) -> Result<(), CniError> {
        let prev = if self.at_least("0.4.0") { result } else { None };
        let mut first_err = None;
        for plugin in self.plugins().iter().rev() {
            if let Err(e) = self.run(
                exec,
                plugin,
                Command::Del,
                env,
                Input {
                    prev,
                    caps,
                    gc: None,
                },
            ) {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// CHECK in order with the cached result. Below 0.4.0 or with
    /// `disableCheck` there is nothing to check (libcni refuses / skips).
    pub fn check(
        &self,
        exec: &dyn Exec,
        env: &RunEnv,
        caps: &Map<String, Value>,
        result: Option<&CniResult>,
    ) -> Result<CheckOutcome, CniError> {
        if !self.at_least("0.4.0") {
            return Ok(CheckOutcome::SkippedVersion);
        }
        if self.conf.disable_check {
            return Ok(CheckOutcome::Disabled);
        }
        let Some(result) = result else {
            return Err(CniError::generic(format!(
                "no cached result for network {:?}",
                self.name()
            )));
        };
        for plugin in self.plugins() {
            self.run(
                exec,
                plugin,
                Command::Check,
                env,
                Input {
                    prev: Some(result),
                    caps,
                    gc: None,
                },
            )?;
        }
        Ok(CheckOutcome::Checked)
    }

    /// STATUS to every plugin (≥ 1.1.0 only); stops at the first failure,
    /// whose code (50/51) the caller passes through.
    pub fn status(&self, exec: &dyn Exec, env: &RunEnv) -> Result<bool, CniError> {
        if !self.at_least("1.1.0") {
            return Ok(false);
        }
        for plugin in self.plugins() {
            self.run(
                exec,
                plugin,
                Command::Status,
                env,
                Input {
                    prev: None,
                    caps: &Map::new(),
                    gc: None,
                },
            )?;
        }
        Ok(true)
    }

    /// GC to every plugin with the attachments that remain valid (≥ 1.1.0,
    /// unless `disableGC`); goes on past failures.
    pub fn gc(
        &self,
        exec: &dyn Exec,
        env: &RunEnv,
        valid: &[GcAttachment],
    ) -> Result<bool, CniError> {
        if !self.at_least("1.1.0") || self.conf.disable_gc {
            return Ok(false);
        }
        let mut first_err = None;
        for plugin in self.plugins() {
            let input = Input {
                prev: None,
                caps: &Map::new(),
                gc: Some(valid),
            };
            if let Err(e) = self.run(exec, plugin, Command::Gc, env, input) {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(true), Err)
    }
}

fn plugin_type(plugin: &Value) -> &str {
    plugin
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// What a plugin receives besides its config: `prevResult`, capability
/// args, and (GC only) the valid attachments.
#[derive(Clone, Copy)]
struct Input<'b> {
    prev: Option<&'b CniResult>,
    caps: &'b Map<String, Value>,
    gc: Option<&'b [GcAttachment]>,
}

/// What CHECK did for one network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckOutcome {
    Checked,
    SkippedVersion,
    Disabled,
}
