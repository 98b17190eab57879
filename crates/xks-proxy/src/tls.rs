//! HTTPS: rustls (aws-lc-rs provider, TLS 1.3 and 1.2, ECDHE suites only, which include the
//! spec's `TLS_AES_256_GCM_SHA384` and `TLS_ECDHE_*_WITH_AES_256_GCM_SHA384`), optional mutual
//! TLS restricted to configured client certificate subject CNs, a server configuration that
//! can be swapped at run time (SIGHUP), and the accept loop.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::Router;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{
    DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig, SignatureScheme,
};

use crate::config::TlsSettings;

/// What the TLS layer tells a request handler.
#[derive(Debug, Clone, Default)]
pub struct ConnInfo {
    /// Client address.
    pub peer: Option<SocketAddr>,
    /// Subject CN of the client certificate (mutual TLS).
    pub client_cn: Option<String>,
    /// Negotiated protocol version, e.g. `TLSv1_3`.
    pub version: String,
}

/// The subject common names of a DER certificate.
pub fn subject_cns(der: &[u8]) -> Vec<String> {
    match x509_parser::parse_x509_certificate(der) {
        Ok((_, cert)) => cert
            .subject()
            .iter_common_name()
            .filter_map(|cn| cn.as_str().ok().map(str::to_owned))
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Client certificate verification: chain to the configured CA (webpki), then the subject CN
/// must be one of the accepted names; otherwise the handshake is aborted.
#[derive(Debug)]
struct CnRestrictedVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    allowed: Vec<String>,
}

impl ClientCertVerifier for CnRestrictedVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        let cns = subject_cns(end_entity);
        if cns.iter().any(|cn| self.allowed.contains(cn)) {
            Ok(verified)
        } else {
            tracing::warn!(subject_cn = ?cns, "client certificate subject CN not accepted; handshake aborted");
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("reading {}: {e}", path.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("parsing {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{} holds no certificate", path.display()));
    }
    Ok(certs)
}

/// Builds the server configuration from the files named in `tls`.
pub fn server_config(tls: &TlsSettings) -> Result<Arc<ServerConfig>, String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let certs = read_certs(&tls.cert)?;
    let key = PrivateKeyDer::from_pem_file(&tls.key)
        .map_err(|e| format!("reading {}: {e}", tls.key.display()))?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| e.to_string())?;
    let builder = match &tls.client {
        None => builder.with_no_client_auth(),
        Some((ca, cns)) => {
            let mut roots = RootCertStore::empty();
            for c in read_certs(ca)? {
                roots.add(c).map_err(|e| format!("{}: {e}", ca.display()))?;
            }
            let inner = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| format!("client CA {}: {e}", ca.display()))?;
            builder.with_client_cert_verifier(Arc::new(CnRestrictedVerifier {
                inner,
                allowed: cns.clone(),
            }))
        }
    };
    let mut cfg = builder
        .with_single_cert(certs, key)
        .map_err(|e| format!("{} / {}: {e}", tls.cert.display(), tls.key.display()))?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// The server configuration in force; replaced on reload, used by new connections.
pub type SharedServerConfig = Arc<RwLock<Arc<ServerConfig>>>;

/// Serves `app` over TLS until `shutdown` resolves, then lets open connections finish their
/// requests (at most 10 s). Each connection uses the configuration in force when it was
/// accepted; its [`ConnInfo`] (peer, client certificate CN, TLS version) goes with every request.
pub async fn serve(
    listener: tokio::net::TcpListener,
    config: SharedServerConfig,
    app: Router,
    shutdown: impl Future<Output = ()>,
    limits: kms_serve::ConnectionLimits,
) {
    let accept = move |tcp: tokio::net::TcpStream, peer: std::net::SocketAddr| {
        let cfg = config
            .read()
            .map(|c| c.clone())
            .unwrap_or_else(|p| p.into_inner().clone());
        async move {
            let acceptor = tokio_rustls::TlsAcceptor::from(cfg);
            let tls =
                match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(e)) => {
                        tracing::info!(%peer, error = %e, "TLS handshake failed");
                        return None;
                    }
                    Err(_) => {
                        tracing::info!(%peer, "TLS handshake timed out");
                        return None;
                    }
                };
            let info = {
                let conn = tls.get_ref().1;
                ConnInfo {
                    peer: Some(peer),
                    client_cn: conn
                        .peer_certificates()
                        .and_then(|c| c.first())
                        .and_then(|c| subject_cns(c).into_iter().next()),
                    version: conn
                        .protocol_version()
                        .map(|v| format!("{v:?}"))
                        .unwrap_or_default(),
                }
            };
            Some((tls, Some(info)))
        }
    };
    kms_serve::serve(
        listener,
        accept,
        app,
        shutdown,
        Duration::from_secs(10),
        limits,
    )
    .await;
}
