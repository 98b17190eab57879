//! The TOML configuration file and its validated, resolved form.
//!
//! Relative paths are resolved against the directory of the configuration file. Secrets (the
//! token PIN and the SigV4 secret access keys) may come from the file, another file or an
//! environment variable, never from the command line; once read they are held in zeroize-on-drop
//! strings and never logged.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use zeroize::Zeroizing;

/// Suffix every key store URI path must end with.
pub const URI_PATH_SUFFIX: &str = "/kms/xks/v1";
/// Default label of the deep-health-check key.
pub const DEFAULT_HEALTH_KEY_LABEL: &str = "xks-proxy-health-check";
/// Default environment variable holding the token user PIN.
pub const DEFAULT_PIN_ENV: &str = "XKS_PROXY_PIN";

fn yes() -> bool {
    true
}

fn default_health_cache() -> u64 {
    30
}

fn default_fleet_size() -> u32 {
    1
}

fn default_health_label() -> String {
    DEFAULT_HEALTH_KEY_LABEL.to_owned()
}

fn default_hsm_timeout() -> u64 {
    5000
}

fn default_key_state_max_age() -> u64 {
    1000
}

fn default_pool() -> usize {
    kms_hsm::DEFAULT_POOL_SIZE
}

/// The file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// `host:port` to listen on (HTTPS).
    pub listen: String,
    /// Global kill switch: `false` refuses every Encrypt and Decrypt.
    #[serde(default = "yes")]
    pub crypto_enabled: bool,
    /// TLS.
    pub tls: TlsFile,
    /// The PKCS#11 token.
    pub hsm: HsmFile,
    /// Deep health check.
    #[serde(default)]
    pub health: HealthFile,
    /// Audit log.
    pub audit: AuditFile,
    /// Connection and request limits.
    #[serde(default)]
    pub limits: LimitsFile,
    /// The key stores served (at least one).
    #[serde(rename = "key_store", default)]
    pub key_stores: Vec<KeyStoreFile>,
}

/// `[tls]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFile {
    /// Server certificate chain (PEM).
    pub cert: PathBuf,
    /// Server private key (PEM).
    pub key: PathBuf,
    /// CA bundle (PEM) for client certificates: setting it requires mutual TLS.
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
    /// Accepted client certificate subject common names (required with `client_ca`).
    #[serde(default)]
    pub client_cns: Vec<String>,
}

/// `[hsm]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HsmFile {
    /// PKCS#11 module path.
    pub module: PathBuf,
    /// Token label.
    pub token_label: String,
    /// File holding the user PIN (trailing newline ignored).
    #[serde(default)]
    pub pin_file: Option<PathBuf>,
    /// Environment variable holding the user PIN (default `XKS_PROXY_PIN`).
    #[serde(default)]
    pub pin_env: Option<String>,
    /// Maximum concurrent PKCS#11 sessions.
    #[serde(default = "default_pool")]
    pub sessions: usize,
    /// Time limit of one HSM call in milliseconds (then 503 DependencyTimeoutException).
    #[serde(default = "default_hsm_timeout")]
    pub timeout_ms: u64,
    /// Where HSM calls run (see [`HsmCalls`]).
    #[serde(default)]
    pub calls: HsmCalls,
    /// How long (ms) a key state read from the token may allow Encrypt and Decrypt before it is
    /// read again (see `key_state_cache`); 0 reads it at every call.
    #[serde(default = "default_key_state_max_age")]
    pub key_state_max_age_ms: u64,
}

/// Where the proxy runs its PKCS#11 calls (`hsm.calls`).
#[derive(Debug, Deserialize, Clone, Copy, Default, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum HsmCalls {
    /// On a blocking thread, within `hsm.timeout_ms` (an HSM that hangs costs one thread and
    /// answers 503). The default: right for network HSMs.
    #[default]
    BlockingPool,
    /// On the request's own async worker thread: no thread hand-off per call (about a third of
    /// the proxy's CPU per Encrypt on SoftHSM2), but no time limit either. For in-process
    /// software tokens such as SoftHSM2, whose calls take microseconds.
    Inline,
}

