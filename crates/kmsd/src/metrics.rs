//! Prometheus metrics: requests by operation and error, latency histograms, audit lag.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Labels of the request counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// KMS operation (or STS action).
    pub operation: String,
    /// AWS error code, or empty for success.
    pub error: String,
}

/// Labels of the latency histogram.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationLabel {
    /// KMS operation.
    pub operation: String,
}

/// All of kmsd's metrics.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<OperationLabel, Histogram>,
    audit_pending: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("kmsd");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "API requests by operation and error code (empty: success)",
            requests.clone(),
        );
        let latency = Family::<OperationLabel, Histogram>::new_with_constructor(
            (|| Histogram::new(exponential_buckets(0.000_05, 2.0, 18))) as fn() -> Histogram,
        );
        registry.register(
            "request_duration_seconds",
            "Request latency, from body read to response (audit write included)",
            latency.clone(),
        );
        let audit_pending = Gauge::default();
        registry.register(
            "audit_pending_records",
            "Audit records queued but not yet on disk (audit lag)",
            audit_pending.clone(),
        );
        Metrics {
            registry,
            requests,
            latency,
            audit_pending,
        }
    }

    /// Counts one request and its latency.
    pub fn observe(&self, operation: &str, error: Option<&str>, seconds: f64) {
        self.requests
            .get_or_create(&RequestLabels {
                operation: operation.to_owned(),
                error: error.unwrap_or_default().to_owned(),
            })
            .inc();
        self.latency
            .get_or_create(&OperationLabel {
                operation: operation.to_owned(),
            })
            .observe(seconds);
    }

    /// The Prometheus text exposition, with the audit lag sampled now.
    pub fn render(&self, audit_pending: u64) -> String {
        self.audit_pending.set(audit_pending as i64);
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
