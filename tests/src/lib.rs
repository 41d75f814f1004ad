//! End-to-end tests of Plexus (see tests/tests/).

pub mod image;
pub mod manifest;
pub mod runtime;
