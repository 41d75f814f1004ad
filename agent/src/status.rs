//! `plexus-agent status`: one row per device — interface, PCI, MAC, driver,
//! VNIC OCID, IP/subnet, and where it is now (host, which pod, userspace) —
//! rendered from an [`Inventory`], under the agent's own version line (which
//! build looked at the node). Rendering is pure; the CLI passes its one
//! stdout writer and its version line to [`write_status`].

use std::io::Write;

use serde::Serialize;

use crate::inventory::{Entry, Inventory, Location};

/// One table row, also the `--json` form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatusRow {
    /// Host interface name (`-` when unknown).
    pub interface: String,
    /// PCI address.
    pub pci: String,
    /// `vf`, `pf`, or `nic` for anything else.
    pub kind: String,
    /// MAC.
    pub mac: String,
    /// Kernel driver.
    pub driver: String,
    /// VNIC OCID.
    pub vnic: String,
    /// The VNIC is the node's primary one.
    pub primary: bool,
    /// VNIC private IP.
    pub ip: String,
    /// VNIC subnet.
    pub subnet: String,
    /// `host`, `pod <ns>/<name> (<ifname>)`, `userspace`, `unknown`.
    pub location: String,
}

/// The `--json` document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatusReport {
    /// The agent that wrote the report: `plexus-agent <version> (<commit>)`.
    pub agent: String,
    /// One per device.
    pub devices: Vec<StatusRow>,
    /// VNICs no device carries: `ocid (mac)`.
    pub vnics_without_device: Vec<String>,
    /// Warnings, as sentences.
    pub warnings: Vec<String>,
}

const DASH: &str = "-";

fn or_dash(s: Option<&str>) -> String {
    s.unwrap_or(DASH).to_string()
}

fn location(l: &Location) -> String {
    match l {
        Location::Host => "host".into(),
        Location::Userspace => "userspace".into(),
        Location::Unknown => "unknown".into(),
        Location::Pod(p) => {
            let who = p.pod.clone().unwrap_or_else(|| {
                let short: String = p.container_id.chars().take(12).collect();
                format!("container {short}")
            });
            match &p.ifname {
                Some(i) => format!("pod {who} ({i})"),
                None => format!("pod {who}"),
            }
        }
    }
}

fn row(e: &Entry) -> StatusRow {
    let vnic = e.vnic.as_ref();
    StatusRow {
        interface: or_dash(e.ifname.as_deref()),
        pci: e.pci.to_string(),
        kind: match (e.is_vf, e.is_pf) {
            (true, _) => "vf",
            (_, true) => "pf",
            _ => "nic",
        }
        .into(),
        mac: or_dash(e.mac.as_deref()),
        driver: or_dash(e.driver.as_deref()),
        vnic: vnic.map_or_else(|| DASH.into(), |v| v.id.clone()),
        primary: e.is_primary,
        ip: vnic.map_or_else(|| DASH.into(), |v| v.address.ip.to_string()),
        subnet: vnic.map_or_else(|| DASH.into(), |v| v.address.subnet.to_string()),
        location: location(&e.location),
    }
}

/// The report behind both renderings.
pub fn report(inv: &Inventory, agent: &str) -> StatusReport {
    StatusReport {
        agent: agent.to_string(),
        devices: inv.entries.iter().map(row).collect(),
        vnics_without_device: inv
            .unmatched_vnics
            .iter()
            .map(|u| format!("{} ({})", u.vnic.id, u.vnic.mac))
            .collect(),
        warnings: inv.issues.iter().map(ToString::to_string).collect(),
    }
}

/// The version line, a plain-text table with aligned columns, then
/// unmatched VNICs and warnings.
pub fn render_table(inv: &Inventory, agent: &str) -> String {
    let r = report(inv, agent);
    let header = [
        "INTERFACE",
        "PCI",
        "TYPE",
        "MAC",
        "DRIVER",
        "VNIC",
        "IP",
        "SUBNET",
        "WHERE",
    ];
    let cells: Vec<[String; 9]> = r
        .devices
        .iter()
        .map(|d| {
            [
                d.interface.clone(),
                d.pci.clone(),
                d.kind.clone(),
                d.mac.clone(),
                d.driver.clone(),
                if d.primary {
                    format!("{} (primary)", d.vnic)
                } else {
                    d.vnic.clone()
                },
                d.ip.clone(),
                d.subnet.clone(),
                d.location.clone(),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &cells {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = format!("{}\n\n", r.agent);
    let mut line = |cols: Vec<&str>| {
        let last = cols.len() - 1;
        for (i, c) in cols.iter().enumerate() {
            out.push_str(c);
            if i < last {
                let pad = widths[i] - c.chars().count() + 2;
                out.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push('\n');
    };
    line(header.to_vec());
    for row in &cells {
        line(row.iter().map(String::as_str).collect());
    }
    if !r.vnics_without_device.is_empty() {
        out.push_str("\nVNICs without a device on this node:\n");
        for v in &r.vnics_without_device {
            out.push_str(&format!("  {v}\n"));
        }
    }
    if !r.warnings.is_empty() {
        out.push_str("\nWarnings:\n");
        for w in &r.warnings {
            out.push_str(&format!("  {w}\n"));
        }
    }
    out
}

/// Pretty JSON of [`report`].
pub fn render_json(inv: &Inventory, agent: &str) -> String {
    serde_json::to_string_pretty(&report(inv, agent))
        .unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
        + "\n"
}

/// Writes the table (or JSON) to `out`, the CLI's stdout writer.
pub fn write_status(
    out: &mut dyn Write,
    inv: &Inventory,
    agent: &str,
    json: bool,
) -> std::io::Result<()> {
    let text = if json {
        render_json(inv, agent)
    } else {
        render_table(inv, agent)
    };
    out.write_all(text.as_bytes())?;
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::sample;
    use std::path::PathBuf;

    /// A fixed version line: goldens must not change with every commit.
    const AGENT: &str = "plexus-agent 0.0.0-test (0123456789ab)";

    fn golden(name: &str, actual: &str) {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name);
        if std::env::var_os("PLEXUS_BLESS").is_some() {
            std::fs::write(&path, actual).unwrap();
        }
        let want = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            actual, want,
            "golden {name} differs; rerun with PLEXUS_BLESS=1 after review"
        );
    }

    #[test]
    fn table_matches_golden() {
        golden(
            "status.golden.txt",
            &render_table(&sample::inventory(), AGENT),
        );
    }

    #[test]
    fn json_matches_golden() {
        let inv = sample::inventory();
        let text = render_json(&inv, AGENT);
        golden("status.golden.json", &text);
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["devices"].as_array().unwrap().len(), inv.entries.len());
        assert_eq!(v["agent"], AGENT);
    }

    #[test]
    fn writer_gets_the_rendering() {
        let inv = sample::inventory();
        let mut buf = Vec::new();
        write_status(&mut buf, &inv, AGENT, false).unwrap();
        let text = String::from_utf8(buf).unwrap();
        assert_eq!(text, render_table(&inv, AGENT));
        assert_eq!(text.lines().next(), Some(AGENT), "version line first");
    }
}
