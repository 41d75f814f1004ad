//! What every Plexus binary says about itself: the workspace version (set
//! once, `[workspace.package] version` in the root `Cargo.toml`) and the git
//! commit it was built from, both compile-time constants (see `build.rs`).
//! Dependency-free so that a commit rebuilds as little as possible.

use std::io::Write;

/// The workspace version, e.g. `0.1.0`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The commit: 12 hex digits, `PLEXUS_COMMIT` from the build environment,
/// or `unknown`.
pub const COMMIT: &str = env!("PLEXUS_COMMIT");

/// `<version> (<commit>)`: clap's `#[command(version = LONG)]` prints it
/// after the binary name.
pub const LONG: &str = concat!(env!("CARGO_PKG_VERSION"), " (", env!("PLEXUS_COMMIT"), ")");

/// The `--version` line of `name`: `<name> <version> (<commit>)`.
pub fn line(name: &str) -> String {
    format!("{name} {LONG}")
}

/// For binaries without an argument parser (the CNI plugins): when the
/// first argument is `--version`, prints [`line`] on stdout and exits 0.
/// Costs one look at argv, so the CNI start-up path stays as lean as before;
/// CNI itself never passes arguments.
pub fn exit_if_version_flag(name: &str) {
    if std::env::args_os().nth(1).is_some_and(|a| a == "--version") {
        let mut out = std::io::stdout().lock();
        let ok = writeln!(out, "{}", line(name)).and_then(|()| out.flush());
        std::process::exit(if ok.is_ok() { 0 } else { 1 });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_is_name_version_commit() {
        assert_eq!(line("static"), format!("static {VERSION} ({COMMIT})"));
        assert!(!VERSION.is_empty());
        assert!(
            COMMIT == "unknown" || !COMMIT.is_empty() && !COMMIT.contains(char::is_whitespace),
            "{COMMIT:?}"
        );
    }
}
