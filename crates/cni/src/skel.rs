//! The plugin skeleton (`pkg/skel`): read `CNI_*` env and stdin, validate in
//! the reference order, dispatch to a [`Plugin`], print the result or the
//! error JSON on stdout. Only this module writes to stdout.
//!
//! Validation order (matches the Go skeleton, reference-behaviour §2 item 7):
//! 1. required env vars for the command (code 4; no `CNI_COMMAND` at all
//!    prints the about text on stderr and exits 0);
//! 2. stdin JSON (code 6) and network name (code 7), before dispatch;
//! 3. container id and interface name for ADD/CHECK/DEL;
//! 4. command: CHECK needs config ≥0.4.0, STATUS/GC ≥1.1.0 (code 1), then the
//!    config version must be supported (code 1, "incompatible CNI versions");
//!    unknown commands give code 4.

use std::io::{Read, Write};
use std::path::PathBuf;

use serde::Serialize;
use serde_json::Value;

use crate::error::CniError;
use crate::version::{self, VersionInfo};

/// A CNI command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Command {
    /// ADD.
    Add,
    /// DEL.
    Del,
    /// CHECK.
    Check,
    /// STATUS (1.1.0).
    Status,
    /// GC (1.1.0).
    Gc,
    /// VERSION.
    Version,
}

impl Command {
    /// Parses the `CNI_COMMAND` value.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "ADD" => Self::Add,
            "DEL" => Self::Del,
            "CHECK" => Self::Check,
            "STATUS" => Self::Status,
            "GC" => Self::Gc,
            "VERSION" => Self::Version,
            _ => return None,
        })
    }

    /// The `CNI_COMMAND` spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Add => "ADD",
            Self::Del => "DEL",
            Self::Check => "CHECK",
            Self::Status => "STATUS",
            Self::Gc => "GC",
            Self::Version => "VERSION",
        }
    }
}

impl std::fmt::Display for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Everything a plugin invocation receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CmdArgs {
    /// The command.
    pub command: Command,
    /// `CNI_CONTAINERID`.
    pub container_id: String,
    /// `CNI_NETNS` (may be empty on DEL).
    pub netns: String,
    /// `CNI_IFNAME`.
    pub ifname: String,
    /// Raw `CNI_ARGS`.
    pub args: String,
    /// `CNI_PATH`, split on `:`.
    pub path: Vec<PathBuf>,
    /// The config JSON from stdin.
    pub stdin: Vec<u8>,
}

/// A CNI plugin's handlers. STATUS and GC default to success, as a nil
/// handler does in the Go skeleton.
pub trait Plugin {
    /// ADD: returns the result already rendered in the config's cniVersion.
    fn add(&self, args: &CmdArgs) -> Result<Value, CniError>;
    /// DEL: must succeed when things are already gone.
    fn del(&self, args: &CmdArgs) -> Result<(), CniError>;
    /// CHECK.
    fn check(&self, args: &CmdArgs) -> Result<(), CniError>;
    /// STATUS.
    fn status(&self, _args: &CmdArgs) -> Result<(), CniError> {
        Ok(())
    }
    /// GC.
    fn gc(&self, _args: &CmdArgs) -> Result<(), CniError> {
        Ok(())
    }
}

/// Runs a plugin against the real process env, stdin and stdout; returns the
/// exit code for `std::process::exit`.
pub fn run<P: Plugin + ?Sized>(plugin: &P, about: &str, supported: &[&str]) -> i32 {
    // A non-UTF-8 value becomes a NUL-prefixed marker (NUL cannot occur in
    // a real environment value) that `dispatch` refuses by name.
    let env = |k: &str| {
        std::env::var_os(k).map(|v| v.into_string().unwrap_or_else(|_| NOT_UTF8.to_string()))
    };
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    // stderr stays unlocked: a lock held for the whole call would block any
    // other thread of the plugin that logs.
    run_with(
        plugin,
        about,
        supported,
        &env,
        &mut stdin.lock(),
        &mut stdout.lock(),
        &mut std::io::stderr(),
    )
}

