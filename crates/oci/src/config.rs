//! API-key credentials from an OCI CLI/SDK config file (`~/.oci/config`,
//! INI with `[PROFILE]` sections), for running the operator outside OCI.
//! The keyId is `<tenancy>/<user>/<fingerprint>` (oci.md §3.5); the
//! configured fingerprint is checked against the key so a mismatch fails
//! here, not as an opaque 401 from the service.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rsa::RsaPublicKey;

use crate::auth::{AuthError, CredentialSource};
use crate::keys::{fingerprint, private_key_from_pem, Credentials};

/// One profile of an OCI config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyProfile {
    pub user: String,
    pub tenancy: String,
    pub fingerprint: String,
    pub region: String,
    pub key_file: PathBuf,
}

/// Parses `text` and returns profile `profile`; keys missing from it are
/// taken from `[DEFAULT]` as the SDKs do. `~/` in `key_file` is expanded
/// against `home`, and a relative path against the config's directory.
pub fn parse_profile(
    text: &str,
    profile: &str,
    config_dir: &Path,
    home: &Path,
) -> Result<ApiKeyProfile, AuthError> {
    let mut sections: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut current = String::new();
    for (no, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            current = name.trim().to_owned();
            sections.entry(current.clone()).or_default();
            continue;
        }
        let (k, v) = line
            .split_once('=')
            .ok_or_else(|| AuthError::Config(format!("line {}: expected key=value", no + 1)))?;
        sections
            .entry(current.clone())
            .or_default()
            .insert(k.trim().to_owned(), v.trim().to_owned());
    }
    let empty = BTreeMap::new();
    let defaults = sections.get("DEFAULT").unwrap_or(&empty);
    let own = sections
        .get(profile)
        .ok_or_else(|| AuthError::Config(format!("profile [{profile}] not found")))?;
    let get = |key: &str| {
        own.get(key)
            .or_else(|| defaults.get(key))
            .cloned()
            .ok_or_else(|| AuthError::Config(format!("profile [{profile}] has no {key}")))
    };
    if own.contains_key("pass_phrase") || defaults.contains_key("pass_phrase") {
        return Err(AuthError::Config(
            "pass_phrase-protected keys are not supported; decrypt the key file".into(),
        ));
    }
    let key_file = get("key_file")?;
    let key_file = match key_file.strip_prefix("~/") {
        Some(rest) => home.join(rest),
        None => config_dir.join(key_file),
    };
    Ok(ApiKeyProfile {
        user: get("user")?,
        tenancy: get("tenancy")?,
        fingerprint: get("fingerprint")?,
        region: get("region")?,
        key_file,
    })
}

/// Signs with a user's API key.
#[derive(Debug)]
pub struct ApiKeySource {
    credentials: Credentials,
    region: String,
}

impl ApiKeySource {
    /// Loads `profile` from the config file at `path`.
    pub fn from_file(path: &Path, profile: &str, home: &Path) -> Result<Self, AuthError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| AuthError::Config(format!("{}: {e}", path.display())))?;
        let dir = path.parent().unwrap_or(Path::new("."));
        Self::from_profile(parse_profile(&text, profile, dir, home)?)
    }

    /// Reads the key the profile names and checks its fingerprint.
    pub fn from_profile(p: ApiKeyProfile) -> Result<Self, AuthError> {
        let pem = std::fs::read_to_string(&p.key_file)
            .map_err(|e| AuthError::Config(format!("key_file {}: {e}", p.key_file.display())))?;
        let key = private_key_from_pem(&pem)?;
        let actual = fingerprint(&RsaPublicKey::from(&key))?;
        if !actual.eq_ignore_ascii_case(&p.fingerprint) {
            return Err(AuthError::Config(format!(
                "fingerprint {} in the config does not match key_file {} ({actual})",
                p.fingerprint,
                p.key_file.display()
            )));
        }
        Ok(Self {
            credentials: Credentials {
                key_id: format!("{}/{}/{}", p.tenancy, p.user, p.fingerprint),
                key: Arc::new(key),
            },
            region: p.region,
        })
    }
}

impl CredentialSource for ApiKeySource {
    fn credentials(&self) -> Result<Credentials, AuthError> {
        Ok(self.credentials.clone())
    }

    fn region(&self) -> Result<String, AuthError> {
        Ok(self.region.clone())
    }

    fn invalidate(&self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = "# comment\n[DEFAULT]\nuser=ocid1.user.oc1..u\nfingerprint=aa:bb\nkey_file=~/.oci/key.pem\ntenancy=ocid1.tenancy.oc1..t\nregion=us-phoenix-1\n\n[OTHER]\nuser = ocid1.user.oc1..other\nkey_file = keys/other.pem\n";

    #[test]
    fn profiles_inherit_default_and_expand_paths() {
        let home = Path::new("/home/me");
        let dir = Path::new("/home/me/.oci");
        let d = parse_profile(CONFIG, "DEFAULT", dir, home).unwrap();
        assert_eq!(d.key_file, Path::new("/home/me/.oci/key.pem"));
        assert_eq!(d.region, "us-phoenix-1");
        let o = parse_profile(CONFIG, "OTHER", dir, home).unwrap();
        assert_eq!(o.user, "ocid1.user.oc1..other");
        assert_eq!(o.tenancy, "ocid1.tenancy.oc1..t");
        assert_eq!(o.key_file, Path::new("/home/me/.oci/keys/other.pem"));
        assert!(matches!(
            parse_profile(CONFIG, "NOPE", dir, home),
            Err(AuthError::Config(_))
        ));
        let locked = format!("{CONFIG}pass_phrase=x\n");
        assert!(parse_profile(&locked, "OTHER", dir, home).is_err());
    }
}
