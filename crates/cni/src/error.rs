//! CNI error type and the spec's error codes (SPEC "Error"; `pkg/types/types.go`).
//!
//! Every failure a plugin reports leaves the process as one of these, printed
//! on stdout as `{cniVersion, code, msg, details}` with a non-zero exit.

use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::{Map, Value};

/// A CNI error as defined by the spec: a numeric code, a short message and
/// optional details.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct CniError {
    /// Spec error code (see the associated constants).
    pub code: u32,
    /// Short human readable message.
    #[serde(default)]
    pub msg: String,
    /// Longer explanation; omitted from JSON when empty.
    #[serde(default)]
    pub details: String,
}

impl CniError {
    /// 1: the config's version is not supported by the plugin.
    pub const INCOMPATIBLE_VERSION: u32 = 1;
    /// 2: a field is not supported (msg names key and value).
    pub const UNSUPPORTED_FIELD: u32 = 2;
    /// 3: the container is unknown or does not exist.
    pub const UNKNOWN_CONTAINER: u32 = 3;
    /// 4: a required environment variable is missing or invalid.
    pub const INVALID_ENV: u32 = 4;
    /// 5: I/O failure.
    pub const IO_FAILURE: u32 = 5;
    /// 6: failed to decode content.
    pub const DECODING_FAILURE: u32 = 6;
    /// 7: invalid network config.
    pub const INVALID_NETWORK_CONFIG: u32 = 7;
    /// 8: invalid netns (libcni only).
    pub const INVALID_NETNS: u32 = 8;
    /// 11: transient failure, try again later.
    pub const TRY_AGAIN_LATER: u32 = 11;
    /// 50: STATUS: plugin not available.
    pub const PLUGIN_NOT_AVAILABLE: u32 = 50;
    /// 51: STATUS: not available and existing containers may have limited connectivity.
    pub const PLUGIN_NOT_AVAILABLE_LIMITED_CONNECTIVITY: u32 = 51;
    /// 999: everything else; the Go skeleton wraps plain errors with it.
    pub const INTERNAL: u32 = 999;

    /// Builds an error from its three parts.
    pub fn new(code: u32, msg: impl Into<String>, details: impl Into<String>) -> Self {
        Self {
            code,
            msg: msg.into(),
            details: details.into(),
        }
    }

    /// Code 1.
    pub fn incompatible_version(msg: impl Into<String>, details: impl Into<String>) -> Self {
        Self::new(Self::INCOMPATIBLE_VERSION, msg, details)
    }

    /// Code 2.
    pub fn unsupported_field(msg: impl Into<String>) -> Self {
        Self::new(Self::UNSUPPORTED_FIELD, msg, "")
    }

    /// Code 3.
    pub fn unknown_container(msg: impl Into<String>) -> Self {
        Self::new(Self::UNKNOWN_CONTAINER, msg, "")
    }

    /// Code 4.
    pub fn invalid_env(msg: impl Into<String>) -> Self {
        Self::new(Self::INVALID_ENV, msg, "")
    }

    /// Code 5.
    pub fn io(msg: impl Into<String>) -> Self {
        Self::new(Self::IO_FAILURE, msg, "")
    }

    /// Code 6.
    pub fn decode(msg: impl Into<String>) -> Self {
        Self::new(Self::DECODING_FAILURE, msg, "")
    }

    /// Code 7.
    pub fn invalid_config(msg: impl Into<String>) -> Self {
        Self::new(Self::INVALID_NETWORK_CONFIG, msg, "")
    }

    /// Code 11.
    pub fn try_again(msg: impl Into<String>) -> Self {
        Self::new(Self::TRY_AGAIN_LATER, msg, "")
    }

    /// Code 999, what the Go plugins return for "everything else".
    pub fn generic(msg: impl Into<String>) -> Self {
        Self::new(Self::INTERNAL, msg, "")
    }

    /// Returns the same error with `details` set.
    #[must_use]
    pub fn with_details(mut self, details: impl Into<String>) -> Self {
        self.details = details.into();
        self
    }

    /// The spec error JSON for a given config version.
    pub fn to_json(&self, cni_version: &str) -> Value {
        let mut m = Map::new();
        m.insert("cniVersion".into(), Value::from(cni_version));
        m.insert("code".into(), Value::from(self.code));
        m.insert("msg".into(), Value::from(self.msg.clone()));
        if !self.details.is_empty() {
            m.insert("details".into(), Value::from(self.details.clone()));
        }
        Value::Object(m)
    }
}

impl std::fmt::Display for CniError {
    /// Same text as Go's `types.Error.Error()`: `msg` or `msg; details`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.details.is_empty() {
            f.write_str(&self.msg)
        } else {
            write!(f, "{}; {}", self.msg, self.details)
        }
    }
}

impl std::error::Error for CniError {}

impl Serialize for CniError {
    /// Serializes with `cniVersion` set to the newest supported version; the
    /// skeleton uses [`CniError::to_json`] to stamp the config's version.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let n = if self.details.is_empty() { 3 } else { 4 };
        let mut m = s.serialize_map(Some(n))?;
        m.serialize_entry("cniVersion", crate::version::CURRENT)?;
        m.serialize_entry("code", &self.code)?;
        m.serialize_entry("msg", &self.msg)?;
        if !self.details.is_empty() {
            m.serialize_entry("details", &self.details)?;
        }
        m.end()
    }
}

impl From<std::io::Error> for CniError {
    fn from(e: std::io::Error) -> Self {
        Self::io(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn display_matches_go() {
        assert_eq!(CniError::generic("boom").to_string(), "boom");
        assert_eq!(
            CniError::new(1, "incompatible", "config is x").to_string(),
            "incompatible; config is x"
        );
    }

    #[test]
    fn json_shape() {
        let e = CniError::invalid_config("bad");
        assert_eq!(
            e.to_json("0.4.0"),
            json!({"cniVersion":"0.4.0","code":7,"msg":"bad"})
        );
        let v = serde_json::to_value(CniError::new(6, "m", "d")).unwrap_or_default();
        assert_eq!(
            v,
            json!({"cniVersion":"1.1.0","code":6,"msg":"m","details":"d"})
        );
    }

    #[test]
    fn parses_delegate_error_ignoring_version() {
        let e: CniError =
            serde_json::from_str(r#"{"cniVersion":"0.3.1","code":11,"msg":"later"}"#).unwrap();
        assert_eq!(e, CniError::try_again("later"));
    }

    #[test]
    fn helper_codes() {
        assert_eq!(CniError::decode("x").code, 6);
        assert_eq!(CniError::invalid_env("x").code, 4);
        assert_eq!(CniError::io("x").code, 5);
        assert_eq!(CniError::try_again("x").code, 11);
        assert_eq!(CniError::generic("x").code, 999);
        assert_eq!(CniError::unknown_container("x").code, 3);
        assert_eq!(CniError::unsupported_field("x").code, 2);
    }
}
