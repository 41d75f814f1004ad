//! The measurement rig: a "node" namespace holding a veth end that plays the
//! VF (its peer stays in the node, up, so the VF has carrier), and an empty
//! "pod" namespace. Plugin sets and the kernel floor use the very same device
//! and namespaces, and every cycle starts from the same state (VF up, no
//! alias), so the only difference between the series is the code path.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use plexus_netlink::Handle;
use plexus_netns::NetNs;
use plexus_testkit::net::{unique_name, CniCall, CniOutput, TestNs, Veth, VethEnd};

/// The pod-side name, as in the tutorial.
pub const IFNAME: &str = "net1";

/// The tutorial's per-node NAD (cniVersion 0.3.1, `host-device` by name with
/// `static` IPAM), with test addresses, and our host-device's `dataDir`
/// (the reference ignores the key).
pub fn nad_config(device: &str, data_dir: &Path) -> String {
    let data_dir = data_dir.display();
    format!(
        r#"{{"cniVersion":"0.3.1","name":"sriov-vnic-1","type":"host-device","device":"{device}","dataDir":"{data_dir}","ipam":{{"type":"static","addresses":[{{"address":"198.51.100.21/24","gateway":"0.0.0.0"}}],"routes":[{{"dst":"198.51.100.0/24","gw":"0.0.0.0"}}]}}}}"#
    )
}

/// One ADD+DEL cycle's wall times, and the CPU (user+sys) it took: of the
/// plugin processes and the children they reaped for a plugin cycle, of the
/// bench thread around its netlink requests for the floor.
#[derive(Debug, Clone, Copy)]
pub struct CycleTimes {
    pub add: Duration,
    pub del: Duration,
    pub cpu: Duration,
}

impl CycleTimes {
    pub fn total(&self) -> Duration {
        self.add + self.del
    }
}

/// Ways of moving the VF for the kernel-floor variants; each is what a
/// plugin could choose to do differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FloorVariant {
    /// One `RTM_SETLINK(IFLA_NET_NS_FD)` each way, device up: the floor.
    Move,
    /// Set the device down first (timed, one extra request), then move.
    DownThenMove,
    /// Rename in the same request as the move, both ways (`net1` and back).
    MoveWithRename,
    /// Set an alias first (timed), as host-device does to remember the name.
    AliasThenMove,
}

impl FloorVariant {
    pub const ALL: [FloorVariant; 4] = [
        FloorVariant::Move,
        FloorVariant::DownThenMove,
        FloorVariant::MoveWithRename,
        FloorVariant::AliasThenMove,
    ];

    pub fn label(self) -> &'static str {
        match self {
            FloorVariant::Move => "move in + move back (device up)",
            FloorVariant::DownThenMove => "set down, then move in + back",
            FloorVariant::MoveWithRename => "move+rename in one request, both ways",
            FloorVariant::AliasThenMove => "set alias, then move in + back",
        }
    }
}

/// Namespaces, the veth "VF" and netlink handles bound to each namespace.
/// Field order is drop order: handles and fds first, then the veth, then the
/// namespaces.
pub struct Rig {
    node_nl: Handle,
    pod_nl: Handle,
    node_fd: NetNs,
    pod_fd: NetNs,
    _veth: Veth,
    vf: String,
    /// Unique per run: host-device keys its state file on it.
    container_id: String,
    /// host-device's state files and device locks, removed on drop. On the
    /// same filesystem as the default `/var/lib/cni`, so writes cost the same.
    data_dir: tempfile::TempDir,
    pod: TestNs,
    _node: TestNs,
}

