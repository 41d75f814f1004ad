//! The `plexus-agent` binary as an operator runs it: `vnic plan/apply/
//! deconfigure --netns`, `install`, `status`, and `run` end to end (fake
//! IMDS, fake kubelet, fake sysfs, a test namespace), with its RSS measured.

#![allow(clippy::unwrap_used, clippy::too_many_lines)]

mod support;

mod run;
mod status;
mod vnic;
