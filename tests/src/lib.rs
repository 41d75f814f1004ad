//! End-to-end tests of Plexus (see tests/tests/).

pub mod consistency;
pub mod crash;
pub mod runtime;
