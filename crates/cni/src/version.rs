//! CNI version negotiation (`pkg/version`): the supported list, parsing and
//! ordering of version strings, VERSION output, and which commands a config
//! version allows (CHECK since 0.4.0, STATUS and GC since 1.1.0).

use serde::{Deserialize, Serialize};

use crate::error::CniError;

/// Every spec version our results and configs can be written in.
pub const SUPPORTED: &[&str] = &[
    "0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0",
];

/// The newest spec version implemented.
pub const CURRENT: &str = "1.1.0";

/// The version assumed when a config has no `cniVersion` (as libcni does).
pub const DEFAULT_CONFIG_VERSION: &str = "0.1.0";

/// A parsed `major.minor.patch` version; missing parts are zero like Go's
/// `version.ParseVersion`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version {
    /// Major part.
    pub major: u32,
    /// Minor part.
    pub minor: u32,
    /// Patch part.
    pub patch: u32,
}

impl Version {
    /// Parses `1`, `1.1` or `1.1.0`.
    pub fn parse(s: &str) -> Result<Self, CniError> {
        if s.is_empty() {
            return Err(CniError::decode(format!(
                "invalid version {s:?}: the version is empty"
            )));
        }
        let parts: Vec<&str> = s.split('.').collect();
        if parts.len() > 3 {
            return Err(CniError::decode(format!(
                "invalid version {s:?}: too many parts"
            )));
        }
        let names = ["major", "minor", "micro"];
        let mut nums = [0u32; 3];
        for (i, p) in parts.iter().enumerate() {
            nums[i] = p.parse().map_err(|e| {
                CniError::decode(format!(
                    "failed to convert {} version part {p:?}: {e}",
                    names[i]
                ))
            })?;
        }
        Ok(Self {
            major: nums[0],
            minor: nums[1],
            patch: nums[2],
        })
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// `a >= b`, both parsed; errors are decode errors (code 6) as in the skeleton.
pub fn greater_than_or_equal(a: &str, b: &str) -> Result<bool, CniError> {
    Ok(Version::parse(a)? >= Version::parse(b)?)
}

/// The output of the VERSION command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VersionInfo {
    /// The version the plugin answers in.
    pub cni_version: String,
    /// Every version the plugin can handle.
    pub supported_versions: Vec<String>,
}

impl VersionInfo {
    /// VERSION output for a plugin supporting `supported`.
    pub fn new(supported: &[&str]) -> Self {
        Self {
            cni_version: CURRENT.to_string(),
            supported_versions: supported.iter().map(|s| (*s).to_string()).collect(),
        }
    }
}

/// Reads `cniVersion` from a config, defaulting to 0.1.0 when absent.
pub fn config_version(stdin: &[u8]) -> Result<String, CniError> {
    #[derive(Deserialize)]
    struct V {
        #[serde(rename = "cniVersion", default)]
        cni_version: String,
    }
    let v: V = serde_json::from_slice(stdin)
        .map_err(|e| CniError::decode(format!("decoding version from network config: {e}")))?;
    Ok(if v.cni_version.is_empty() {
        DEFAULT_CONFIG_VERSION.to_string()
    } else {
        v.cni_version
    })
}

/// Fails with code 1 "incompatible CNI versions" when `config` is not in
/// `supported`, with the reference's details text.
pub fn check_supported(config: &str, supported: &[&str]) -> Result<(), CniError> {
    if supported.contains(&config) {
        return Ok(());
    }
    let list: Vec<String> = supported.iter().map(|s| format!("{s:?}")).collect();
    Err(CniError::incompatible_version(
        "incompatible CNI versions",
        format!("config is {config:?}, plugin supports [{}]", list.join(" ")),
    ))
}

/// The lowest config version that allows `command` (`CHECK`, `STATUS`, `GC`);
/// `None` when any version does.
pub fn min_version_for(command: &str) -> Option<&'static str> {
    match command {
        "CHECK" => Some("0.4.0"),
        "STATUS" | "GC" => Some("1.1.0"),
        _ => None,
    }
}

/// Checks that a config version allows `command` and that the plugin supports
/// at least that version; the messages match the Go skeleton.
pub fn check_command_allowed(
    command: &str,
    config: &str,
    supported: &[&str],
) -> Result<(), CniError> {
    let Some(min) = min_version_for(command) else {
        return Ok(());
    };
    if !greater_than_or_equal(config, min)? {
        return Err(CniError::incompatible_version(
            format!("config version does not allow {command}"),
            "",
        ));
    }
    for v in supported {
        if greater_than_or_equal(v, config)? {
            return Ok(());
        }
    }
    Err(CniError::incompatible_version(
        format!("plugin version does not allow {command}"),
        "",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_order() {
        assert_eq!(Version::parse("1.1").unwrap().to_string(), "1.1.0");
        assert!(Version::parse("0.4.0").unwrap() > Version::parse("0.3.1").unwrap());
        assert!(Version::parse("").is_err());
        assert!(Version::parse("1.2.3.4").is_err());
        assert_eq!(Version::parse("x.1").unwrap_err().code, 6);
    }

    #[test]
    fn config_version_default() {
        assert_eq!(config_version(b"{}").unwrap(), "0.1.0");
        assert_eq!(
            config_version(br#"{"cniVersion":"1.0.0"}"#).unwrap(),
            "1.0.0"
        );
        assert_eq!(config_version(b"{").unwrap_err().code, 6);
    }

    #[test]
    fn check_supported_details() {
        let e = check_supported("9.9.9", &["0.4.0", "1.0.0"]).unwrap_err();
        assert_eq!(e.code, 1);
        assert_eq!(e.msg, "incompatible CNI versions");
        assert_eq!(
            e.details,
            r#"config is "9.9.9", plugin supports ["0.4.0" "1.0.0"]"#
        );
        assert!(check_supported("1.0.0", SUPPORTED).is_ok());
    }

    #[test]
    fn command_rules() {
        let e = check_command_allowed("CHECK", "0.3.1", SUPPORTED).unwrap_err();
        assert_eq!(
            (e.code, e.msg.as_str()),
            (1, "config version does not allow CHECK")
        );
        assert!(check_command_allowed("CHECK", "0.4.0", SUPPORTED).is_ok());
        let e = check_command_allowed("GC", "1.0.0", SUPPORTED).unwrap_err();
        assert_eq!(e.msg, "config version does not allow GC");
        let e = check_command_allowed("STATUS", "1.1.0", &["1.0.0"]).unwrap_err();
        assert_eq!(e.msg, "plugin version does not allow STATUS");
        assert!(check_command_allowed("ADD", "0.1.0", SUPPORTED).is_ok());
    }

    #[test]
    fn version_info_json() {
        let v = serde_json::to_string(&VersionInfo::new(&["0.4.0", "1.1.0"])).unwrap();
        assert_eq!(
            v,
            r#"{"cniVersion":"1.1.0","supportedVersions":["0.4.0","1.1.0"]}"#
        );
    }
}
