//! TLS towards XKS proxies: the trusted roots (system plus the operator's CA bundle), the
//! client certificate presented to each endpoint host (mutual TLS: per host, else global,
//! else none), and what a TLS failure means in words an operator can act on.

use std::collections::HashMap;
use std::sync::Arc;

use kms_core::xks::XksFault;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{AlertDescription, ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;

use super::config::{ClientCertFiles, XksConfig};

/// A connector and whether it presents a client certificate.
#[derive(Clone)]
pub struct HostTls {
    /// The connector.
    pub connector: TlsConnector,
    /// Whether the connector presents a client certificate.
    pub presents_cert: bool,
}

/// The TLS client settings of every endpoint host.
pub struct ClientTls {
    default: HostTls,
    per_host: HashMap<String, HostTls>,
}

fn roots(config: &XksConfig) -> Result<Arc<RootCertStore>, String> {
    let mut roots = RootCertStore::empty();
    for c in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(c);
    }
    if let Some(bundle) = &config.ca_bundle {
        for c in CertificateDer::pem_file_iter(bundle).map_err(|e| format!("{bundle}: {e}"))? {
            roots
                .add(c.map_err(|e| format!("{bundle}: {e}"))?)
                .map_err(|e| format!("{bundle}: {e}"))?;
        }
    }
    Ok(Arc::new(roots))
}

fn host_tls(roots: &Arc<RootCertStore>, cert: Option<&ClientCertFiles>) -> Result<HostTls, String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots.clone());
    let config = match cert {
        None => builder.with_no_client_auth(),
        Some(files) => {
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
                .map_err(|e| format!("client_cert {}: {e}", files.cert))?
                .collect::<Result<_, _>>()
                .map_err(|e| format!("client_cert {}: {e}", files.cert))?;
            if chain.is_empty() {
                return Err(format!("client_cert {} holds no certificate", files.cert));
            }
            let key = PrivateKeyDer::from_pem_file(&files.key)
                .map_err(|e| format!("client_key {}: {e}", files.key))?;
            builder.with_client_auth_cert(chain, key).map_err(|e| {
                format!("client_cert {} / client_key {}: {e}", files.cert, files.key)
            })?
        }
    };
    Ok(HostTls {
        connector: TlsConnector::from(Arc::new(config)),
        presents_cert: cert.is_some(),
    })
}

impl ClientTls {
    /// Loads the roots and every client certificate the config names (an unreadable file, or
    /// a key that does not match its certificate, is an error now rather than at first use).
    pub fn new(config: &XksConfig) -> Result<Self, String> {
        let roots = roots(config)?;
        let global = config.global_client_cert()?;
        let default = host_tls(&roots, global.as_ref())?;
        let mut per_host = HashMap::new();
        for e in &config.endpoints {
            if let (Some(cert), Some(key)) = (&e.client_cert, &e.client_key) {
                let files = ClientCertFiles {
                    cert: cert.clone(),
                    key: key.clone(),
                };
                per_host.insert(e.host.clone(), host_tls(&roots, Some(&files))?);
            }
        }
        Ok(ClientTls { default, per_host })
    }

    /// The TLS settings for an endpoint host.
    pub fn for_host(&self, host: &str) -> &HostTls {
        self.per_host.get(host).unwrap_or(&self.default)
    }
}

/// The rustls error somewhere in an error's chain (I/O errors wrap it without exposing it as
/// their `source`).
fn find_rustls_error<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = current {
        if let Some(r) = e.downcast_ref::<rustls::Error>() {
            return Some(r);
        }
        if let Some(r) = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            return Some(r);
        }
        current = e.source();
    }
    None
}

/// A TLS failure in an operator's words, with what to change when it is about client
/// certificates.
pub(crate) fn describe_tls_error(e: &rustls::Error, presents_cert: bool) -> String {
    match e {
        rustls::Error::AlertReceived(AlertDescription::CertificateRequired) => {
            "the proxy requires a client certificate (mutual TLS) and kmsd presented none: set client_cert and client_key in --xks-config, globally or in this host's [[endpoint]]".into()
        }
        rustls::Error::AlertReceived(
            a @ (AlertDescription::BadCertificate
            | AlertDescription::UnsupportedCertificate
            | AlertDescription::CertificateRevoked
            | AlertDescription::CertificateExpired
            | AlertDescription::CertificateUnknown
            | AlertDescription::UnknownCA
            | AlertDescription::AccessDenied
            | AlertDescription::HandshakeFailure),
        ) if presents_cert => format!(
            "the proxy rejected kmsd's client certificate (TLS alert {a:?}): check that the client_cert in --xks-config is issued by a CA the proxy trusts, valid now, and has a subject the proxy accepts"
        ),
        rustls::Error::AlertReceived(AlertDescription::HandshakeFailure) => {
            "the proxy aborted the TLS handshake (HandshakeFailure); if it requires a client certificate, set client_cert and client_key in --xks-config".into()
        }
        other => other.to_string(),
    }
}

/// The [`XksFault::Tls`] an error stands for, if TLS is its cause.
pub fn tls_fault(err: &(dyn std::error::Error + 'static), presents_cert: bool) -> Option<XksFault> {
    find_rustls_error(err).map(|r| XksFault::Tls(describe_tls_error(r, presents_cert)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_rustls_errors_inside_io_errors() {
        let io = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::AlertReceived(AlertDescription::CertificateRequired),
        );
        let fault = tls_fault(&io, false).unwrap();
        assert!(
            matches!(&fault, XksFault::Tls(m) if m.contains("requires a client certificate")),
            "{fault:?}"
        );
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert_eq!(tls_fault(&refused, false), None);
    }

    #[test]
    fn rejected_certificates_are_named_as_such() {
        let m = describe_tls_error(
            &rustls::Error::AlertReceived(AlertDescription::AccessDenied),
            true,
        );
        assert!(m.contains("rejected kmsd's client certificate"), "{m}");
        let m = describe_tls_error(
            &rustls::Error::AlertReceived(AlertDescription::AccessDenied),
            false,
        );
        assert!(!m.contains("client certificate"), "{m}");
    }

    #[test]
    fn missing_or_mismatched_certificate_files_fail_at_load() {
        let mut c = XksConfig {
            client_cert: Some("/nonexistent/cert.pem".into()),
            client_key: Some("/nonexistent/key.pem".into()),
            ..Default::default()
        };
        let e = ClientTls::new(&c).err().unwrap();
        assert!(e.contains("client_cert /nonexistent/cert.pem"), "{e}");
        // A certificate with somebody else's key.
        let dir = tempfile::tempdir().unwrap();
        let a = rcgen::generate_simple_self_signed(vec!["a".into()]).unwrap();
        let b = rcgen::generate_simple_self_signed(vec!["b".into()]).unwrap();
        let cert = dir.path().join("a.pem");
        let key = dir.path().join("b.key");
        std::fs::write(&cert, a.cert.pem()).unwrap();
        std::fs::write(&key, b.signing_key.serialize_pem()).unwrap();
        c.client_cert = Some(cert.display().to_string());
        c.client_key = Some(key.display().to_string());
        assert!(ClientTls::new(&c).is_err());
        // The matching key loads.
        std::fs::write(&key, a.signing_key.serialize_pem()).unwrap();
        let tls = ClientTls::new(&c).unwrap();
        assert!(tls.for_host("any.example").presents_cert);
    }
}