/// [`run`] with injected env, stdin, stdout and stderr, for tests.
pub fn run_with<P: Plugin + ?Sized>(
    plugin: &P,
    about: &str,
    supported: &[&str],
    env: &dyn Fn(&str) -> Option<String>,
    stdin: &mut dyn Read,
    stdout: &mut dyn Write,
    stderr: &mut dyn Write,
) -> i32 {
    let getenv = |k: &str| env(k).unwrap_or_default();
    // Sized for a typical config so it is read in one call.
    let mut stdin_data = Vec::with_capacity(16 * 1024);
    let outcome = dispatch(plugin, supported, &getenv, stdin, &mut stdin_data);
    match outcome {
        Ok(Output::About) => {
            // Diagnostics only: a failed stderr write must not change the outcome.
            let _ = writeln!(stderr, "{about}");
            let _ = writeln!(
                stderr,
                "CNI protocol versions supported: {}",
                supported.join(", ")
            );
            0
        }
        Ok(Output::Nothing) => 0,
        Ok(Output::Pretty(v)) => write_pretty(stdout, &v).map_or(1, |()| 0),
        Ok(Output::Compact(v)) => match serde_json::to_vec(&v) {
            Ok(mut bytes) => {
                bytes.push(b'\n');
                stdout
                    .write_all(&bytes)
                    .and_then(|()| stdout.flush())
                    .map_or(1, |()| 0)
            }
            Err(_) => 1,
        },
        Err(e) => {
            let ver = version::config_version(&stdin_data)
                .ok()
                .filter(|v| !stdin_data.is_empty() && supported.contains(&v.as_str()))
                .unwrap_or_else(|| version::CURRENT.to_string());
            let _ = write_pretty(stdout, &e.to_json(&ver));
            1
        }
    }
}

enum Output {
    About,
    Nothing,
    Pretty(Value),
    Compact(Value),
}

fn write_pretty(out: &mut dyn Write, v: &impl Serialize) -> std::io::Result<()> {
    // Rendered first and written once: stdout is line-buffered, and one
    // write per line would wake the reading runtime once per line.
    let mut buf = Vec::with_capacity(1024);
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
    v.serialize(&mut ser).map_err(std::io::Error::other)?;
    buf.push(b'\n');
    out.write_all(&buf)?;
    out.flush()
}

/// Env vars in the skeleton's order with the commands that require them.
const ENV_VARS: &[(&str, &[&str])] = &[
    ("CNI_COMMAND", &["ADD", "CHECK", "DEL", "GC", "STATUS"]),
    ("CNI_CONTAINERID", &["ADD", "CHECK", "DEL"]),
    ("CNI_NETNS", &["ADD", "CHECK"]),
    ("CNI_IFNAME", &["ADD", "CHECK", "DEL"]),
    ("CNI_ARGS", &[]),
    ("CNI_PATH", &["ADD", "CHECK", "DEL", "GC", "STATUS"]),
];

fn dispatch<P: Plugin + ?Sized>(
    plugin: &P,
    supported: &[&str],
    getenv: &dyn Fn(&str) -> String,
    stdin: &mut dyn Read,
    stdin_data: &mut Vec<u8>,
) -> Result<Output, CniError> {
    let cmd = getenv("CNI_COMMAND");
    let missing: Vec<&str> = ENV_VARS
        .iter()
        .filter(|(name, req)| {
            getenv(name).is_empty() && (*name == "CNI_COMMAND" || req.contains(&cmd.as_str()))
        })
        .map(|(name, _)| *name)
        .collect();
    if !missing.is_empty() {
        if cmd.is_empty() {
            return Ok(Output::About);
        }
        return Err(CniError::invalid_env(format!(
            "required env variables [{}] missing",
            missing.join(",")
        )));
    }
    if let Some((name, _)) = ENV_VARS.iter().find(|(n, _)| getenv(n).contains('\0')) {
        return Err(CniError::invalid_env(format!("{name} is not valid UTF-8")));
    }
    if cmd == "VERSION" {
        return Ok(Output::Compact(version_value(supported)?));
    }
    stdin
        .read_to_end(stdin_data)
        .map_err(|e| CniError::io(format!("error reading from stdin: {e}")))?;
    validate_config(stdin_data)?;
    let command = Command::parse(&cmd);
    if matches!(command, Some(Command::Add | Command::Check | Command::Del)) {
        validate_container_id(&getenv("CNI_CONTAINERID"))?;
        validate_interface_name(&getenv("CNI_IFNAME"))?;
        validate_netns(&getenv("CNI_NETNS"))?;
    }
    let Some(command) = command else {
        return Err(CniError::invalid_env(format!("unknown CNI_COMMAND: {cmd}")));
    };
    let args = CmdArgs {
        command,
        container_id: getenv("CNI_CONTAINERID"),
        netns: getenv("CNI_NETNS"),
        ifname: getenv("CNI_IFNAME"),
        args: getenv("CNI_ARGS"),
        path: split_path(&getenv("CNI_PATH")),
        stdin: std::mem::take(stdin_data),
    };
    let result = call(plugin, supported, &args);
    *stdin_data = args.stdin;
    result
}