impl Rig {
    pub fn new() -> Result<Self> {
        let node = TestNs::new("pxbn");
        let pod = TestNs::new("pxbp");
        let vf = unique_name("pxvf");
        let mut veth = Veth::create(
            VethEnd::new(vf.clone()).in_ns(&node).up(),
            VethEnd::new(unique_name("pxwr")).in_ns(&node).up(),
        );
        veth.may_visit(&pod);
        let node_fd = NetNs::open(node.path()).context("open node netns")?;
        let pod_fd = NetNs::open(pod.path()).context("open pod netns")?;
        let node_nl = Handle::open_in(&node_fd).context("netlink in node")?;
        let pod_nl = Handle::open_in(&pod_fd).context("netlink in pod")?;
        Ok(Self {
            node_nl,
            pod_nl,
            node_fd,
            pod_fd,
            _veth: veth,
            vf,
            container_id: unique_name("pxbench"),
            data_dir: tempfile::Builder::new()
                .prefix("plexus-bench.")
                .tempdir()
                .context("create a state directory")?,
            pod,
            _node: node,
        })
    }

    pub fn node_ns(&self) -> &NetNs {
        &self.node_fd
    }

    /// The pod namespace, for calls that only need a `CNI_NETNS`.
    pub fn pod_path(&self) -> std::path::PathBuf {
        self.pod.path()
    }

    /// Untimed: the VF back in its start state (in the node, up, no alias),
    /// whatever the previous plugin left (the reference leaves it down with
    /// an alias).
    pub fn reset(&self) -> Result<u32> {
        let link = self
            .node_nl
            .link_by_name(&self.vf)
            .with_context(|| format!("VF {} is not back in the node namespace", self.vf))?;
        if link.alias.is_some() {
            self.node_nl.clear_alias(link.index)?;
        }
        if !link.up {
            self.node_nl.set_link_up(link.index, true)?;
        }
        Ok(link.index)
    }

    /// The CNI call a runtime would make for this rig (command set later).
    pub fn call(&self, plugin_dir: &Path, command: &str) -> CniCall {
        CniCall::new(plugin_dir.join("host-device"), command)
            .container_id(&self.container_id)
            .netns(self.pod.path())
            .ifname(IFNAME)
            .cni_path(plugin_dir)
            .stdin(nad_config(&self.vf, self.data_dir.path()))
    }

    /// ADD then DEL of host-device (+ its static IPAM) from `plugin_dir`.
    /// Must be called with the thread inside the node namespace.
    pub fn plugin_cycle(&self, plugin_dir: &Path) -> Result<CycleTimes> {
        self.reset()?;
        // Nothing else is reaped meanwhile: the children's CPU delta is the
        // two plugin processes and the IPAM children they waited for.
        let cpu = crate::stats::children_cpu();
        let add = checked(self.call(plugin_dir, "ADD").run(), "ADD", plugin_dir)?;
        let del = checked(self.call(plugin_dir, "DEL").run(), "DEL", plugin_dir)?;
        Ok(CycleTimes {
            add: add.elapsed,
            del: del.elapsed,
            cpu: crate::stats::children_cpu().saturating_sub(cpu),
        })
    }

    /// The kernel floor as a program: `plexus-bench-move` spawned once to
    /// move the VF into the pod and once to move it back, one netlink
    /// request each, through the plugins' spawn harness; CPU as for a
    /// plugin cycle (`RUSAGE_CHILDREN`). Same process starts as a plugin.
    pub fn program_floor_cycle(&self, mover: &Path) -> Result<CycleTimes> {
        let index = self.reset()?;
        let call = |command: &str| {
            CniCall::new(mover, command)
                .netns(self.pod.path())
                .args(format!("IFINDEX={index}"))
        };
        let dir = mover.parent().unwrap_or(mover);
        let cpu = crate::stats::children_cpu();
        let add = checked(call("ADD").run(), "move in", dir)?;
        let del = checked(call("DEL").run(), "move back", dir)?;
        Ok(CycleTimes {
            add: add.elapsed,
            del: del.elapsed,
            cpu: crate::stats::children_cpu().saturating_sub(cpu),
        })
    }

