//! A minimal HTTPS/1.1 client for the integration tests: raw requests, SigV4-signed XKS calls
//! (service `kms-xks-proxy`) built with `kms_sigv4::sign`, optional client certificates.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use xks_proxy::testkit::{TestProxy, TEST_ACCESS_KEY_ID, TEST_REGION, TEST_SECRET};

/// A response.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "status {} body not JSON ({e}): {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }
    pub fn error_name(&self) -> String {
        self.json()["errorName"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Who signs.
#[derive(Debug, Clone)]
pub struct Signer {
    pub akid: String,
    pub secret: String,
    pub region: String,
    pub service: String,
    /// Added to the current time when signing.
    pub skew_secs: i64,
}

impl Default for Signer {
    fn default() -> Self {
        Signer {
            akid: TEST_ACCESS_KEY_ID.into(),
            secret: TEST_SECRET.into(),
            region: TEST_REGION.into(),
            service: "kms-xks-proxy".into(),
            skew_secs: 0,
        }
    }
}

impl Signer {
    pub fn with(akid: &str, secret: &str) -> Signer {
        Signer {
            akid: akid.into(),
            secret: secret.into(),
            ..Default::default()
        }
    }
}

pub struct Client {
    config: Arc<rustls::ClientConfig>,
    addr: std::net::SocketAddr,
    host: String,
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

impl Client {
    /// Trusts `ca`; presents `client_cert` (cert, key) if given.
    pub fn new(proxy: &TestProxy, client_cert: Option<(&Path, &Path)>) -> Client {
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_file_iter(proxy.ca_pem()).unwrap() {
            roots.add(c.unwrap()).unwrap();
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
        let mut config = match client_cert {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => {
                let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
                    .unwrap()
                    .map(|c| c.unwrap())
                    .collect();
                let key = PrivateKeyDer::from_pem_file(key).unwrap();
                builder.with_client_auth_cert(certs, key).unwrap()
            }
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Client {
            config: Arc::new(config),
            addr: proxy.addr(),
            host: format!("localhost:{}", proxy.addr().port()),
        }
    }

    /// A new TLS connection to the proxy.
    pub async fn connect(
        &self,
    ) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
        let tcp = tokio::net::TcpStream::connect(self.addr).await?;
        tcp.set_nodelay(true)?;
        let connector = tokio_rustls::TlsConnector::from(self.config.clone());
        connector
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
    }

    /// The Host header value requests carry.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Sends one request (own connection, `Connection: close`).
    pub async fn raw(
        &self,
        method: &str,
        path: &str,
        extra_headers: &[(String, String)],
        body: &[u8],
    ) -> std::io::Result<Resp> {
        let mut tls = self.connect().await?;
        let mut req = format!("{method} {path} HTTP/1.1\r\nhost: {}\r\n", self.host);
        for (n, v) in extra_headers {
            req.push_str(&format!("{n}: {v}\r\n"));
        }
        req.push_str(&format!(
            "content-length: {}\r\nconnection: close\r\n\r\n",
            body.len()
        ));
        tls.write_all(req.as_bytes()).await?;
        tls.write_all(body).await?;
        tls.flush().await?;
        let mut buf = Vec::new();
        match tls.read_to_end(&mut buf).await {
            Ok(_) => {}
            // Some servers close without close_notify after Connection: close.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !buf.is_empty() => {}
            Err(e) => return Err(e),
        }
        parse_response(&buf)
    }

    /// A SigV4-signed POST with a JSON body.
    pub async fn signed(&self, path: &str, body: &[u8], signer: &Signer) -> Resp {
        let headers = self.sign_headers(path, body, signer);
        self.raw("POST", path, &headers, body).await.unwrap()
    }

    pub fn sign_headers(&self, path: &str, body: &[u8], signer: &Signer) -> Vec<(String, String)> {
        let base = vec![
            ("host".to_string(), self.host.clone()),
            ("content-type".to_string(), "application/json".to_string()),
        ];
        let parts = kms_sigv4::RequestParts {
            method: "POST",
            path,
            query: "",
            headers: base.clone(),
            body,
        };
        let added = kms_sigv4::sign(
            &parts,
            &signer.akid,
            &signer.secret,
            &signer.region,
            &signer.service,
            now_secs() + signer.skew_secs,
        )
        .unwrap();
        let mut h = vec![base[1].clone()];
        h.extend(added);
        h
    }

    /// Signed XKS call with the default signer.
    pub async fn xks(&self, path: &str, body: &Value) -> Resp {
        self.signed(path, body.to_string().as_bytes(), &Signer::default())
            .await
    }
}

/// Parses a complete HTTP/1.1 response.
pub fn parse_response(buf: &[u8]) -> std::io::Result<Resp> {
    let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_string());
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no header end"))?;
    let head = String::from_utf8_lossy(&buf[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().ok_or_else(|| bad("no status line"))?;
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("bad status line"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = buf[split + 4..].to_vec();
    if headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"))
    {
        let mut out = Vec::new();
        let mut rest = &body[..];
        loop {
            let eol = rest
                .windows(2)
                .position(|w| w == b"\r\n")
                .ok_or_else(|| bad("bad chunk"))?;
            let size = usize::from_str_radix(String::from_utf8_lossy(&rest[..eol]).trim(), 16)
                .map_err(|_| bad("bad chunk size"))?;
            rest = &rest[eol + 2..];
            if size == 0 {
                break;
            }
            out.extend_from_slice(&rest[..size]);
            rest = &rest[size + 2..];
        }
        body = out;
    }
    Ok(Resp {
        status,
        headers,
        body,
    })
}

/// requestMetadata as KMS sends it for a key operation.
pub fn metadata(op: &str) -> Value {
    serde_json::json!({
        "awsPrincipalArn": "arn:aws:iam::123456789012:user/Alice",
        "kmsKeyArn": "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab",
        "kmsOperation": op,
        "kmsRequestId": "4112f4d6-db54-4af4-ae30-c55a22a8dfae",
    })
}
