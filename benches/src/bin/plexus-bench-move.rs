//! plexus-bench-move: the kernel floor as a program, the way the issue
//! defines it: "a small program that only moves the same device into the
//! namespace and back, one netlink request each way". Spawned by
//! `plexus-bench` once per move through the same harness as the plugins, so
//! its figures include one process start per ADD and one per DEL, exactly
//! as a CNI plugin pays them.
//!
//! Input like a plugin's, from the environment only (no argument parsing,
//! no stdin): `CNI_COMMAND` `ADD` moves the device from the caller's
//! namespace into `CNI_NETNS`, `DEL` moves it from `CNI_NETNS` back into the
//! caller's; `CNI_ARGS` is `IFINDEX=<n>` (the index survives the move, so
//! no lookup request is needed). Exit 0 on success, 1 with a message on
//! stderr otherwise.

use plexus_netlink::Handle;
use plexus_netns::NetNs;

fn main() {
    plexus_buildinfo::exit_if_version_flag("plexus-bench-move");
    if let Err(e) = run() {
        eprintln!("plexus-bench-move: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let env = |k: &str| std::env::var(k).map_err(|_| format!("{k} not set"));
    let command = env("CNI_COMMAND")?;
    let pod = NetNs::open(env("CNI_NETNS")?).map_err(|e| e.to_string())?;
    let index: u32 = env("CNI_ARGS")?
        .strip_prefix("IFINDEX=")
        .and_then(|n| n.parse().ok())
        .ok_or("CNI_ARGS is not IFINDEX=<n>")?;
    let moved = match command.as_str() {
        "ADD" => Handle::new().and_then(|nl| nl.move_to_netns(index, &pod, None)),
        "DEL" => {
            let node = NetNs::current().map_err(|e| e.to_string())?;
            Handle::open_in(&pod).and_then(|nl| nl.move_to_netns(index, &node, None))
        }
        other => return Err(format!("CNI_COMMAND {other}: only ADD or DEL")),
    };
    moved.map_err(|e| e.to_string())
}
