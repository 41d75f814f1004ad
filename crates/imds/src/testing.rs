//! In-memory [`MetadataSource`] for handler tests of crates that consume
//! metadata (the agent), so they need neither HTTP nor a fake server. It is
//! scripted in OCI's wire format, as the fixtures are, and answers through
//! the same translation as the real provider.

use std::sync::Mutex;

use crate::error::ImdsError;
use crate::node::NodeNic;
use crate::types::{Instance, Vnic};
use crate::MetadataSource;

/// Returns scripted answers; `fail_with_status` makes every call fail.
#[derive(Debug, Default)]
pub struct StaticMetadata {
    vnics: Mutex<Vec<Vnic>>,
    instance: Option<Instance>,
    fail_status: Option<u16>,
    calls: Mutex<u64>,
}

impl StaticMetadata {
    /// A source that returns `vnics` and, if given, `instance`.
    pub fn new(vnics: Vec<Vnic>, instance: Option<Instance>) -> Self {
        Self {
            vnics: Mutex::new(vnics),
            instance,
            ..Self::default()
        }
    }

    /// A source whose every call fails with HTTP `status`.
    pub fn failing(status: u16) -> Self {
        Self {
            fail_status: Some(status),
            ..Self::default()
        }
    }

    /// Replaces the VNIC list (attach/detach in a test).
    pub fn set_vnics(&self, vnics: Vec<Vnic>) {
        if let Ok(mut v) = self.vnics.lock() {
            *v = vnics;
        }
    }

    /// Calls answered so far.
    pub fn calls(&self) -> u64 {
        self.calls.lock().map(|c| *c).unwrap_or(0)
    }

    fn count(&self, path: &str) -> Result<(), ImdsError> {
        if let Ok(mut c) = self.calls.lock() {
            *c += 1;
        }
        match self.fail_status {
            Some(status) => Err(ImdsError::Status {
                url: format!("static:{path}"),
                status,
                excerpt: "scripted failure".into(),
                attempts: 1,
            }),
            None => Ok(()),
        }
    }
}

impl MetadataSource for StaticMetadata {
    fn nics(&self) -> Result<Vec<NodeNic>, ImdsError> {
        self.count(crate::client::VNICS_PATH)?;
        let vnics = self.vnics.lock().map(|v| v.clone()).unwrap_or_default();
        Ok(vnics.iter().map(NodeNic::from).collect())
    }
}

impl StaticMetadata {
    /// The scripted instance document, like [`crate::OciImds::instance`].
    pub fn instance(&self) -> Result<Instance, ImdsError> {
        self.count(crate::client::INSTANCE_PATH)?;
        self.instance.clone().ok_or_else(|| ImdsError::Status {
            url: format!("static:{}", crate::client::INSTANCE_PATH),
            status: 404,
            excerpt: "no instance scripted".into(),
            attempts: 1,
        })
    }
}
