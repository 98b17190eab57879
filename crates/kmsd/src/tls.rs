//! HTTPS: rustls with the aws-lc-rs provider, TLS 1.3 and 1.2 only (rustls has no non-PFS
//! suites, so every TLS 1.2 suite is ECDHE), X25519MLKEM768 offered first, certificate reload
//! without dropping connections, and the accept loop (HTTPS, or plain HTTP without a
//! certificate) with handshake and header timeouts that drains on shutdown.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::Router;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;

/// What a TLS connection negotiated; handlers find it in the request extensions.
#[derive(Debug, Clone)]
pub struct TlsDetails {
    /// e.g. `TLSv1.3`.
    pub version: String,
    /// e.g. `TLS13_AES_256_GCM_SHA384`.
    pub cipher_suite: String,
    /// e.g. `X25519MLKEM768`.
    pub key_exchange: String,
}

/// The server certificate and key, loaded from files and reloadable (SIGHUP).
#[derive(Debug)]
pub struct ReloadableCert {
    cert_path: PathBuf,
    key_path: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
}

fn load_certified_key(cert_path: &Path, key_path: &Path) -> Result<Arc<CertifiedKey>, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_path)
        .map_err(|e| format!("reading {}: {e}", cert_path.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("parsing {}: {e}", cert_path.display()))?;
    if certs.is_empty() {
        return Err(format!("{} holds no certificate", cert_path.display()));
    }
    let key = PrivateKeyDer::from_pem_file(key_path)
        .map_err(|e| format!("reading {}: {e}", key_path.display()))?;
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    let signing_key = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| format!("loading the private key {}: {e}", key_path.display()))?;
    let ck = CertifiedKey::new(certs, signing_key);
    ck.keys_match().map_err(|e| {
        format!(
            "{} does not match {}: {e}",
            key_path.display(),
            cert_path.display()
        )
    })?;
    Ok(Arc::new(ck))
}

impl ReloadableCert {
    /// Loads the certificate chain (PEM) and private key (PEM).
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<Self, String> {
        let ck = load_certified_key(cert_path, key_path)?;
        Ok(ReloadableCert {
            cert_path: cert_path.into(),
            key_path: key_path.into(),
            current: RwLock::new(ck),
        })
    }

    /// Re-reads the files; new handshakes use the new certificate, open connections go on.
    pub fn reload(&self) -> Result<(), String> {
        let ck = load_certified_key(&self.cert_path, &self.key_path)?;
        let mut cur = self
            .current
            .write()
            .map_err(|_| "certificate lock poisoned".to_owned())?;
        *cur = ck;
        Ok(())
    }
}

impl ResolvesServerCert for ReloadableCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current.read().ok().map(|c| c.clone())
    }
}

/// The rustls configurations kmsd serves with: one offering every group, and one offering only
/// the hybrid post-quantum group X25519MLKEM768.
///
/// rustls picks the first group of the *client's* list that the server supports, so a client
/// that lists X25519 before X25519MLKEM768 would get classical X25519. kmsd reads the
/// ClientHello first and, when the client supports the hybrid group at all, answers with the
/// hybrid-only configuration (a HelloRetryRequest if the client sent no hybrid key share): the
/// server, not the client's ordering, decides that post-quantum protection is used.
#[derive(Clone)]
pub struct TlsConfigs {
    any_group: Arc<ServerConfig>,
    hybrid_only: Arc<ServerConfig>,
}

impl TlsConfigs {
    /// The configuration for a client that offered `groups` (its supported_groups extension).
    pub fn for_groups(&self, groups: Option<&[rustls::NamedGroup]>) -> Arc<ServerConfig> {
        let hybrid = groups.is_some_and(|g| g.contains(&rustls::NamedGroup::X25519MLKEM768));
        if hybrid {
            self.hybrid_only.clone()
        } else {
            self.any_group.clone()
        }
    }
}

/// Builds one rustls server configuration over `kx_groups`.
fn build_config(
    cert: Arc<ReloadableCert>,
    kx_groups: Vec<&'static dyn rustls::crypto::SupportedKxGroup>,
) -> Result<Arc<ServerConfig>, String> {
    let provider = Arc::new(rustls::crypto::CryptoProvider {
        kx_groups,
        ..rustls::crypto::aws_lc_rs::default_provider()
    });
    let mut cfg = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_cert_resolver(cert);
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// The rustls server configurations kmsd uses: the default aws-lc-rs provider (X25519MLKEM768,
/// X25519, P-256, P-384; only ECDHE suites for TLS 1.2), and its hybrid-only twin.
pub fn server_config(cert: Arc<ReloadableCert>) -> Result<TlsConfigs, String> {
    let all = rustls::crypto::aws_lc_rs::default_provider().kx_groups;
    Ok(TlsConfigs {
        any_group: build_config(cert.clone(), all)?,
        hybrid_only: build_config(
            cert,
            vec![rustls::crypto::aws_lc_rs::kx_group::X25519MLKEM768],
        )?,
    })
}

/// Serves `app` (over TLS when `config` is given, else plain HTTP) until `shutdown` resolves,
/// then lets in-flight requests finish (at most 30 s). A client has 10 s for its TLS handshake
/// (and no more than the idle timeout); `limits` bounds connections, idle time and headers.
pub async fn serve(
    listener: tokio::net::TcpListener,
    config: Option<TlsConfigs>,
    app: Router,
    shutdown: impl Future<Output = ()>,
    limits: kms_serve::ConnectionLimits,
) {
    let accept = move |tcp: tokio::net::TcpStream, peer: std::net::SocketAddr| {
        let configs = config.clone();
        async move {
            let Some(configs) = configs else {
                return Some((Box::new(tcp) as Box<dyn kms_serve::Stream>, None));
            };
            let handshake = async {
                let start =
                    tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), tcp)
                        .await?;
                let cfg = configs.for_groups(start.client_hello().named_groups());
                start.into_stream(cfg).await
            };
            let tls = match tokio::time::timeout(Duration::from_secs(10), handshake).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return None;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return None;
                }
            };
            let details = {
                let conn = tls.get_ref().1;
                TlsDetails {
                    version: conn
                        .protocol_version()
                        .map(|v| format!("{v:?}").replace("TLSv1_", "TLSv1."))
                        .unwrap_or_default(),
                    cipher_suite: conn
                        .negotiated_cipher_suite()
                        .map(|c| format!("{:?}", c.suite()))
                        .unwrap_or_default(),
                    key_exchange: conn
                        .negotiated_key_exchange_group()
                        .map(|g| format!("{:?}", g.name()))
                        .unwrap_or_default(),
                }
            };
            Some((Box::new(tls) as Box<dyn kms_serve::Stream>, Some(details)))
        }
    };
    kms_serve::serve(
        listener,
        accept,
        app,
        shutdown,
        Duration::from_secs(30),
        limits,
    )
    .await;
}
