//! External key stores: keys backed by an external key manager reached through the XKS proxy
//! API v1. The domain sees the proxy through [`XksTransport`]; the binary implements it over
//! HTTPS with SigV4 (`kms-xks-proxy`).

mod client;
mod health;
mod keys;
mod store;

use std::future::Future;
use std::pin::Pin;

pub use client::{ProxyHealth, XksClient, XksTarget};
pub use health::{HealthBoard, ProxyHealthReport, HEALTH_CHECK_OPERATION};
pub use store::XksStoreConfig;

/// Why a proxy call failed, in the terms the error mapping needs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XksFault {
    /// No TCP connection (refused, unknown host).
    #[error("proxy not reachable: {0}")]
    Unreachable(String),
    /// TLS failed (certificate, name, version).
    #[error("TLS with the proxy failed: {0}")]
    Tls(String),
    /// No answer within the budget.
    #[error("proxy timed out")]
    Timeout,
    /// The proxy answered with an error.
    #[error("proxy answered {status} {name}")]
    Proxy {
        /// HTTP status.
        status: u16,
        /// `errorName`.
        name: String,
    },
    /// The answer could not be interpreted.
    #[error("invalid proxy response: {0}")]
    InvalidResponse(String),
    /// The VPC endpoint service is not declared.
    #[error("VPC endpoint service not found: {0}")]
    VpcServiceNotFound(String),
}

impl XksFault {
    /// A short, stable name of the failure for metrics: the proxy's `errorName`, or
    /// `NotReachable`, `TlsError`, `TimedOut`, `InvalidResponse`, `VpcEndpointServiceNotFound`.
    pub fn kind(&self) -> &str {
        match self {
            XksFault::Unreachable(_) => "NotReachable",
            XksFault::Tls(_) => "TlsError",
            XksFault::Timeout => "TimedOut",
            XksFault::Proxy { name, .. } => name,
            XksFault::InvalidResponse(_) => "InvalidResponse",
            XksFault::VpcServiceNotFound(_) => "VpcEndpointServiceNotFound",
        }
    }
}

/// Sends one XKS request: `POST {uri_endpoint}{uri_path}{suffix}` with `body`, SigV4-signed
/// with the store's credential, within the 250 ms budget. Returns the 200 body.
pub trait XksTransport: Send + Sync {
    /// Performs the call.
    fn call<'a>(
        &'a self,
        target: &'a XksTarget,
        suffix: &'a str,
        body: Vec<u8>,
    ) -> Pin<Box<dyn Future<Output = Result<Vec<u8>, XksFault>> + Send + 'a>>;
}

#[cfg(test)]
mod tests;