/// `[health]`.
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct HealthFile {
    /// Label of the dedicated test key used by the deep health check.
    #[serde(default = "default_health_label")]
    pub key_label: String,
    /// Create the test key at start if it is missing.
    #[serde(default = "yes")]
    pub create_key: bool,
    /// How long a deep health result is reused (seconds, at most 60).
    #[serde(default = "default_health_cache")]
    pub cache_secs: u64,
    /// `xksProxyFleetSize` reported.
    #[serde(default = "default_fleet_size")]
    pub fleet_size: u32,
}

impl Default for HealthFile {
    fn default() -> Self {
        HealthFile {
            key_label: default_health_label(),
            create_key: true,
            cache_secs: default_health_cache(),
            fleet_size: default_fleet_size(),
        }
    }
}

/// `[limits]`: what one client may hold of the proxy (all optional).
#[derive(Debug, Deserialize, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LimitsFile {
    /// Seconds a connection may stay open with no request in progress.
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout_secs: u64,
    /// Seconds a client has to send one request's headers.
    #[serde(default = "default_header_timeout")]
    pub header_timeout_secs: u64,
    /// Seconds a client has to send one request's whole body.
    #[serde(default = "default_body_timeout")]
    pub body_timeout_secs: u64,
    /// Most connections open at once (the longest-idle one is closed for a new one).
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Most connections open at once from one address (IPv6: one /64); 0: no limit.
    #[serde(default = "default_max_connections_per_ip")]
    pub max_connections_per_ip: usize,
    /// MiB that request bodies not yet authenticated may hold together.
    #[serde(default = "default_body_budget_mib")]
    pub max_unauthenticated_body_mib: usize,
}

fn default_idle_timeout() -> u64 {
    kms_serve::DEFAULT_IDLE_TIMEOUT.as_secs()
}

fn default_header_timeout() -> u64 {
    kms_serve::DEFAULT_HEADER_READ_TIMEOUT.as_secs()
}

fn default_body_timeout() -> u64 {
    10
}

fn default_max_connections() -> usize {
    kms_serve::DEFAULT_MAX_CONNECTIONS
}

fn default_max_connections_per_ip() -> usize {
    kms_serve::DEFAULT_MAX_CONNECTIONS_PER_IP
}

fn default_body_budget_mib() -> usize {
    16
}

impl Default for LimitsFile {
    fn default() -> Self {
        LimitsFile {
            idle_timeout_secs: default_idle_timeout(),
            header_timeout_secs: default_header_timeout(),
            body_timeout_secs: default_body_timeout(),
            max_connections: default_max_connections(),
            max_connections_per_ip: default_max_connections_per_ip(),
            max_unauthenticated_body_mib: default_body_budget_mib(),
        }
    }
}

impl LimitsFile {
    fn validate(&self) -> Result<(), String> {
        for (name, v) in [
            ("idle_timeout_secs", self.idle_timeout_secs),
            ("header_timeout_secs", self.header_timeout_secs),
            ("body_timeout_secs", self.body_timeout_secs),
            ("max_connections", self.max_connections as u64),
            (
                "max_unauthenticated_body_mib",
                self.max_unauthenticated_body_mib as u64,
            ),
        ] {
            if v == 0 {
                return Err(format!("limits.{name} must be at least 1"));
            }
        }
        Ok(())
    }

    /// The listener's connection limits.
    pub fn connection_limits(&self) -> kms_serve::ConnectionLimits {
        kms_serve::ConnectionLimits {
            header_read_timeout: std::time::Duration::from_secs(self.header_timeout_secs),
            idle_timeout: std::time::Duration::from_secs(self.idle_timeout_secs),
            max_connections: self.max_connections,
            max_connections_per_ip: self.max_connections_per_ip,
        }
    }
}

/// `[audit]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditFile {
    /// Directory of the audit files.
    pub dir: PathBuf,
    /// PKCS#8 DER file of the audit signing key (ECDSA P-256); created (mode 0600) if missing.
    /// Default: `<dir>/../xks-proxy-audit-key.pk8`.
    #[serde(default)]
    pub signing_key: Option<PathBuf>,
}