    /// The kernel floor: the same device moved into the pod and back with
    /// one netlink request each way (plus what the variant adds).
    pub fn floor_cycle(&self, variant: FloorVariant) -> Result<CycleTimes> {
        let index = self.reset()?;
        let cpu_add = crate::stats::thread_cpu();
        let start = Instant::now();
        match variant {
            FloorVariant::Move | FloorVariant::MoveWithRename => {}
            FloorVariant::DownThenMove => self.node_nl.set_link_up(index, false)?,
            FloorVariant::AliasThenMove => self.node_nl.set_alias(index, &self.vf)?,
        }
        let rename = (variant == FloorVariant::MoveWithRename).then_some(IFNAME);
        self.node_nl.move_to_netns(index, &self.pod_fd, rename)?;
        let add = start.elapsed();
        let cpu_add = crate::stats::thread_cpu().saturating_sub(cpu_add);
        // Untimed: the ifindex is kept unless taken in the target, which a
        // fresh pod namespace cannot do, but look it up to be sure.
        let in_pod = self.pod_nl.link_by_name(rename.unwrap_or(&self.vf))?;
        let back = (variant == FloorVariant::MoveWithRename).then_some(self.vf.as_str());
        let cpu_del = crate::stats::thread_cpu();
        let start = Instant::now();
        self.pod_nl
            .move_to_netns(in_pod.index, &self.node_fd, back)?;
        let del = start.elapsed();
        Ok(CycleTimes {
            add,
            del,
            cpu: cpu_add + crate::stats::thread_cpu().saturating_sub(cpu_del),
        })
    }
}

fn checked(out: CniOutput, what: &str, dir: &Path) -> Result<CniOutput> {
    if !out.status.success() {
        bail!(
            "{what} with plugins from {} failed ({}): {} {}",
            dir.display(),
            out.status,
            out.stdout.trim(),
            out.stderr.trim()
        );
    }
    Ok(out)
}

/// How long an unrelated `RTM_SETLINK` (an MTU change on a veth in a third
/// namespace) takes while nothing else happens, and while another thread
/// keeps moving the rig's VF back and forth. The move holds RTNL, the
/// kernel-wide netlink lock, through its RCU wait, so every other network
/// configuration on the node queues behind it.
pub fn rtnl_stall(samples: usize) -> Result<(Vec<Duration>, Vec<Duration>)> {
    let other = TestNs::new("pxbo");
    let _veth = Veth::create(
        VethEnd::new("pxbo0").in_ns(&other),
        VethEnd::new("pxbo1").in_ns(&other),
    );
    let other_fd = NetNs::open(other.path()).context("open third netns")?;
    let nl = Handle::open_in(&other_fd).context("netlink in third netns")?;
    let index = nl.link_by_name("pxbo0")?.index;
    let probe = |n: usize| -> Result<Vec<Duration>> {
        (0..n)
            .map(|i| {
                let start = Instant::now();
                nl.set_mtu(index, 1400 + (i % 2) as u32)?;
                let took = start.elapsed();
                // Spread the probes over the movers' cycle.
                std::thread::sleep(Duration::from_micros(2_500));
                Ok(took)
            })
            .collect()
    };
    let idle = probe(samples)?;
    let stop = std::sync::atomic::AtomicBool::new(false);
    let busy = std::thread::scope(|s| -> Result<Vec<Duration>> {
        let mover = s.spawn(|| -> Result<()> {
            let rig = Rig::new()?;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                rig.floor_cycle(FloorVariant::Move)?;
            }
            Ok(())
        });
        // Let the mover start moving before probing.
        std::thread::sleep(Duration::from_millis(100));
        let busy = probe(samples);
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        match mover.join() {
            Ok(r) => r?,
            Err(_) => bail!("the mover thread panicked"),
        }
        busy
    })?;
    Ok((idle, busy))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nad_config_is_the_tutorials_shape() {
        let v: serde_json::Value =
            serde_json::from_str(&nad_config("ens5", Path::new("/tmp/x"))).unwrap_or_default();
        assert_eq!(v["cniVersion"], "0.3.1");
        assert_eq!(v["device"], "ens5");
        assert_eq!(v["ipam"]["type"], "static");
        assert_eq!(v["ipam"]["addresses"][0]["address"], "198.51.100.21/24");
        assert_eq!(v["dataDir"], "/tmp/x");
    }
}
