//! The HTTPS transport of kmsd's XKS client: SigV4 (`kms-xks-proxy`), TLS verified against the
//! system roots plus an operator CA bundle, a 250 ms budget per call (one retry when the proxy
//! could not be reached in time), and a small keep-alive pool per proxy.
//!
//! `--xks-config` (TOML) declares the CA bundle, where endpoint host names really are (tests and
//! private deployments run proxies on other ports; XksProxyUriEndpoint cannot carry one), and the
//! private address behind each VPC endpoint service name:
//!
//! ```toml
//! ca_bundle = "/etc/kmsd/xks-ca.pem"
//! timeout_ms = 250
//! [[endpoint]]
//! host = "xks.example.com"
//! address = "127.0.0.1:8443"
//! [[vpc_endpoint_service]]
//! name = "com.amazonaws.vpce.us-east-1.vpce-svc-0123456789abcdef0"
//! address = "10.0.0.5:443"
//! ```

use std::collections::HashMap;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use kms_core::xks::{XksFault, XksTarget, XksTransport};
use serde::Deserialize;

/// The `--xks-config` file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct XksConfig {
    /// Extra trusted CA certificates (PEM) for proxies with private CAs.
    #[serde(default)]
    pub ca_bundle: Option<String>,
    /// Budget of one proxy call, in milliseconds (AWS: 250).
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
    /// Where endpoint hosts really are.
    #[serde(default, rename = "endpoint")]
    pub endpoints: Vec<EndpointAddress>,
    /// Private addresses of VPC endpoint services.
    #[serde(default, rename = "vpc_endpoint_service")]
    pub vpc_endpoint_services: Vec<VpcService>,
}

fn default_timeout() -> u64 {
    250
}

/// A host name and the address to connect to for it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointAddress {
    /// Host of an XksProxyUriEndpoint.
    pub host: String,
    /// `ip:port` to connect to.
    pub address: String,
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

/// Reads the config file.
pub fn read_config(path: &Path) -> Result<XksConfig, String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// Idle keep-alive connections by (address, TLS server name).
type ConnectionPool = Mutex<HashMap<(String, String), Vec<SendRequest<Full<Bytes>>>>>;

/// HTTPS transport to XKS proxies.
pub struct HttpsTransport {
    config: XksConfig,
    tls: tokio_rustls::TlsConnector,
    pool: ConnectionPool,
}

impl HttpsTransport {
    /// A transport with the system roots plus the config's CA bundle.
    pub fn new(config: XksConfig) -> Result<Self, String> {
        let mut roots = rustls::RootCertStore::empty();
        for c in rustls_native_certs::load_native_certs().certs {
            let _ = roots.add(c);
        }
        if let Some(bundle) = &config.ca_bundle {
            use rustls::pki_types::pem::PemObject;
            for c in rustls::pki_types::CertificateDer::pem_file_iter(bundle)
                .map_err(|e| format!("{bundle}: {e}"))?
            {
                roots
                    .add(c.map_err(|e| format!("{bundle}: {e}"))?)
                    .map_err(|e| format!("{bundle}: {e}"))?;
            }
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let cfg = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(HttpsTransport {
            config,
            tls: tokio_rustls::TlsConnector::from(Arc::new(cfg)),
            pool: Mutex::new(HashMap::new()),
        })
    }

    /// (TCP address, TLS server name) for a target.
    fn route(&self, t: &XksTarget) -> Result<(String, String), XksFault> {
        let host = t
            .uri_endpoint
            .strip_prefix("https://")
            .ok_or_else(|| {
                XksFault::Unreachable(format!("{} is not an https:// endpoint", t.uri_endpoint))
            })?
            .to_owned();
        if t.connectivity == "VPC_ENDPOINT_SERVICE" {
            let name = t.vpc_endpoint_service_name.clone().unwrap_or_default();
            let svc = self
                .config
                .vpc_endpoint_services
                .iter()
                .find(|s| s.name == name)
                .ok_or(XksFault::VpcServiceNotFound(name))?;
            return Ok((svc.address.clone(), host));
        }
        let address = self
            .config
            .endpoints
            .iter()
            .find(|e| e.host == host)
            .map(|e| e.address.clone())
            .unwrap_or_else(|| format!("{host}:443"));
        Ok((address, host))
    }

    async fn connect(
        &self,
        address: &str,
        host: &str,
    ) -> Result<SendRequest<Full<Bytes>>, XksFault> {
        let tcp = tokio::net::TcpStream::connect(address)
            .await
            .map_err(|e| XksFault::Unreachable(format!("{address}: {e}")))?;
        let _ = tcp.set_nodelay(true);
        let name = rustls::pki_types::ServerName::try_from(host.to_owned())
            .map_err(|e| XksFault::Tls(format!("{host}: {e}")))?;
        let tls = self
            .tls
            .connect(name, tcp)
            .await
            .map_err(|e| XksFault::Tls(e.to_string()))?;
        let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| XksFault::Unreachable(e.to_string()))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(send)
    }

