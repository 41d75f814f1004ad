//! Logs go to `logFile` (appended) or stderr (`logToStderr`), never stdout:
//! stdout carries the CNI result. Levels follow Multus: `debug`, `verbose`,
//! `error`, `panic` (default, errors only).

use std::sync::Mutex;

use tracing::Level;

use crate::config::PlexusConf;

fn level(name: &str) -> Level {
    match name.to_ascii_lowercase().as_str() {
        "debug" => Level::DEBUG,
        "verbose" | "info" => Level::INFO,
        "warn" | "warning" => Level::WARN,
        _ => Level::ERROR,
    }
}

/// Installs the process-wide subscriber once; later calls are no-ops.
pub fn init(conf: &PlexusConf) {
    let builder = tracing_subscriber::fmt()
        .with_max_level(level(&conf.log_level))
        .with_ansi(false)
        .with_target(false);
    if !conf.log_file.is_empty() {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&conf.log_file);
        match file {
            Ok(f) => {
                let _ = builder.with_writer(Mutex::new(f)).try_init();
                return;
            }
            Err(e) => {
                // Fall through to stderr so the failure is visible somewhere.
                let _ = std::io::Write::write_all(
                    &mut std::io::stderr(),
                    format!("plexus: cannot open logFile {}: {e}\n", conf.log_file).as_bytes(),
                );
            }
        }
    }
    if conf.log_to_stderr {
        let _ = builder.with_writer(std::io::stderr).try_init();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multus_levels() {
        assert_eq!(level("debug"), Level::DEBUG);
        assert_eq!(level("verbose"), Level::INFO);
        assert_eq!(level("error"), Level::ERROR);
        assert_eq!(level("panic"), Level::ERROR);
        assert_eq!(level(""), Level::ERROR);
    }
}
