//! The HTTPS transport of kmsd's XKS client: SigV4 (`kms-xks-proxy`), TLS verified against the
//! system roots plus an operator CA bundle, an optional client certificate (mutual TLS), a
//! 250 ms budget per call (one retry when the proxy could not be reached in time), and a small
//! keep-alive pool per proxy. Settings come from `--xks-config` ([`config`]).

mod client_tls;
pub mod config;
mod observed;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use kms_core::xks::{XksFault, XksTarget, XksTransport};
use serde::Deserialize;

pub use config::{read_config, EndpointSettings, VpcService, XksConfig};
pub use observed::ObservedTransport;

/// Idle keep-alive connections by (address, TLS server name).
type ConnectionPool = Mutex<HashMap<(String, String), Vec<ProxyConnection>>>;

/// How a connection's task ended: `None` while it runs, then the TLS fault that ended it, if
/// TLS did.
type ConnectionEnd = tokio::sync::watch::Receiver<Option<Option<XksFault>>>;

/// One HTTP/1.1 connection to a proxy.
struct ProxyConnection {
    send: SendRequest<Full<Bytes>>,
    /// A TLS 1.3 proxy that refuses the client certificate says so after the handshake; the
    /// alert then ends the connection's task, and the request only sees the channel close.
    end: ConnectionEnd,
}

/// How long a failed request waits for its connection's task to say why it ended.
const CONNECTION_END_WAIT: Duration = Duration::from_millis(200);

/// HTTPS transport to XKS proxies.
pub struct HttpsTransport {
    config: XksConfig,
    tls: client_tls::ClientTls,
    pool: ConnectionPool,
}

impl HttpsTransport {
    /// A transport with the system roots plus the config's CA bundle, and the config's client
    /// certificates (all loaded now: a bad file fails the start, not the first call).
    pub fn new(config: XksConfig) -> Result<Self, String> {
        config.validate()?;
        let tls = client_tls::ClientTls::new(&config)?;
        Ok(HttpsTransport {
            config,
            tls,
            pool: Mutex::new(HashMap::new()),
        })
    }

    /// An error from the connection: TLS (with what to do about it) or unreachable.
    fn connection_fault(&self, host: &str, err: &(dyn std::error::Error + 'static)) -> XksFault {
        client_tls::tls_fault(err, self.tls.for_host(host).presents_cert)
            .unwrap_or_else(|| XksFault::Unreachable(err.to_string()))
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
            .and_then(|e| e.address.clone())
            .unwrap_or_else(|| format!("{host}:443"));
        Ok((address, host))
    }

    async fn connect(&self, address: &str, host: &str) -> Result<ProxyConnection, XksFault> {
        let tcp = tokio::net::TcpStream::connect(address)
            .await
            .map_err(|e| XksFault::Unreachable(format!("{address}: {e}")))?;
        let _ = tcp.set_nodelay(true);
        let name = rustls::pki_types::ServerName::try_from(host.to_owned())
            .map_err(|e| XksFault::Tls(format!("{host}: {e}")))?;
        let host_tls = self.tls.for_host(host);
        let tls = host_tls.connector.connect(name, tcp).await.map_err(|e| {
            client_tls::tls_fault(&e, host_tls.presents_cert)
                .unwrap_or_else(|| XksFault::Tls(e.to_string()))
        })?;
        let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| self.connection_fault(host, &e))?;
        let (ended, end) = tokio::sync::watch::channel(None);
        let presents_cert = host_tls.presents_cert;
        tokio::spawn(async move {
            let fault = match conn.await {
                Ok(()) => None,
                Err(e) => client_tls::tls_fault(&e, presents_cert),
            };
            let _ = ended.send(Some(fault));
        });
        Ok(ProxyConnection { send, end })
    }

    /// The fault behind a failed request: TLS if the error or the connection's end says so.
    async fn request_fault(
        &self,
        host: &str,
        err: hyper::Error,
        end: &mut ConnectionEnd,
    ) -> XksFault {
        let err_text = err.to_string();
        if let Some(f) = client_tls::tls_fault(&err, self.tls.for_host(host).presents_cert) {
            return f;
        }
        drop(err);
        let ended = tokio::time::timeout(CONNECTION_END_WAIT, end.wait_for(Option::is_some)).await;
        if let Ok(Ok(state)) = ended {
            if let Some(Some(f)) = state.clone() {
                return f;
            }
        }
        XksFault::Unreachable(err_text)
    }

    async fn once(&self, t: &XksTarget, suffix: &str, body: &[u8]) -> Result<Vec<u8>, XksFault> {
        let (address, host) = self.route(t)?;
        let key = (address.clone(), host.clone());
        let pooled = self
            .pool
            .lock()
            .ok()
            .and_then(|mut p| p.get_mut(&key).and_then(Vec::pop));
        let mut conn = match pooled {
            Some(c) if !c.send.is_closed() => c,
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
        if let Err(e) = conn.send.ready().await {
            return Err(self.request_fault(&host, e, &mut conn.end).await);
        }
        // With TLS 1.3 a proxy that refuses the client certificate says so only after the
        // handshake, so the alert arrives here (or ends the connection: `request_fault`).
        let resp = match conn.send.send_request(req).await {
            Ok(r) => r,
            Err(e) => return Err(self.request_fault(&host, e, &mut conn.end).await),
        };
        let status = resp.status().as_u16();
        let bytes = match resp.into_body().collect().await {
            Ok(b) => b.to_bytes().to_vec(),
            Err(e) => return Err(self.request_fault(&host, e, &mut conn.end).await),
        };
        if let Ok(mut p) = self.pool.lock() {
            let idle = p.entry(key).or_default();
            if idle.len() < 16 {
                idle.push(conn);
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
