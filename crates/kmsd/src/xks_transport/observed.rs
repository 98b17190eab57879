//! A transport wrapper that times every proxy call and counts its outcome per external key
//! store and XKS operation (AWS publishes XksProxyLatency and XksProxyErrors the same way).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use kms_core::xks::{XksFault, XksTarget, XksTransport};

use crate::metrics::Metrics;

/// Wraps a transport; every call is observed in [`Metrics`].
pub struct ObservedTransport<T> {
    inner: T,
    metrics: Arc<Metrics>,
}

impl<T> ObservedTransport<T> {
    /// Observes `inner`'s calls into `metrics`.
    pub fn new(inner: T, metrics: Arc<Metrics>) -> Self {
        ObservedTransport { inner, metrics }
    }
}

/// The XKS API operation a request path suffix stands for.
pub fn xks_operation(suffix: &str) -> &'static str {
    if suffix == "/health" {
        "GetHealthStatus"
    } else if suffix.ends_with("/metadata") {
        "GetKeyMetadata"
    } else if suffix.ends_with("/encrypt") {
        "Encrypt"
    } else if suffix.ends_with("/decrypt") {
        "Decrypt"
    } else {
        "Other"
    }
}

impl<T: XksTransport> XksTransport for ObservedTransport<T> {
    fn call<'a>(
        &'a self,
        target: &'a XksTarget,
        suffix: &'a str,
        body: Vec<u8>,
    ) -> Pin<Box<dyn Future<Output = Result<Vec<u8>, XksFault>> + Send + 'a>> {
        Box::pin(async move {
            let started = Instant::now();
            let result = self.inner.call(target, suffix, body).await;
            self.metrics.observe_xks_call(
                &target.custom_key_store_id,
                xks_operation(suffix),
                result.as_ref().err().map(XksFault::kind),
                started.elapsed().as_secs_f64(),
            );
            result
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_by_path() {
        assert_eq!(xks_operation("/health"), "GetHealthStatus");
        assert_eq!(xks_operation("/keys/k-1/metadata"), "GetKeyMetadata");
        assert_eq!(xks_operation("/keys/k-1/encrypt"), "Encrypt");
        assert_eq!(xks_operation("/keys/k-1/decrypt"), "Decrypt");
    }
}