/// `[[key_store]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyStoreFile {
    /// Name (for logs and audit records).
    pub name: String,
    /// The XksProxyUriPath: `[/<prefix>]/kms/xks/v1`.
    #[serde(alias = "path_prefix")]
    pub uri_path: String,
    /// SigV4 region accepted in the credential scope (the KMS key store's region).
    pub region: String,
    /// Per-store kill switch (both this and the global switch must be on for crypto).
    #[serde(default = "yes")]
    pub crypto_enabled: bool,
    /// Optional request quota (429 ThrottlingException above it).
    #[serde(default)]
    pub max_requests_per_second: Option<u32>,
    /// SigV4 credentials accepted (at least one; two during a rotation).
    #[serde(default)]
    pub credentials: Vec<CredentialFile>,
    /// External keys: a list of ids (the token key label is the id) or a table id = label.
    #[serde(default)]
    pub keys: KeysFile,
    /// Secondary authorisation rules over requestMetadata.
    #[serde(default)]
    pub rules: Vec<RuleFile>,
}

/// `keys = [...]` or `[key_store.keys] id = "label"`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum KeysFile {
    /// External key id = token key label.
    List(Vec<String>),
    /// External key id -> token key label.
    Map(BTreeMap<String, String>),
}

impl Default for KeysFile {
    fn default() -> Self {
        KeysFile::List(Vec::new())
    }
}

/// `[[key_store.credentials]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialFile {
    /// Access key id (20..30 characters `A-Z2-7`).
    pub access_key_id: String,
    /// Secret (43..64 characters `A-Za-z0-9+/=`), inline.
    #[serde(default)]
    pub secret_access_key: Option<String>,
    /// File holding the secret.
    #[serde(default)]
    pub secret_access_key_file: Option<PathBuf>,
    /// Environment variable holding the secret.
    #[serde(default)]
    pub secret_access_key_env: Option<String>,
}

/// `[[key_store.rules]]`: allows requests on `keys` that match every condition given.
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct RuleFile {
    /// Optional name, logged when the rule decides.
    #[serde(default)]
    pub name: Option<String>,
    /// External key ids this rule covers (`"*"`: every key of the store).
    pub keys: Vec<String>,
    /// `awsPrincipalArn` patterns (`*` matches any run of characters). Absent: any.
    #[serde(default)]
    pub principals: Option<Vec<String>>,
    /// `kmsOperation` values. Absent: any.
    #[serde(default)]
    pub operations: Option<Vec<String>>,
    /// `kmsKeyArn` patterns. Absent: any.
    #[serde(default)]
    pub kms_key_arns: Option<Vec<String>>,
    /// `kmsViaService` values. Absent: any (also none).
    #[serde(default)]
    pub via_services: Option<Vec<String>>,
    /// `awsSourceVpc` values. Absent: any (also none).
    #[serde(default)]
    pub source_vpcs: Option<Vec<String>>,
    /// `awsSourceVpce` values. Absent: any (also none).
    #[serde(default)]
    pub source_vpces: Option<Vec<String>>,
}

/// A SigV4 credential with its secret.
pub struct Credential {
    /// Access key id.
    pub access_key_id: String,
    /// Secret access key.
    pub secret: Zeroizing<String>,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

/// A validated key store.
#[derive(Debug)]
pub struct KeyStore {
    /// Name.
    pub name: String,
    /// URI path (ends with `/kms/xks/v1`, no trailing slash).
    pub uri_path: String,
    /// Accepted SigV4 region.
    pub region: String,
    /// Per-store kill switch.
    pub crypto_enabled: bool,
    /// Optional quota.
    pub max_requests_per_second: Option<u32>,
    /// Credentials.
    pub credentials: Vec<Credential>,
    /// External key id -> token key label.
    pub keys: BTreeMap<String, String>,
    /// Authorisation rules.
    pub rules: Vec<RuleFile>,
}

/// Validated TLS settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// Certificate chain file.
    pub cert: PathBuf,
    /// Key file.
    pub key: PathBuf,
    /// Client CA bundle (mutual TLS) and accepted CNs.
    pub client: Option<(PathBuf, Vec<String>)>,
}

