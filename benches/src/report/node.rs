//! The node's block of the report: `vnic` IPAM ADD latency and the
//! `plexus-agent` memory, each with its verdict against the targets.

use std::fmt::Write as _;

use super::{mib, verdict, Report, TARGET_AGENT_RSS_KIB, TARGET_VNIC_ADD_MS};
use crate::stats::signed;

impl Report {
    pub(super) fn vnic_md(&self, md: &mut String) {
        let (Some(state), Some(truth)) = (self.vnic.first(), self.vnic.last()) else {
            return;
        };
        let _ = writeln!(
            md,
            "\n### vnic IPAM ADD (spawn → exit, {} runs each, interleaved)\n\n\
             The IPAM call host-device makes after moving the VF, with its \
             delegate config (cniVersion 0.3.1), against a generated OCI VM \
             sysfs root. *State file*: the VF's netdev already gone from the \
             host, found by its PCI address (`runtimeConfig.deviceID`) in the \
             node state file; IMDS unreachable. *IMDS fallback*: no state \
             file, MAC from sysfs, `/opc/v2/vnics/` from the fake IMDS on \
             loopback. `static` gets the same config with a fixed address. \
             Peak RSS: `ru_maxrss` of one call, measured like the plugins' \
             peak RSS (an upper bound; `/bin/true` is the method's floor).\n\n\
             | call | median | p10–p90 | above `/bin/true` | peak RSS |\n|---|---|---|---|---|",
            state.time.n
        );
        for r in &self.vnic {
            let _ = writeln!(
                md,
                "| {} | {:.2} ms | {:.2}–{:.2} ms | {} ms | {} |",
                r.label,
                r.time.median,
                r.time.p10,
                r.time.p90,
                signed(r.time.median - truth.time.median, 2),
                r.rss_kib.map_or_else(|| "–".to_owned(), mib)
            );
        }
        let static_row = self.vnic.iter().find(|r| r.label.contains("static"));
        let _ = write!(
            md,
            "\nvnic ADD with the state file: {:.2} ms median, spawn included \
             (target ≤ {:.0} ms: {})",
            state.time.median,
            TARGET_VNIC_ADD_MS,
            verdict(state.time.median <= TARGET_VNIC_ADD_MS)
        );
        if let Some(st) = static_row {
            let _ = write!(
                md,
                "; {} ms against `static` in the same harness",
                signed(state.time.median - st.time.median, 2)
            );
        }
        let _ = writeln!(md, ".");
    }

    pub(super) fn agent_md(&self, md: &mut String) {
        let Some(a) = &self.agent else {
            return;
        };
        let _ = writeln!(
            md,
            "\n### plexus-agent memory (`run`, release)\n\n\
             `plexus-agent run --no-install --interval {}` with the device \
             plugin (fake kubelet registration socket) and `/metrics` on, \
             entirely inside a test namespace (spawned there, `--netns` too): \
             fake IMDS on its loopback, a generated sysfs root, veth ends as \
             VFs, temporary state and CNI cache dirs. `/proc/<pid>/status` \
             sampled every 100 ms ({} samples over {:.1} s, {} reconcile \
             passes, {} reconcile errors): the first pass configures one \
             secondary VNIC; steady passes (nothing to change); a second VNIC \
             attached (address, table, rules) and detached (stale rule \
             removed); then SIGTERM (clean exit after {:.0} ms).\n\n\
             | phase | memory |\n|---|---|\n\
             | idle: steady passes, median `VmRSS` | {} |\n\
             | reconcile: first pass, attach, detach, largest `VmRSS` | {} |\n\
             | peak over the whole run (`VmHWM`) | **{}** |",
            crate::agent::INTERVAL_S,
            a.samples,
            a.ran.as_secs_f64(),
            a.passes,
            a.reconcile_errors,
            a.stop.as_secs_f64() * 1e3,
            mib(a.idle_kib),
            mib(a.reconcile_kib),
            mib(a.hwm_kib)
        );
        let worst = a.idle_kib.max(a.hwm_kib);
        let _ = writeln!(
            md,
            "\nAgent idle {}, peak {} (target ≤ {}: {}).",
            mib(a.idle_kib),
            mib(a.hwm_kib),
            mib(TARGET_AGENT_RSS_KIB),
            verdict(worst <= TARGET_AGENT_RSS_KIB)
        );
    }
}
