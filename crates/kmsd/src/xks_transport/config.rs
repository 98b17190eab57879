//! The `--xks-config` file: how kmsd reaches XKS proxies (trust, addresses, client
//! certificates, call budget) and how often it health-checks connected ones.
//!
//! ```toml
//! ca_bundle = "/etc/kmsd/xks-ca.pem"
//! timeout_ms = 250
//! client_cert = "/etc/kmsd/xks-client.pem"   # mutual TLS, every proxy (optional)
//! client_key = "/etc/kmsd/xks-client.key"
//! health_check_interval_secs = 60
//! unhealthy_after_failed_checks = 2
//! [[endpoint]]
//! host = "xks.example.com"
//! address = "127.0.0.1:8443"
//! client_cert = "/etc/kmsd/xks-example.pem"  # this host only (overrides the global one)
//! client_key = "/etc/kmsd/xks-example.key"
//! [[vpc_endpoint_service]]
//! name = "com.amazonaws.vpce.us-east-1.vpce-svc-0123456789abcdef0"
//! address = "10.0.0.5:443"
//! ```

use std::collections::HashSet;
use std::path::Path;

use serde::Deserialize;

/// The `--xks-config` file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct XksConfig {
    /// Extra trusted CA certificates (PEM) for proxies with private CAs.
    #[serde(default)]
    pub ca_bundle: Option<String>,
    /// Budget of one proxy call, in milliseconds (AWS: 250).
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
    /// Client certificate chain (PEM) kmsd presents to every proxy (mutual TLS).
    #[serde(default)]
    pub client_cert: Option<String>,
    /// Private key (PEM) of `client_cert`.
    #[serde(default)]
    pub client_key: Option<String>,
    /// Seconds between health checks of each connected external key store (AWS: minutes).
    #[serde(default = "default_health_interval")]
    pub health_check_interval_secs: u64,
    /// Consecutive failed health checks after which a proxy is reported unhealthy.
    #[serde(default = "default_unhealthy_after")]
    pub unhealthy_after_failed_checks: u32,
    /// Per endpoint host: where it really is, and its own client certificate.
    #[serde(default, rename = "endpoint")]
    pub endpoints: Vec<EndpointSettings>,
    /// Private addresses of VPC endpoint services.
    #[serde(default, rename = "vpc_endpoint_service")]
    pub vpc_endpoint_services: Vec<VpcService>,
}

impl Default for XksConfig {
    fn default() -> Self {
        XksConfig {
            ca_bundle: None,
            timeout_ms: default_timeout(),
            client_cert: None,
            client_key: None,
            health_check_interval_secs: default_health_interval(),
            unhealthy_after_failed_checks: default_unhealthy_after(),
            endpoints: Vec::new(),
            vpc_endpoint_services: Vec::new(),
        }
    }
}

fn default_timeout() -> u64 {
    250
}

fn default_health_interval() -> u64 {
    60
}

fn default_unhealthy_after() -> u32 {
    2
}

/// Settings for one XksProxyUriEndpoint host.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointSettings {
    /// Host of an XksProxyUriEndpoint (also the TLS name of a VPC endpoint service).
    pub host: String,
    /// `ip:port` to connect to (default: the host, port 443).
    #[serde(default)]
    pub address: Option<String>,
    /// Client certificate chain (PEM) for this host, instead of the global one.
    #[serde(default)]
    pub client_cert: Option<String>,
    /// Private key (PEM) of `client_cert`.
    #[serde(default)]
    pub client_key: Option<String>,
}

/// A VPC endpoint service name and its private address.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VpcService {
    /// The endpoint service name.
    pub name: String,
    /// `ip:port` to connect to.
    pub address: String,
}

/// A client certificate chain and its key, both PEM file paths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCertFiles {
    /// Certificate chain, leaf first.
    pub cert: String,
    /// Private key.
    pub key: String,
}

fn cert_pair(
    cert: &Option<String>,
    key: &Option<String>,
    place: &str,
) -> Result<Option<ClientCertFiles>, String> {
    match (cert, key) {
        (Some(cert), Some(key)) => Ok(Some(ClientCertFiles {
            cert: cert.clone(),
            key: key.clone(),
        })),
        (None, None) => Ok(None),
        _ => Err(format!(
            "{place}: client_cert and client_key go together (give both or neither)"
        )),
    }
}

impl XksConfig {
    /// The global client certificate, if any.
    pub fn global_client_cert(&self) -> Result<Option<ClientCertFiles>, String> {
        cert_pair(&self.client_cert, &self.client_key, "xks config")
    }

    /// Checks what the types cannot: paired certificate settings, one entry per host,
    /// entries that say something, positive intervals and thresholds.
    pub fn validate(&self) -> Result<(), String> {
        self.global_client_cert()?;
        let mut hosts = HashSet::new();
        for e in &self.endpoints {
            let place = format!("[[endpoint]] {}", e.host);
            if !hosts.insert(e.host.as_str()) {
                return Err(format!("{place} is declared twice"));
            }
            let cert = cert_pair(&e.client_cert, &e.client_key, &place)?;
            if e.address.is_none() && cert.is_none() {
                return Err(format!("{place} needs an address, a client_cert, or both"));
            }
        }
        if self.health_check_interval_secs == 0 {
            return Err("health_check_interval_secs must be at least 1".into());
        }
        if self.unhealthy_after_failed_checks == 0 {
            return Err("unhealthy_after_failed_checks must be at least 1".into());
        }
        Ok(())
    }
}

/// Reads and validates the config file.
pub fn read_config(path: &Path) -> Result<XksConfig, String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    let config: XksConfig =
        toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    config
        .validate()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<XksConfig, String> {
        let c: XksConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        c.validate()?;
        Ok(c)
    }

    #[test]
    fn defaults_are_aws_like() {
        let c = parse("").unwrap();
        assert_eq!(c.timeout_ms, 250);
        assert_eq!(c.health_check_interval_secs, 60);
        assert_eq!(c.unhealthy_after_failed_checks, 2);
        assert_eq!(c.global_client_cert().unwrap(), None);
    }

    #[test]
    fn client_certificates_global_and_per_endpoint() {
        let c = parse(
            "client_cert = \"g.pem\"\nclient_key = \"g.key\"\n[[endpoint]]\nhost = \"a.example\"\nclient_cert = \"a.pem\"\nclient_key = \"a.key\"\n",
        )
        .unwrap();
        assert_eq!(
            c.global_client_cert().unwrap(),
            Some(ClientCertFiles {
                cert: "g.pem".into(),
                key: "g.key".into()
            })
        );
        assert_eq!(c.endpoints[0].address, None);
    }

    #[test]
    fn rejects_half_pairs_duplicates_and_empty_entries() {
        for bad in [
            "client_cert = \"g.pem\"\n",
            "[[endpoint]]\nhost = \"a\"\naddress = \"127.0.0.1:1\"\nclient_key = \"a.key\"\n",
            "[[endpoint]]\nhost = \"a\"\n",
            "[[endpoint]]\nhost = \"a\"\naddress = \"127.0.0.1:1\"\n[[endpoint]]\nhost = \"a\"\naddress = \"127.0.0.1:2\"\n",
            "health_check_interval_secs = 0\n",
            "unhealthy_after_failed_checks = 0\n",
            "client_certificate = \"typo.pem\"\n",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
