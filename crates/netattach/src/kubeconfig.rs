//! Where and how to reach the API server: a kubeconfig file (YAML or JSON,
//! as written by the agent or `kubectl`) or the in-cluster service-account
//! environment. Token files are named, not read, here: [`ClientConfig::bearer_token`]
//! reads them on every request so rotated bound tokens keep working (the
//! Multus thin-plugin outage after one hour).

use std::path::{Path, PathBuf};

use base64::Engine;
use serde::Deserialize;

/// Default service-account mount inside a pod.
pub const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// Why a client configuration could not be built or used.
#[derive(Debug, thiserror::Error)]
pub enum KubeconfigError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("parsing kubeconfig {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("kubeconfig {path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("in-cluster config: {0}")]
    InCluster(String),
}

/// The bearer token source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    Static(String),
    /// Re-read on every request.
    File(PathBuf),
}

/// A client certificate and key, PEM.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientIdentity {
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
}

impl std::fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientIdentity { .. }")
    }
}

/// Everything needed to talk to one API server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// `https://host:port` or (tests) `http://127.0.0.1:port`, no trailing slash.
    pub server: String,
    /// PEM bundle of CAs to trust; `None` uses the built-in web roots.
    pub ca_pem: Option<Vec<u8>>,
    pub insecure_skip_tls_verify: bool,
    /// SNI / verification name overriding the server host.
    pub tls_server_name: Option<String>,
    pub token: Option<TokenSource>,
    pub identity: Option<ClientIdentity>,
    /// Namespace of the current context, when set.
    pub namespace: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Kubeconfig {
    #[serde(rename = "current-context", default)]
    current_context: String,
    #[serde(default)]
    clusters: Vec<Named<Cluster>>,
    #[serde(default)]
    users: Vec<NamedUser>,
    #[serde(default)]
    contexts: Vec<Named<Context>>,
}

#[derive(Debug, Deserialize)]
struct Named<T> {
    name: String,
    #[serde(alias = "cluster", alias = "context")]
    value: T,
}

#[derive(Debug, Deserialize)]
struct NamedUser {
    name: String,
    #[serde(default)]
    user: User,
}

