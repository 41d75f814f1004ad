//! The pure half of ADD: from a [`Resolved`] to the list of attachments in
//! order, with everything each delegate will receive: interface numbering
//! (`CNI_IFNAME`, then `net<index>` unless the annotation names one),
//! device IDs handed out per resource, `CNI_ARGS`, capability args and
//! device-info paths. No I/O, so every rule here is unit-testable.

use std::collections::HashSet;
use std::net::IpAddr;

use plexus_cni::CmdArgs;
use tracing::warn;

use crate::cache::Attachment;
use crate::config::PlexusConf;
use crate::delegates::{capability_args, delegate_cni_args, inject_cni_args, inject_device_id};
use crate::devices::{cni_device_info_path, DeviceAllocator};
use crate::error::PlexusError;
use crate::resolve::{Network, Resolved, Selected};

/// One network about to be attached.
#[derive(Debug, Clone)]
pub struct Planned {
    pub attachment: Attachment,
    /// Gateways of the network's `default-route` request.
    pub gateways: Vec<IpAddr>,
}

/// Works out every network to attach, in order. Fails when two networks
/// would get the same interface name.
pub fn plan(args: &CmdArgs, conf: &PlexusConf, r: &Resolved) -> Result<Vec<Planned>, PlexusError> {
    let mut out = vec![plain(conf, r, &r.cluster, args.ifname.clone(), true)];
    for n in &r.defaults {
        let ifname = format!("net{}", out.len());
        out.push(plain(conf, r, n, ifname, false));
    }
    let mut allocator = DeviceAllocator::new(r.allocated.clone());
    for s in &r.selections {
        let p = selected(args, conf, r, s, out.len(), &mut allocator);
        out.push(p);
    }
    let mut seen = HashSet::new();
    for p in &out {
        if !seen.insert(p.attachment.ifname.as_str()) {
            return Err(PlexusError::Config(format!(
                "interface name {} is requested by more than one network",
                p.attachment.ifname
            )));
        }
    }
    Ok(out)
}

/// The cluster network or a default network: config as resolved, the
/// runtime's capability args, no per-network requests.
fn plain(
    conf: &PlexusConf,
    r: &Resolved,
    n: &Network,
    ifname: String,
    is_default: bool,
) -> Planned {
    Planned {
        attachment: Attachment {
            network: n.name.clone(),
            ifname,
            is_default,
            conf: n.conf.clone(),
            cni_args: delegate_cni_args(&r.cni_args, &r.pod, None),
            capability_args: conf.runtime_config.clone(),
            ..Attachment::default()
        },
        gateways: Vec::new(),
    }
}

/// An annotation network: its device (when its NAD names a resource), its
/// `cni-args`, interface name and capability requests.
fn selected(
    args: &CmdArgs,
    conf: &PlexusConf,
    r: &Resolved,
    s: &Selected,
    index: usize,
    allocator: &mut DeviceAllocator,
) -> Planned {
    let sel = &s.selection;
    let network = sel.qualified_name();
    let mut list = s.conf.clone();
    let device_id = match &s.resource {
        Some(res) if !r.pod.name.is_empty() && !r.pod.namespace.is_empty() => {
            let got = allocator.take(res);
            match &got {
                Some(id) => inject_device_id(&mut list, id),
                None => {
                    warn!(network = %network, resource = %res, "no allocated device left for resource")
                }
            }
            got
        }
        _ => None,
    };
    if let Some(cni) = &sel.cni_args {
        inject_cni_args(&mut list, cni);
    }
    let ifname = sel
        .interface
        .clone()
        .unwrap_or_else(|| format!("net{index}"));
    let device_info_file = device_id.as_ref().map(|_| {
        cni_device_info_path(&conf.device_info_dir, &network, &args.container_id, &ifname)
    });
    let runtime_device = device_id.clone().or_else(|| sel.device_id.clone());
    let caps = capability_args(
        &conf.runtime_config,
        Some(sel),
        runtime_device.as_deref(),
        device_info_file.as_deref(),
    );
    Planned {
        attachment: Attachment {
            network,
            ifname,
            conf: list,
            cni_args: delegate_cni_args(&r.cni_args, &r.pod, Some(sel)),
            capability_args: caps,
            device_id,
            resource_name: s.resource.clone(),
            device_info_file,
            ..Attachment::default()
        },
        gateways: sel.default_route.clone(),
    }
}
