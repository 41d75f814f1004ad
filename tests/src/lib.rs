//! End-to-end tests of Plexus (see tests/tests/).

pub mod runtime;