#[derive(Debug, Default, Deserialize)]
struct Cluster {
    #[serde(default)]
    server: String,
    #[serde(rename = "certificate-authority", default)]
    certificate_authority: Option<PathBuf>,
    #[serde(rename = "certificate-authority-data", default)]
    certificate_authority_data: Option<String>,
    #[serde(rename = "insecure-skip-tls-verify", default)]
    insecure_skip_tls_verify: bool,
    #[serde(rename = "tls-server-name", default)]
    tls_server_name: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct User {
    #[serde(default)]
    token: Option<String>,
    #[serde(rename = "tokenFile", default)]
    token_file: Option<PathBuf>,
    #[serde(rename = "client-certificate", default)]
    client_certificate: Option<PathBuf>,
    #[serde(rename = "client-certificate-data", default)]
    client_certificate_data: Option<String>,
    #[serde(rename = "client-key", default)]
    client_key: Option<PathBuf>,
    #[serde(rename = "client-key-data", default)]
    client_key_data: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct Context {
    #[serde(default)]
    cluster: String,
    #[serde(default)]
    user: String,
    #[serde(default)]
    namespace: Option<String>,
}

fn read(path: &Path) -> Result<Vec<u8>, KubeconfigError> {
    std::fs::read(path).map_err(|source| KubeconfigError::Read {
        path: path.to_owned(),
        source,
    })
}

impl ClientConfig {
    /// Loads a kubeconfig file; relative file references resolve against
    /// the file's directory, as kubectl does.
    pub fn from_kubeconfig_file(path: &Path) -> Result<Self, KubeconfigError> {
        let text = read(path)?;
        let text = String::from_utf8_lossy(&text);
        let base = path.parent().unwrap_or(Path::new("/"));
        Self::from_kubeconfig_str(&text, base, path)
    }

    /// Parses kubeconfig text (YAML, or JSON which YAML accepts). `origin`
    /// only names the source in errors.
    pub fn from_kubeconfig_str(
        text: &str,
        base_dir: &Path,
        origin: &Path,
    ) -> Result<Self, KubeconfigError> {
        let invalid = |message: String| KubeconfigError::Invalid {
            path: origin.to_owned(),
            message,
        };
        let kc: Kubeconfig = serde_norway::from_str(text).map_err(|e| KubeconfigError::Parse {
            path: origin.to_owned(),
            message: e.to_string(),
        })?;
        let ctx = if kc.current_context.is_empty() {
            match kc.contexts.as_slice() {
                [only] => &only.value,
                _ => return Err(invalid("no current-context".into())),
            }
        } else {
            &kc.contexts
                .iter()
                .find(|c| c.name == kc.current_context)
                .ok_or_else(|| invalid(format!("context {:?} not found", kc.current_context)))?
                .value
        };
        let cluster = &kc
            .clusters
            .iter()
            .find(|c| c.name == ctx.cluster)
            .ok_or_else(|| invalid(format!("cluster {:?} not found", ctx.cluster)))?
            .value;
        let default_user = User::default();
        let user = if ctx.user.is_empty() {
            &default_user
        } else {
            &kc.users
                .iter()
                .find(|u| u.name == ctx.user)
                .ok_or_else(|| invalid(format!("user {:?} not found", ctx.user)))?
                .user
        };
        if cluster.server.is_empty() {
            return Err(invalid(format!("cluster {:?} has no server", ctx.cluster)));
        }
        let pem = |field: &str, data: &Option<String>, file: &Option<PathBuf>| {
            inline_or_file(field, data.as_deref(), file.as_deref(), base_dir)
                .map_err(|e| e.or_invalid(origin))
        };
        let ca_pem = pem(
            "certificate-authority-data",
            &cluster.certificate_authority_data,
            &cluster.certificate_authority,
        )?;
        // A token file wins over an inline token: it is the one that rotates.
        let token = match (&user.token_file, &user.token) {
            (Some(path), _) => Some(TokenSource::File(resolve_path(base_dir, path))),
            (None, Some(t)) if !t.is_empty() => Some(TokenSource::Static(t.clone())),
            _ => None,
        };
        let cert = pem(
            "client-certificate-data",
            &user.client_certificate_data,
            &user.client_certificate,
        )?;
        let key = pem("client-key-data", &user.client_key_data, &user.client_key)?;
        let identity = match (cert, key) {
            (Some(cert_pem), Some(key_pem)) => Some(ClientIdentity { cert_pem, key_pem }),
            (None, None) => None,
            _ => {
                return Err(invalid(
                    "client certificate without key (or key without certificate)".into(),
                ))
            }
        };
        Ok(Self {
            server: cluster.server.trim_end_matches('/').to_owned(),
            ca_pem,
            insecure_skip_tls_verify: cluster.insecure_skip_tls_verify,
            tls_server_name: cluster.tls_server_name.clone(),
            token,
            identity,
            namespace: ctx.namespace.clone(),
        })
    }

    /// The kubeconfig at `path` when one is configured, else the in-cluster
    /// service-account config (what Multus does with its `kubeconfig` key).
    pub fn from_kubeconfig_or_in_cluster(path: Option<&Path>) -> Result<Self, KubeconfigError> {
        match path {
            Some(p) => Self::from_kubeconfig_file(p),
            None => Self::in_cluster(),
        }
    }

    /// In-cluster config from `KUBERNETES_SERVICE_HOST`/`_PORT` and the
    /// mounted service account.
    pub fn in_cluster() -> Result<Self, KubeconfigError> {
        let host = std::env::var("KUBERNETES_SERVICE_HOST").unwrap_or_default();
        let port = std::env::var("KUBERNETES_SERVICE_PORT").unwrap_or_default();
        Self::in_cluster_from(&host, &port, Path::new(SERVICE_ACCOUNT_DIR))
    }

    /// [`Self::in_cluster`] with explicit inputs (testable).
    pub fn in_cluster_from(host: &str, port: &str, sa_dir: &Path) -> Result<Self, KubeconfigError> {
        if host.is_empty() || port.is_empty() {
            return Err(KubeconfigError::InCluster(
                "KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT must be set".into(),
            ));
        }
        let token = sa_dir.join("token");
        if !token.exists() {
            return Err(KubeconfigError::InCluster(format!(
                "{} missing",
                token.display()
            )));
        }
        let ca = sa_dir.join("ca.crt");
        let ca_pem = if ca.exists() { Some(read(&ca)?) } else { None };
        let namespace = std::fs::read_to_string(sa_dir.join("namespace"))
            .ok()
            .map(|s| s.trim().to_owned());
        // IPv6 service hosts need brackets in a URL.
        let host = if host.contains(':') {
            format!("[{host}]")
        } else {
            host.to_owned()
        };
        Ok(Self {
            server: format!("https://{host}:{port}"),
            ca_pem,
            insecure_skip_tls_verify: false,
            tls_server_name: None,
            token: Some(TokenSource::File(token)),
            identity: None,
            namespace,
        })
    }

    /// The bearer token to send now; token files are read fresh each call.
    pub fn bearer_token(&self) -> Result<Option<String>, KubeconfigError> {
        match &self.token {
            None => Ok(None),
            Some(TokenSource::Static(t)) => Ok(Some(t.clone())),
            Some(TokenSource::File(path)) => {
                let raw = read(path)?;
                let token = String::from_utf8_lossy(&raw).trim().to_owned();
                Ok((!token.is_empty()).then_some(token))
            }
        }
    }

    /// True for `https://` servers (the only ones needing a TLS config).
    pub fn is_https(&self) -> bool {
        self.server.starts_with("https://")
    }
}

/// A relative path in a kubeconfig is relative to the kubeconfig's directory.
fn resolve_path(base_dir: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base_dir.join(p)
    }
}

/// Why [`inline_or_file`] failed: bad base64 (named by field) or a read error.
enum PemError {
    Base64(String),
    Read(KubeconfigError),
}

impl PemError {
    fn or_invalid(self, origin: &Path) -> KubeconfigError {
        match self {
            Self::Base64(message) => KubeconfigError::Invalid {
                path: origin.to_owned(),
                message,
            },
            Self::Read(e) => e,
        }
    }
}

/// A PEM given inline as base64 (`*-data`, which wins) or as a file.
fn inline_or_file(
    field: &str,
    data: Option<&str>,
    file: Option<&Path>,
    base_dir: &Path,
) -> Result<Option<Vec<u8>>, PemError> {
    match (data, file) {
        (Some(data), _) => base64::engine::general_purpose::STANDARD
            .decode(data.trim())
            .map(Some)
            .map_err(|e| PemError::Base64(format!("{field}: {e}"))),
        (None, Some(path)) => read(&resolve_path(base_dir, path))
            .map(Some)
            .map_err(PemError::Read),
        (None, None) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const YAML: &str = r#"
apiVersion: v1
kind: Config
clusters:
- name: other
  cluster:
    server: https://203.0.113.9:6443
- name: local
  cluster:
    server: https://198.51.100.10:6443/
    certificate-authority-data: LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCg==
    tls-server-name: kubernetes
users:
- name: plexus
  user:
    tokenFile: token
    token: ignored-inline
contexts:
- name: plexus-context
  context:
    cluster: local
    user: plexus
    namespace: kube-system
current-context: plexus-context
"#;

    #[test]
    fn yaml_kubeconfig_with_token_file_reread_each_call() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("token"), "first\n").unwrap();
        let cfg = ClientConfig::from_kubeconfig_str(YAML, dir.path(), Path::new("k")).unwrap();
        assert_eq!(cfg.server, "https://198.51.100.10:6443");
        assert_eq!(
            cfg.ca_pem.as_deref(),
            Some(&b"-----BEGIN CERTIFICATE-----\n"[..])
        );
        assert_eq!(cfg.tls_server_name.as_deref(), Some("kubernetes"));
        assert_eq!(cfg.namespace.as_deref(), Some("kube-system"));
        assert_eq!(cfg.token, Some(TokenSource::File(dir.path().join("token"))));
        assert_eq!(cfg.bearer_token().unwrap().as_deref(), Some("first"));
        std::fs::write(dir.path().join("token"), "second").unwrap();
        assert_eq!(cfg.bearer_token().unwrap().as_deref(), Some("second"));
        assert!(cfg.is_https());
    }