fn call<P: Plugin + ?Sized>(
    plugin: &P,
    supported: &[&str],
    args: &CmdArgs,
) -> Result<Output, CniError> {
    let conf_version = version::config_version(&args.stdin)?;
    version::check_command_allowed(args.command.as_str(), &conf_version, supported)?;
    version::check_supported(&conf_version, supported)?;
    match args.command {
        Command::Add => plugin.add(args).map(Output::Pretty),
        Command::Del => plugin.del(args).map(|()| Output::Nothing),
        Command::Check => plugin.check(args).map(|()| Output::Nothing),
        Command::Status => plugin.status(args).map(|()| Output::Nothing),
        Command::Gc => plugin.gc(args).map(|()| Output::Nothing),
        Command::Version => Ok(Output::Compact(version_value(supported)?)),
    }
}

fn version_value(supported: &[&str]) -> Result<Value, CniError> {
    serde_json::to_value(VersionInfo::new(supported)).map_err(|e| CniError::io(e.to_string()))
}

/// `CNI_PATH` split like Go's `filepath.SplitList` (empty entries dropped).
pub fn split_path(s: &str) -> Vec<PathBuf> {
    s.split(':')
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .collect()
}

fn valid_id(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// Stdin must be JSON with a valid network `name`.
pub fn validate_config(stdin: &[u8]) -> Result<(), CniError> {
    #[derive(serde::Deserialize)]
    struct Named {
        #[serde(default)]
        name: Option<Value>,
    }
    let named: Named = serde_json::from_slice(stdin)
        .map_err(|e| CniError::decode(format!("error unmarshall network config: {e}")))?;
    let name = match named.name {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s,
        Some(other) => {
            return Err(CniError::decode(format!(
                "error unmarshall network config: name must be a string, got {other}"
            )))
        }
    };
    if name.is_empty() {
        return Err(CniError::invalid_config("missing network name"));
    }
    if !valid_id(&name) {
        return Err(
            CniError::invalid_config("invalid characters found in network name").with_details(name),
        );
    }
    Ok(())
}

/// What a non-UTF-8 env value reads as (see [`run`]).
const NOT_UTF8: &str = "\0not-utf8";

/// Longest container id accepted: ids end up in file names
/// (`<id>-<ifname>.json`, NAME_MAX 255); runtimes use 64 hex digits.
pub const MAX_CONTAINER_ID_LEN: usize = 200;

/// Container ids start alphanumeric, then alphanumerics, `_`, `.` or `-`,
/// at most [`MAX_CONTAINER_ID_LEN`] long.
pub fn validate_container_id(id: &str) -> Result<(), CniError> {
    if id.is_empty() {
        return Err(CniError::unknown_container("missing containerID"));
    }
    if id.len() > MAX_CONTAINER_ID_LEN {
        return Err(
            CniError::invalid_env("containerID is too long").with_details(format!(
                "{} bytes, at most {MAX_CONTAINER_ID_LEN}",
                id.len()
            )),
        );
    }
    if !valid_id(id) {
        return Err(CniError::invalid_env("invalid characters in containerID").with_details(id));
    }
    Ok(())
}

/// Linux interface name rules (`IFNAMSIZ`, no `/`, `:` or whitespace).
pub fn validate_interface_name(name: &str) -> Result<(), CniError> {
    if name.is_empty() {
        return Err(CniError::invalid_env("interface name is empty"));
    }
    if name.len() > 15 {
        return Err(CniError::invalid_env("interface name is too long")
            .with_details("interface name should be less than 16 characters"));
    }
    if name == "." || name == ".." {
        return Err(CniError::invalid_env("interface name is . or .."));
    }
    if name
        .chars()
        .any(|c| c == '/' || c == ':' || c.is_whitespace())
    {
        return Err(CniError::invalid_env(
            "interface name contains / or : or whitespace characters",
        ));
    }
    Ok(())
}

/// `CNI_NETNS`, when given, must be an absolute path; when it exists it
/// must be a namespace file (nsfs files stat as regular files; a FIFO,
/// socket, device or directory is refused before anyone opens it), and it
/// must not be the plugin's own network namespace (same device and inode as
/// `/proc/self/ns/net`): ADD there would move or configure the node's own
/// links, DEL would delete them.
pub fn validate_netns(netns: &str) -> Result<(), CniError> {
    use std::os::unix::fs::MetadataExt;
    if netns.is_empty() {
        return Ok(());
    }
    if !netns.starts_with('/') {
        return Err(CniError::invalid_env("CNI_NETNS is not an absolute path").with_details(netns));
    }
    let Ok(target) = std::fs::metadata(netns) else {
        // Missing: the plugin reports it (DEL of a gone netns succeeds).
        return Ok(());
    };
    if !target.file_type().is_file() {
        return Err(
            CniError::invalid_env("CNI_NETNS is not a network namespace").with_details(netns),
        );
    }
    if let Ok(own) = std::fs::metadata("/proc/self/ns/net") {
        if own.dev() == target.dev() && own.ino() == target.ino() {
            return Err(
                CniError::invalid_env("CNI_NETNS is the plugin's own network namespace")
                    .with_details(netns),
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