/// Validated HSM settings (without the PIN).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HsmSettings {
    /// Token.
    pub token: kms_hsm::TokenRef,
    /// Where the PIN comes from.
    pub pin_file: Option<PathBuf>,
    /// Environment variable of the PIN (if no file).
    pub pin_env: String,
    /// Session pool size.
    pub sessions: usize,
    /// Per-call time limit.
    pub timeout_ms: u64,
    /// Where calls run.
    pub calls: HsmCalls,
    /// How long a key state read from the token may allow operations.
    pub key_state_max_age_ms: u64,
}

impl HsmSettings {
    /// Reads the user PIN from its file or environment variable.
    pub fn read_pin(&self) -> Result<Zeroizing<String>, String> {
        let pin = match &self.pin_file {
            Some(f) => {
                let raw = Zeroizing::new(
                    std::fs::read_to_string(f)
                        .map_err(|e| format!("reading the PIN file {}: {e}", f.display()))?,
                );
                Zeroizing::new(raw.trim_end_matches(['\r', '\n']).to_owned())
            }
            None => Zeroizing::new(std::env::var(&self.pin_env).map_err(|_| {
                format!(
                    "no token PIN: set hsm.pin_file or the environment variable {}",
                    self.pin_env
                )
            })?),
        };
        if pin.is_empty() {
            return Err("the token PIN is empty".into());
        }
        Ok(pin)
    }
}

/// The whole validated configuration.
#[derive(Debug)]
pub struct Config {
    /// Listen address.
    pub listen: SocketAddr,
    /// Global kill switch.
    pub crypto_enabled: bool,
    /// TLS.
    pub tls: TlsSettings,
    /// HSM.
    pub hsm: HsmSettings,
    /// Health.
    pub health: HealthFile,
    /// Audit directory.
    pub audit_dir: PathBuf,
    /// Audit signing key file.
    pub audit_signing_key: PathBuf,
    /// Connection and request limits.
    pub limits: LimitsFile,
    /// Key stores.
    pub key_stores: Vec<KeyStore>,
}

fn resolve(base: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

/// `A-Z2-7`, 20..30 characters.
pub fn valid_access_key_id(s: &str) -> bool {
    (20..=30).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_uppercase() || (b'2'..=b'7').contains(&b))
}

/// `A-Za-z0-9+/=`, 43..64 characters.
pub fn valid_secret(s: &str) -> bool {
    (43..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/' || b == b'=')
}

/// `A-Z a-z 0-9 - . _`, 1..128 characters.
pub fn valid_external_key_id(s: &str) -> bool {
    (1..=128).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
}

fn valid_uri_path(s: &str) -> bool {
    s.len() <= 128
        && s.starts_with('/')
        && s.ends_with(URI_PATH_SUFFIX)
        && !s.contains("//")
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'/' || b == b'-' || b == b'_')
}