    #[test]
    fn json_kubeconfig_with_client_cert_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("c.pem"), "CERT").unwrap();
        std::fs::write(dir.path().join("ca.pem"), "CA").unwrap();
        let json = r#"{"clusters":[{"name":"c","cluster":{"server":"http://127.0.0.1:1","certificate-authority":"ca.pem","insecure-skip-tls-verify":true}}],
            "users":[{"name":"u","user":{"client-certificate":"c.pem","client-key-data":"S0VZ"}}],
            "contexts":[{"name":"x","context":{"cluster":"c","user":"u"}}],"current-context":"x"}"#;
        let path = dir.path().join("kubeconfig");
        std::fs::write(&path, json).unwrap();
        let cfg = ClientConfig::from_kubeconfig_file(&path).unwrap();
        let id = cfg.identity.clone().unwrap();
        assert_eq!(id.cert_pem, b"CERT");
        assert_eq!(id.key_pem, b"KEY");
        assert_eq!(cfg.ca_pem.as_deref(), Some(&b"CA"[..]));
        assert!(cfg.insecure_skip_tls_verify);
        assert!(!cfg.is_https());
        assert_eq!(cfg.bearer_token().unwrap(), None);
    }

    #[test]
    fn errors_name_the_missing_piece() {
        let dir = tempfile::tempdir().unwrap();
        let bad = YAML.replace("current-context: plexus-context", "current-context: nope");
        let err = ClientConfig::from_kubeconfig_str(&bad, dir.path(), Path::new("k")).unwrap_err();
        assert!(err.to_string().contains("\"nope\""), "{err}");
        let err = ClientConfig::from_kubeconfig_str("clusters: [", dir.path(), Path::new("k"))
            .unwrap_err();
        assert!(matches!(err, KubeconfigError::Parse { .. }));
        let cfg = ClientConfig::from_kubeconfig_str(YAML, dir.path(), Path::new("k")).unwrap();
        assert!(
            matches!(cfg.bearer_token(), Err(KubeconfigError::Read { .. })),
            "token file missing"
        );
    }

    #[test]
    fn in_cluster_from_service_account_dir() {
        let dir = tempfile::tempdir().unwrap();
        assert!(ClientConfig::in_cluster_from("", "443", dir.path()).is_err());
        assert!(ClientConfig::in_cluster_from("198.51.100.1", "443", dir.path()).is_err());
        std::fs::write(dir.path().join("token"), "sa-token").unwrap();
        std::fs::write(dir.path().join("ca.crt"), "CA").unwrap();
        std::fs::write(dir.path().join("namespace"), "kube-system").unwrap();
        let cfg = ClientConfig::in_cluster_from("fd00::1", "443", dir.path()).unwrap();
        assert_eq!(cfg.server, "https://[fd00::1]:443");
        assert_eq!(cfg.bearer_token().unwrap().as_deref(), Some("sa-token"));
        assert_eq!(cfg.namespace.as_deref(), Some("kube-system"));
    }
}
