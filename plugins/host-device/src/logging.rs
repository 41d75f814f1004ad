//! Warnings (failed rollbacks, stale records) go to stderr through
//! `tracing`, like every other Plexus binary; stdout is the CNI result.
//! Installed on the first command, so `VERSION` never pays for it.

/// Installs the stderr subscriber once (warnings and errors); later calls,
/// or a subscriber a test installed, win.
pub(crate) fn init() {
    let _ = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::WARN)
        .with_ansi(false)
        .with_target(false)
        .with_writer(std::io::stderr)
        .try_init();
}
