//! `CNI_ARGS` (`K=V;K2=V2`) parsing as Go's `types.LoadArgs`, and access to
//! the config's `args.cni` section (CONVENTIONS.md).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::CniError;

/// Parsed `CNI_ARGS`: ordered key/value pairs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CniArgs {
    pairs: Vec<(String, String)>,
}

impl CniArgs {
    /// Parses `K=V;K2=V2`. Every pair must have exactly one `=`, like Go's
    /// `LoadArgs` ("ARGS: invalid pair"); an empty string has no pairs.
    pub fn parse(raw: &str) -> Result<Self, CniError> {
        if raw.is_empty() {
            return Ok(Self::default());
        }
        let mut pairs = Vec::new();
        for pair in raw.split(';') {
            let mut kv = pair.split('=');
            match (kv.next(), kv.next(), kv.next()) {
                (Some(k), Some(v), None) => pairs.push((k.to_string(), v.to_string())),
                _ => return Err(CniError::generic(format!("ARGS: invalid pair {pair:?}"))),
            }
        }
        Ok(Self { pairs })
    }

    /// The value of `key` (the last one when repeated).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// All pairs in order.
    pub fn pairs(&self) -> &[(String, String)] {
        &self.pairs
    }

    /// Whether `IgnoreUnknown` is `1` or `true` (any case), as Go's
    /// `UnmarshallableBool`; other values count as false here and are
    /// rejected by [`CniArgs::check_known`].
    pub fn ignore_unknown(&self) -> bool {
        matches!(
            parse_go_bool(self.get("IgnoreUnknown").unwrap_or("")),
            Some(true)
        )
    }

    /// Fails on keys outside `known` unless `IgnoreUnknown` is true, with the
    /// messages of Go's `LoadArgs` (`ARGS: unknown args ["FOO=1"]`).
    pub fn check_known(&self, known: &[&str]) -> Result<(), CniError> {
        if let Some(v) = self.get("IgnoreUnknown") {
            if parse_go_bool(v).is_none() {
                return Err(CniError::generic(format!(
                    "ARGS: error parsing value of pair \"IgnoreUnknown={v}\": boolean unmarshal error: invalid input {}",
                    v.to_lowercase()
                )));
            }
        }
        let unknown: Vec<String> = self
            .pairs
            .iter()
            .filter(|(k, _)| k != "IgnoreUnknown" && !known.contains(&k.as_str()))
            .map(|(k, v)| format!("{:?}", format!("{k}={v}")))
            .collect();
        if unknown.is_empty() || self.ignore_unknown() {
            return Ok(());
        }
        Err(CniError::generic(format!(
            "ARGS: unknown args [{}]",
            unknown.join(" ")
        )))
    }

    /// Renders back to `K=V;K2=V2`.
    pub fn to_env_string(&self) -> String {
        self.pairs
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(";")
    }
}

/// Go's `UnmarshallableBool`: `1`/`true`/`0`/`false`, any case.
fn parse_go_bool(v: &str) -> Option<bool> {
    match v.to_lowercase().as_str() {
        "1" | "true" => Some(true),
        "0" | "false" => Some(false),
        _ => None,
    }
}

/// The `args.cni` section of a config (`{"args":{"cni":{"ips":[..]}}}`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ArgsCni {
    /// Requested IPs (CIDR strings; validated by the IPAM plugin).
    #[serde(
        default,
        deserialize_with = "crate::nullable::nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub ips: Vec<String>,
    /// Every other key, preserved.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Extracts `args.cni` from a config's `args` value; `None` when absent.
pub fn args_cni(args: Option<&Value>) -> Result<Option<ArgsCni>, CniError> {
    match args.and_then(|a| a.get("cni")) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => serde_json::from_value(v.clone())
            .map(Some)
            .map_err(|e| CniError::decode(format!("failed to parse args.cni: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parse_pairs() {
        let a = CniArgs::parse("IP=198.51.100.2/24;K8S_POD_NAME=p;IgnoreUnknown=1").unwrap();
        assert_eq!(a.get("IP"), Some("198.51.100.2/24"));
        assert_eq!(a.get("K8S_POD_NAME"), Some("p"));
        assert!(a.ignore_unknown());
        assert_eq!(a.pairs().len(), 3);
        assert_eq!(
            a.to_env_string(),
            "IP=198.51.100.2/24;K8S_POD_NAME=p;IgnoreUnknown=1"
        );
    }

    #[test]
    fn order_free_and_empty() {
        let a = CniArgs::parse("B=2;A=1").unwrap();
        assert_eq!((a.get("A"), a.get("B")), (Some("1"), Some("2")));
        assert!(CniArgs::parse("").unwrap().pairs().is_empty());
    }

    #[test]
    fn invalid_pairs() {
        assert_eq!(
            CniArgs::parse("A").unwrap_err().msg,
            r#"ARGS: invalid pair "A""#
        );
        assert!(CniArgs::parse("A=1;").is_err());
        assert!(CniArgs::parse("A=1=2").is_err());
    }

    #[test]
    fn unknown_keys() {
        let a = CniArgs::parse("IP=1;FOO=2;BAR=3").unwrap();
        let e = a.check_known(&["IP"]).unwrap_err();
        assert_eq!(e.msg, r#"ARGS: unknown args ["FOO=2" "BAR=3"]"#);
        let a = CniArgs::parse("IP=1;FOO=2;IgnoreUnknown=TRUE").unwrap();
        assert!(a.check_known(&["IP"]).is_ok());
        let a = CniArgs::parse("IgnoreUnknown=0;IP=1").unwrap();
        assert!(!a.ignore_unknown());
        assert!(a.check_known(&["IP"]).is_ok());
        let a = CniArgs::parse("IgnoreUnknown=yes;FOO=1").unwrap();
        assert_eq!(
            a.check_known(&[]).unwrap_err().msg,
            r#"ARGS: error parsing value of pair "IgnoreUnknown=yes": boolean unmarshal error: invalid input yes"#
        );
    }

    #[test]
    fn args_cni_section() {
        let v = json!({"cni": {"ips": ["198.51.100.5/24"], "other": 1}});
        let a = args_cni(Some(&v)).unwrap().unwrap();
        assert_eq!(a.ips, vec!["198.51.100.5/24"]);
        assert_eq!(a.extra.get("other"), Some(&json!(1)));
        assert!(args_cni(None).unwrap().is_none());
        assert!(args_cni(Some(&json!({"k8s": 1}))).unwrap().is_none());
        assert_eq!(
            args_cni(Some(&json!({"cni": {"ips": 3}})))
                .unwrap_err()
                .code,
            6
        );
    }
}
