//! Prometheus metrics: requests by operation and error, latency histograms, audit lag, custom
//! key store connection states, external key store proxies ([`crate::xks_metrics`]).

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

/// Labels of the key store connection-state gauge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KeyStoreLabels {
    /// `cks-...`
    pub custom_key_store_id: String,
    /// `AWS_CLOUDHSM` or `EXTERNAL_KEY_STORE`.
    pub custom_key_store_type: String,
    /// One of the five connection states.
    pub state: String,
}

/// The connection states DescribeCustomKeyStores reports.
const CONNECTION_STATES: [&str; 5] = [
    "CONNECTED",
    "CONNECTING",
    "DISCONNECTED",
    "DISCONNECTING",
    "FAILED",
];

/// All of kmsd's metrics.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<OperationLabel, Histogram>,
    audit_pending: Gauge,
    key_store_states: Family<KeyStoreLabels, Gauge>,
    xks: crate::xks_metrics::XksMetrics,
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
        let key_store_states = Family::<KeyStoreLabels, Gauge>::default();
        registry.register(
            "custom_key_store_connection_state",
            "1 for the state each custom key store is in, 0 for the others",
            key_store_states.clone(),
        );
        let xks = crate::xks_metrics::XksMetrics::register(&mut registry);
        Metrics {
            registry,
            requests,
            latency,
            audit_pending,
            key_store_states,
            xks,
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

    /// Counts one call to an external key store proxy and its latency.
    pub fn observe_xks_call(
        &self,
        store_id: &str,
        operation: &str,
        error: Option<&str>,
        secs: f64,
    ) {
        self.xks.observe_call(store_id, operation, error, secs);
    }

    /// The Prometheus text exposition, with the audit lag, key store states and external key
    /// store proxy health sampled now.
    pub fn render(
        &self,
        audit_pending: u64,
        key_stores: &[kms_core::hsm::KeyStoreState],
        xks_health: &[kms_core::xks::ProxyHealthReport],
    ) -> String {
        self.audit_pending.set(audit_pending as i64);
        self.xks.set_health(xks_health);
        // Deleted key stores disappear: the family is rebuilt from the current list.
        self.key_store_states.clear();
        for store in key_stores {
            for state in CONNECTION_STATES {
                self.key_store_states
                    .get_or_create(&KeyStoreLabels {
                        custom_key_store_id: store.id.clone(),
                        custom_key_store_type: store.store_type.clone(),
                        state: state.to_owned(),
                    })
                    .set(i64::from(store.connection_state == state));
            }
        }
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_store_states_are_one_hot_and_follow_the_current_list() {
        let m = Metrics::new();
        let store = |id: &str, state: &str| kms_core::hsm::KeyStoreState {
            id: id.into(),
            store_type: "AWS_CLOUDHSM".into(),
            connection_state: state.into(),
        };
        let text = m.render(0, &[store("cks-1", "FAILED")], &[]);
        let line = |state: &str, v: u8| {
            format!("kmsd_custom_key_store_connection_state{{custom_key_store_id=\"cks-1\",custom_key_store_type=\"AWS_CLOUDHSM\",state=\"{state}\"}} {v}")
        };
        assert!(text.contains(&line("FAILED", 1)), "{text}");
        assert!(text.contains(&line("CONNECTED", 0)), "{text}");
        let text = m.render(0, &[], &[]);
        assert!(!text.contains("cks-1"), "deleted stores disappear: {text}");
    }

    #[test]
    fn external_key_store_proxy_calls_and_health() {
        let m = Metrics::new();
        m.observe_xks_call("cks-x", "Encrypt", None, 0.003);
        m.observe_xks_call("cks-x", "GetHealthStatus", Some("TimedOut"), 0.5);
        let report = kms_core::xks::ProxyHealthReport {
            custom_key_store_id: "cks-x".into(),
            healthy: false,
            consecutive_failures: 3,
            last_error_code: Some("XKS_PROXY_TIMED_OUT".into()),
            last_error: Some("proxy timed out".into()),
            last_check_ms: 0,
            last_answer: Some(kms_core::xks::ProxyHealth {
                proxy_fleet_size: 1,
                ekm_health: vec!["ACTIVE".into(), "UNAVAILABLE".into()],
            }),
        };
        let text = m.render(0, &[], &[report]);
        for line in [
            "kmsd_xks_proxy_requests_total{custom_key_store_id=\"cks-x\",xks_operation=\"Encrypt\",error=\"\"} 1",
            "kmsd_xks_proxy_requests_total{custom_key_store_id=\"cks-x\",xks_operation=\"GetHealthStatus\",error=\"TimedOut\"} 1",
            "kmsd_xks_proxy_request_duration_seconds_count{custom_key_store_id=\"cks-x\",xks_operation=\"Encrypt\"} 1",
            "kmsd_xks_proxy_healthy{custom_key_store_id=\"cks-x\"} 0",
            "kmsd_xks_proxy_failed_health_checks{custom_key_store_id=\"cks-x\"} 3",
            "kmsd_xks_proxy_hsm_count{custom_key_store_id=\"cks-x\"} 2",
            "kmsd_xks_external_key_manager_states{custom_key_store_id=\"cks-x\",state=\"UNAVAILABLE\"} 1",
        ] {
            assert!(text.contains(line), "{line} missing in {text}");
        }
        let text = m.render(0, &[], &[]);
        assert!(
            !text.contains("kmsd_xks_proxy_healthy{"),
            "disconnected stores disappear from the health gauges: {text}"
        );
    }
}
