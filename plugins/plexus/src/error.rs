//! One error type for the meta plugin, mapped to CNI error codes in one
//! place ([`PlexusError::to_cni`]). Delegate failures keep the delegate's own
//! code, message and details; we only say which network failed.

use plexus_cni::error::CniError;

/// Everything that can make a plexus operation fail.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PlexusError {
    #[error("{0}")]
    Decode(String),
    #[error("{0}")]
    Config(String),
    #[error("{0}")]
    Env(String),
    /// The pod's networks (or default-network) annotation is invalid.
    #[error("pod {pod}: invalid {annotation} annotation: {reason}")]
    Annotation {
        pod: String,
        annotation: &'static str,
        reason: String,
    },
    /// A Kubernetes API call failed (after the retry budget).
    #[error("{what}: {reason}")]
    Api {
        what: String,
        reason: String,
        retryable: bool,
    },
    #[error("pod {pod}: NetworkAttachmentDefinition {nad} not found in namespace {namespace}")]
    NadNotFound {
        pod: String,
        nad: String,
        namespace: String,
    },
    #[error("pod {pod} in namespace {pod_namespace} may not use NetworkAttachmentDefinition {nad}: namespace isolation allows only its own namespace and [{allowed}]")]
    NamespaceIsolation {
        pod: String,
        pod_namespace: String,
        nad: String,
        allowed: String,
    },
    #[error("network {network}: invalid delegate config: {reason}")]
    DelegateConfig { network: String, reason: String },
    /// A delegate plugin failed; `source` is its own CNI error.
    #[error("{context} error {op} container to network {network:?} ({ifname}): {source}")]
    Delegate {
        context: String,
        op: &'static str,
        network: String,
        ifname: String,
        source: Box<CniError>,
    },
    #[error("device ID lookup for network {network} (resource {resource}) failed: {reason}")]
    Device {
        network: String,
        resource: String,
        reason: String,
    },
    #[error("{0}")]
    Io(String),
    /// Several independent failures (DEL, GC): all of them, joined.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join(" / "))]
    Multiple(Vec<PlexusError>),
    /// CHECK for a container we never added (code 3).
    #[error("{0}")]
    UnknownContainer(String),
    /// Transient: the runtime should retry (code 11).
    #[error("{0}")]
    TryAgain(String),
    /// Not ready (STATUS).
    #[error("{0}")]
    NotReady(String),
}

impl PlexusError {
    /// The CNI error the runtime sees.
    pub fn to_cni(&self) -> CniError {
        match self {
            Self::Decode(m) => CniError::decode(m.clone()),
            Self::Config(m) => CniError::invalid_config(m.clone()),
            Self::DelegateConfig { .. }
            | Self::Annotation { .. }
            | Self::NadNotFound { .. }
            | Self::NamespaceIsolation { .. } => CniError::invalid_config(self.to_string()),
            Self::Env(m) => CniError::invalid_env(m.clone()),
            Self::Api { retryable, .. } => {
                if *retryable {
                    CniError::try_again(self.to_string())
                } else {
                    CniError::generic(self.to_string())
                }
            }
            Self::Delegate {
                context,
                op,
                network,
                ifname,
                source,
            } => CniError::new(
                source.code,
                format!(
                    "{context} error {op} container to network {network:?} ({ifname}): {}",
                    source.msg
                ),
                source.details.clone(),
            ),
            Self::Device { .. } => CniError::generic(self.to_string()),
            Self::Io(m) => CniError::io(m.clone()),
            Self::Multiple(errs) if errs.len() == 1 => errs[0].to_cni(),
            Self::Multiple(_) => CniError::generic(self.to_string()),
            Self::TryAgain(m) => CniError::try_again(m.clone()),
            Self::UnknownContainer(m) => CniError::unknown_container(m.clone()),
            Self::NotReady(m) => CniError::new(CniError::PLUGIN_NOT_AVAILABLE, m.clone(), ""),
        }
    }
}

impl From<PlexusError> for CniError {
    fn from(e: PlexusError) -> Self {
        e.to_cni()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delegate_errors_keep_code_and_details() {
        let e = PlexusError::Delegate {
            context: "[ns/pod/uid:sriov]".into(),
            op: "adding",
            network: "ns/sriov".into(),
            ifname: "net1".into(),
            source: Box::new(CniError::new(11, "busy", "try later")),
        };
        let c = e.to_cni();
        assert_eq!(c.code, 11);
        assert_eq!(c.details, "try later");
        assert!(c.msg.contains("\"ns/sriov\" (net1): busy"), "{}", c.msg);
    }

    #[test]
    fn codes() {
        assert_eq!(PlexusError::Config("x".into()).to_cni().code, 7);
        assert_eq!(PlexusError::Decode("x".into()).to_cni().code, 6);
        assert_eq!(
            PlexusError::Api {
                what: "get pod".into(),
                reason: "down".into(),
                retryable: true
            }
            .to_cni()
            .code,
            11
        );
        let m = PlexusError::Multiple(vec![
            PlexusError::Io("a".into()),
            PlexusError::Io("b".into()),
        ]);
        assert_eq!(m.to_string(), "a / b");
        assert_eq!(m.to_cni().code, 999);
        assert_eq!(PlexusError::NotReady("x".into()).to_cni().code, 50);
    }
}