impl Config {
    /// Reads and validates the file.
    pub fn load(path: &Path) -> Result<Config, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("reading {}: {e}", path.display()))?;
        let base = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        Self::parse(&text, &base).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Parses and validates configuration text; relative paths are resolved against `base`.
    pub fn parse(text: &str, base: &Path) -> Result<Config, String> {
        let f: FileConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        let listen: SocketAddr = f
            .listen
            .parse()
            .map_err(|e| format!("listen = {:?}: {e}", f.listen))?;
        let client = match f.tls.client_ca {
            Some(ca) => {
                if f.tls.client_cns.is_empty() {
                    return Err(
                        "tls.client_ca is set: tls.client_cns must list the accepted client certificate subject CNs"
                            .into(),
                    );
                }
                Some((resolve(base, &ca), f.tls.client_cns.clone()))
            }
            None => {
                if !f.tls.client_cns.is_empty() {
                    return Err("tls.client_cns needs tls.client_ca".into());
                }
                None
            }
        };
        let tls = TlsSettings {
            cert: resolve(base, &f.tls.cert),
            key: resolve(base, &f.tls.key),
            client,
        };
        if f.hsm.token_label.is_empty() || f.hsm.token_label.len() > 32 {
            return Err("hsm.token_label must be 1..=32 bytes".into());
        }
        if f.hsm.pin_file.is_some() && f.hsm.pin_env.is_some() {
            return Err("give hsm.pin_file or hsm.pin_env, not both".into());
        }
        let hsm = HsmSettings {
            token: kms_hsm::TokenRef::new(resolve(base, &f.hsm.module), f.hsm.token_label.clone()),
            pin_file: f.hsm.pin_file.as_deref().map(|p| resolve(base, p)),
            pin_env: f
                .hsm
                .pin_env
                .clone()
                .unwrap_or_else(|| DEFAULT_PIN_ENV.to_owned()),
            sessions: f.hsm.sessions.max(1),
            timeout_ms: f.hsm.timeout_ms.max(1),
            calls: f.hsm.calls,
            key_state_max_age_ms: f.hsm.key_state_max_age_ms,
        };
        if hsm.key_state_max_age_ms > 60_000 {
            return Err("hsm.key_state_max_age_ms must be at most 60000".into());
        }
        if f.health.cache_secs > 60 {
            return Err("health.cache_secs must be at most 60 (the spec's limit)".into());
        }
        if f.health.fleet_size == 0 {
            return Err("health.fleet_size must be > 0".into());
        }
        if f.health.key_label.is_empty() || f.health.key_label.len() > 128 {
            return Err("health.key_label must be 1..=128 bytes".into());
        }
        let audit_dir = resolve(base, &f.audit.dir);
        let audit_signing_key = match &f.audit.signing_key {
            Some(p) => resolve(base, p),
            None => audit_dir
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_else(|| PathBuf::from("."))
                .join("xks-proxy-audit-key.pk8"),
        };
        f.limits.validate()?;
        if f.key_stores.is_empty() {
            return Err("at least one [[key_store]] is required".into());
        }
        let mut key_stores = Vec::new();
        for ks in f.key_stores {
            key_stores.push(Self::key_store(ks, base)?);
        }
        for (i, a) in key_stores.iter().enumerate() {
            for b in &key_stores[i + 1..] {
                if a.uri_path == b.uri_path {
                    return Err(format!(
                        "key stores {:?} and {:?} share the uri_path {}",
                        a.name, b.name, a.uri_path
                    ));
                }
                if a.name == b.name {
                    return Err(format!("two key stores are named {:?}", a.name));
                }
            }
        }
        Ok(Config {
            listen,
            crypto_enabled: f.crypto_enabled,
            tls,
            hsm,
            health: f.health,
            audit_dir,
            audit_signing_key,
            limits: f.limits,
            key_stores,
        })
    }

    fn key_store(ks: KeyStoreFile, base: &Path) -> Result<KeyStore, String> {
        let name = ks.name.clone();
        let err = |m: String| format!("key store {name:?}: {m}");
        if !valid_uri_path(&ks.uri_path) {
            return Err(err(format!(
                "uri_path {:?} must start with '/', end with {URI_PATH_SUFFIX}, be at most 128 characters of A-Z a-z 0-9 / - _",
                ks.uri_path
            )));
        }
        if ks.region.is_empty() {
            return Err(err("region is required".into()));
        }
        if ks.credentials.is_empty() {
            return Err(err(
                "at least one [[key_store.credentials]] is required".into()
            ));
        }
        if ks.max_requests_per_second == Some(0) {
            return Err(err("max_requests_per_second must be > 0".into()));
        }
        let mut credentials = Vec::new();
        for c in ks.credentials {
            if !valid_access_key_id(&c.access_key_id) {
                return Err(err(format!(
                    "access_key_id {:?} must be 20..30 characters A-Z 2-7",
                    c.access_key_id
                )));
            }
            let secret = match (&c.secret_access_key, &c.secret_access_key_file, &c.secret_access_key_env) {
                (Some(s), None, None) => Zeroizing::new(s.clone()),
                (None, Some(f), None) => {
                    let f = resolve(base, f);
                    let raw = Zeroizing::new(std::fs::read_to_string(&f).map_err(|e| {
                        err(format!("reading {}: {e}", f.display()))
                    })?);
                    Zeroizing::new(raw.trim().to_owned())
                }
                (None, None, Some(v)) => Zeroizing::new(std::env::var(v).map_err(|_| {
                    err(format!("environment variable {v} (secret of {}) is not set", c.access_key_id))
                })?),
                _ => {
                    return Err(err(format!(
                        "credential {}: give exactly one of secret_access_key, secret_access_key_file, secret_access_key_env",
                        c.access_key_id
                    )))
                }
            };
            if !valid_secret(&secret) {
                return Err(err(format!(
                    "the secret of {} must be 43..64 characters A-Z a-z 0-9 + / =",
                    c.access_key_id
                )));
            }
            if credentials
                .iter()
                .any(|x: &Credential| x.access_key_id == c.access_key_id)
            {
                return Err(err(format!(
                    "access key id {} given twice",
                    c.access_key_id
                )));
            }
            credentials.push(Credential {
                access_key_id: c.access_key_id,
                secret,
            });
        }
        let keys: BTreeMap<String, String> = match ks.keys {
            KeysFile::List(l) => {
                let mut m = BTreeMap::new();
                for k in l {
                    if m.insert(k.clone(), k.clone()).is_some() {
                        return Err(err(format!("key {k:?} listed twice")));
                    }
                }
                m
            }
            KeysFile::Map(m) => m,
        };
        for (id, label) in &keys {
            if !valid_external_key_id(id) {
                return Err(err(format!(
                    "external key id {id:?} must be 1..128 characters A-Z a-z 0-9 - . _"
                )));
            }
            if label.is_empty() || label.len() > kms_hsm::xks::MAX_XKS_LABEL_LEN {
                return Err(err(format!(
                    "token key label of {id:?} must be 1..=128 bytes"
                )));
            }
        }
        for (i, r) in ks.rules.iter().enumerate() {
            if r.keys.is_empty() {
                return Err(err(format!("rule {} lists no keys", i + 1)));
            }
            for k in &r.keys {
                if k != "*" && !keys.contains_key(k) {
                    return Err(err(format!(
                        "rule {} names the key {k:?}, which the store does not serve",
                        i + 1
                    )));
                }
            }
        }
        Ok(KeyStore {
            name: ks.name,
            uri_path: ks.uri_path,
            region: ks.region,
            crypto_enabled: ks.crypto_enabled,
            max_requests_per_second: ks.max_requests_per_second,
            credentials,
            keys,
            rules: ks.rules,
        })
    }

    /// The token key label for an external key id: from the first store serving it, else
    /// the id itself (for the key administration commands).
    pub fn label_for(&self, external_key_id: &str) -> String {
        self.key_stores
            .iter()
            .find_map(|s| s.keys.get(external_key_id).cloned())
            .unwrap_or_else(|| external_key_id.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
listen = "127.0.0.1:0"
[tls]
cert = "c.pem"
key = "k.pem"
[hsm]
module = "/usr/lib/softhsm/libsofthsm2.so"
token_label = "xks"
pin_file = "pin"
[audit]
dir = "audit"
[[key_store]]
name = "a"
uri_path = "/example/kms/xks/v1"
region = "us-east-1"
keys = ["foo", "bar"]
[[key_store.credentials]]
access_key_id = "ABCDEFGHIJKLMNOPQRST"
secret_access_key = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
[[key_store.rules]]
keys = ["foo"]
principals = ["arn:aws:iam::*:user/Alice"]
operations = ["Encrypt"]
"#;

    #[test]
    fn parses_and_resolves() {
        let c = Config::parse(BASE, Path::new("/etc/x")).unwrap();
        assert_eq!(c.tls.cert, PathBuf::from("/etc/x/c.pem"));
        assert_eq!(c.hsm.pin_file, Some(PathBuf::from("/etc/x/pin")));
        assert_eq!(
            c.audit_signing_key,
            PathBuf::from("/etc/x/xks-proxy-audit-key.pk8")
        );
        assert_eq!(c.key_stores[0].keys["foo"], "foo");
        assert!(c.crypto_enabled);
        assert_eq!(c.label_for("bar"), "bar");
    }

    #[test]
    fn rejects_bad_values() {
        for (from, to) in [
            ("ABCDEFGHIJKLMNOPQRST", "abcdefghijklmnopqrst"),
            ("ABCDEFGHIJKLMNOPQRST", "ABCD"),
            ("abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG", "short"),
            ("/example/kms/xks/v1", "/example/kms/xks/v2"),
            ("keys = [\"foo\"]", "keys = [\"f o\"]"),
            ("keys = [\"foo\", \"bar\"]", "keys = [\"bar\"]"),
            ("listen", "listen_typo"),
        ] {
            let text = BASE.replace(from, to);
            assert!(
                Config::parse(&text, Path::new("/")).is_err(),
                "{from} -> {to}"
            );
        }
    }

    #[test]
    fn limits_default_and_validate() {
        let c = Config::parse(BASE, Path::new("/")).unwrap();
        assert_eq!(c.limits, LimitsFile::default());
        assert_eq!(
            c.limits.connection_limits(),
            kms_serve::ConnectionLimits::default()
        );
        let with = |lines: &str| {
            BASE.replace(
                "[audit]\ndir = \"audit\"\n",
                &format!("[audit]\ndir = \"audit\"\n[limits]\n{lines}\n"),
            )
        };
        let c = Config::parse(
            &with("idle_timeout_secs = 5\nmax_connections_per_ip = 0"),
            Path::new("/"),
        )
        .unwrap();
        assert_eq!(
            c.limits.connection_limits().idle_timeout,
            std::time::Duration::from_secs(5)
        );
        assert_eq!(c.limits.max_connections_per_ip, 0);
        for bad in [
            "idle_timeout_secs = 0",
            "max_connections = 0",
            "max_unauthenticated_body_mib = 0",
            "idle_timeout = 5",
        ] {
            assert!(Config::parse(&with(bad), Path::new("/")).is_err(), "{bad}");
        }
    }

    #[test]
    fn hsm_calls_default_to_the_blocking_pool() {
        let c = Config::parse(BASE, Path::new("/")).unwrap();
        assert_eq!(c.hsm.calls, HsmCalls::BlockingPool);
        let inline = BASE.replace(
            "token_label = \"xks\"\n",
            "token_label = \"xks\"\ncalls = \"inline\"\n",
        );
        assert_eq!(
            Config::parse(&inline, Path::new("/")).unwrap().hsm.calls,
            HsmCalls::Inline
        );
        let bad = BASE.replace(
            "token_label = \"xks\"\n",
            "token_label = \"xks\"\ncalls = \"threads\"\n",
        );
        assert!(Config::parse(&bad, Path::new("/")).is_err());
    }

    #[test]
    fn key_state_max_age_defaults_to_a_second_and_is_bounded() {
        let with = |v: &str| {
            BASE.replace(
                "token_label = \"xks\"\n",
                &format!("token_label = \"xks\"\nkey_state_max_age_ms = {v}\n"),
            )
        };
        let c = Config::parse(BASE, Path::new("/")).unwrap();
        assert_eq!(c.hsm.key_state_max_age_ms, 1000);
        for ok in ["0", "60000"] {
            let c = Config::parse(&with(ok), Path::new("/")).unwrap();
            assert_eq!(c.hsm.key_state_max_age_ms.to_string(), ok);
        }
        assert!(Config::parse(&with("60001"), Path::new("/")).is_err());
        assert!(Config::parse(&with("-1"), Path::new("/")).is_err());
    }

    #[test]
    fn key_map_form() {
        let text = BASE.replace("keys = [\"foo\", \"bar\"]\n", "").replace(
            "[[key_store.credentials]]",
            "[key_store.keys]\nfoo = \"hsm-foo\"\n[[key_store.credentials]]",
        );
        let c = Config::parse(&text, Path::new("/")).unwrap();
        assert_eq!(c.label_for("foo"), "hsm-foo");
    }
}
