//! End-to-end tests of Plexus (see tests/tests/).

pub mod consistency;
pub mod crash;
pub mod image;
pub mod manifest;
pub mod runtime;
