//! Command line of `kmsd k8s-kms-plugin`.

use std::path::PathBuf;
use std::time::Duration;

/// `kmsd k8s-kms-plugin` flags. Credentials come from the usual AWS chain (environment, shared
/// credentials/config files with profiles and assume-role, web identity, container/instance).
#[derive(clap::Args, Debug, Clone)]
pub struct PluginArgs {
    /// Unix socket to serve the KMS v2 gRPC API on (kube-apiserver's `endpoint: unix://...`).
    /// Its directory must not be world-writable; an existing non-socket file there is refused.
    #[arg(
        long,
        env = "KMSD_K8S_SOCKET",
        default_value = "/var/run/kmsd/kms.sock"
    )]
    pub socket: PathBuf,
    /// Permissions of the socket, in octal (only kube-apiserver's user needs access).
    #[arg(long, env = "KMSD_K8S_SOCKET_MODE", default_value = "600")]
    pub socket_mode: String,
    /// kmsd's KMS endpoint, e.g. `https://kmsd:4599`.
    #[arg(long, env = "KMSD_K8S_ENDPOINT")]
    pub endpoint: String,
    /// The KMS key that encrypts kube-apiserver's DEKs (key id, ARN, alias name or alias ARN).
    #[arg(long, env = "KMSD_K8S_KEY_ID")]
    pub key_id: String,
    /// Earlier keys whose ciphertexts must still decrypt (key migration); repeat or comma-separate.
    #[arg(long, env = "KMSD_K8S_DECRYPT_ALSO", value_delimiter = ',')]
    pub decrypt_also: Vec<String>,
    /// Cluster name put in the encryption context of every Encrypt and Decrypt
    /// (`kubernetes-cluster` = NAME), so ciphertexts are bound to this cluster.
    #[arg(long, env = "KMSD_K8S_CLUSTER_NAME", default_value = "kubernetes")]
    pub cluster_name: String,
    /// AWS region to sign for (default: from the AWS chain, else us-east-1).
    #[arg(long, env = "KMSD_K8S_REGION")]
    pub region: Option<String>,
    /// PEM CA bundle to trust for an https endpoint with a private CA (default: system roots).
    #[arg(long, env = "KMSD_K8S_CA_BUNDLE")]
    pub ca_bundle: Option<PathBuf>,
    /// How long a Status health check (an Encrypt/Decrypt round trip through kmsd) is reused, in seconds.
    #[arg(long, env = "KMSD_K8S_HEALTH_CACHE_SECS", default_value_t = 5)]
    pub health_cache_secs: u64,
    /// Per-call timeout for kmsd calls, in seconds.
    #[arg(long, env = "KMSD_K8S_TIMEOUT_SECS", default_value_t = 10)]
    pub timeout_secs: u64,
}

impl PluginArgs {
    /// The socket permission bits parsed from `--socket-mode` (octal, at most 0o777).
    pub fn socket_mode(&self) -> Result<u32, String> {
        match u32::from_str_radix(&self.socket_mode, 8) {
            Ok(m) if m <= 0o777 => Ok(m),
            _ => Err(format!(
                "--socket-mode {:?}: expected octal permission bits such as 600 or 660",
                self.socket_mode
            )),
        }
    }

    /// How long a health check result is reused.
    pub fn health_cache(&self) -> Duration {
        Duration::from_secs(self.health_cache_secs)
    }
}