    async fn once(&self, t: &XksTarget, suffix: &str, body: &[u8]) -> Result<Vec<u8>, XksFault> {
        let (address, host) = self.route(t)?;
        let key = (address.clone(), host.clone());
        let pooled = self
            .pool
            .lock()
            .ok()
            .and_then(|mut p| p.get_mut(&key).and_then(Vec::pop));
        let mut send = match pooled {
            Some(s) if !s.is_closed() => s,
            _ => self.connect(&address, &host).await?,
        };
        let path = format!("{}{suffix}", t.uri_path);
        let headers = vec![
            ("host".to_owned(), host.clone()),
            ("content-type".to_owned(), "application/json".to_owned()),
        ];
        let parts = kms_sigv4::RequestParts {
            method: "POST",
            path: &path,
            query: "",
            headers: headers.clone(),
            body,
        };
        let now = {
            use kms_core::Clock as _;
            kms_core::SystemClock.now_ms() / 1000
        };
        let signed = kms_sigv4::sign(
            &parts,
            &t.access_key_id,
            &t.secret,
            &t.region,
            "kms-xks-proxy",
            now,
        )
        .map_err(|e| XksFault::InvalidResponse(e.message))?;
        let mut req = hyper::Request::post(&path);
        for (n, v) in headers.iter().chain(signed.iter()) {
            req = req.header(n.as_str(), v.as_str());
        }
        let req = req
            .body(Full::new(Bytes::copy_from_slice(body)))
            .map_err(|e| XksFault::InvalidResponse(e.to_string()))?;
        send.ready()
            .await
            .map_err(|e| XksFault::Unreachable(e.to_string()))?;
        let resp = send
            .send_request(req)
            .await
            .map_err(|e| XksFault::Unreachable(e.to_string()))?;
        let status = resp.status().as_u16();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| XksFault::Unreachable(e.to_string()))?
            .to_bytes()
            .to_vec();
        if let Ok(mut p) = self.pool.lock() {
            let idle = p.entry(key).or_default();
            if idle.len() < 16 {
                idle.push(send);
            }
        }
        if status == 200 {
            return Ok(bytes);
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct ErrorBody {
            error_name: String,
        }
        match serde_json::from_slice::<ErrorBody>(&bytes) {
            Ok(e) => Err(XksFault::Proxy {
                status,
                name: e.error_name,
            }),
            Err(_) => Err(XksFault::InvalidResponse(format!(
                "HTTP {status} without an XKS error body"
            ))),
        }
    }
}

impl XksTransport for HttpsTransport {
    fn call<'a>(
        &'a self,
        target: &'a XksTarget,
        suffix: &'a str,
        body: Vec<u8>,
    ) -> Pin<Box<dyn Future<Output = Result<Vec<u8>, XksFault>> + Send + 'a>> {
        Box::pin(async move {
            let budget = Duration::from_millis(self.config.timeout_ms.max(1));
            let mut last = XksFault::Timeout;
            // One retry when the call did not get through in time (a new IV is fine for Encrypt).
            for _ in 0..2 {
                match tokio::time::timeout(budget, self.once(target, suffix, &body)).await {
                    Ok(Err(XksFault::Unreachable(why))) => last = XksFault::Unreachable(why),
                    Ok(other) => return other,
                    Err(_) => last = XksFault::Timeout,
                }
            }
            Err(last)
        })
    }
}
