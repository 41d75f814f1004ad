//! Process lifetime for the children Plexus spawns: a delegate plugin dies
//! with the plugin that ran it. It lives here because arming it needs
//! `Command::pre_exec`, which is `unsafe`, and this is the crate allowed it.

use std::process::Command;

/// Arms `cmd` so its process is SIGKILLed when the spawning thread's process
/// dies (`PR_SET_PDEATHSIG`). A runtime that kills a plugin mid-ADD sends
/// DEL next; a delegate left running would overtake that DEL (e.g. move a VF
/// into a pod nobody will DEL again). With this, the DEL sees what a killed
/// delegate left. The signal is armed in the forked child before `exec`;
/// the spawn then forks instead of using `posix_spawn` (≈ 0.3 ms on a
/// 2-core VM, docs/reliability.md). The caller must wait for the child on
/// the thread that spawned it: the signal follows that thread's exit.
pub fn die_with_parent(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    let parent = nix::unistd::getpid();
    // SAFETY: the closure runs in the forked child before exec and only
    // makes two async-signal-safe syscalls (prctl, getppid); it allocates
    // nothing and takes no lock.
    unsafe {
        cmd.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)?;
            // The parent died between fork and prctl: the signal will never
            // come, so do not start.
            if nix::unistd::getppid() != parent {
                return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
}
