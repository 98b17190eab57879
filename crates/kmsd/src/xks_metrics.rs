//! External key store proxy metrics, per store: call latency and outcomes (AWS:
//! XksProxyLatency, XksProxyErrors), and what the periodic health checks found (health,
//! XksProxyHsmCount, XksExternalKeyManagerStates).

use kms_core::xks::ProxyHealthReport;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Labels of the proxy call counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProxyCallLabels {
    /// `cks-...`
    pub custom_key_store_id: String,
    /// `GetHealthStatus`, `GetKeyMetadata`, `Encrypt` or `Decrypt`.
    pub xks_operation: String,
    /// Empty for success; else the proxy's `errorName` or `NotReachable`, `TlsError`,
    /// `TimedOut`, `InvalidResponse`, `VpcEndpointServiceNotFound`.
    pub error: String,
}

/// Labels of the proxy latency histogram.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProxyOperationLabels {
    /// `cks-...`
    pub custom_key_store_id: String,
    /// XKS operation.
    pub xks_operation: String,
}

/// Labels of per-store gauges.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StoreLabel {
    /// `cks-...`
    pub custom_key_store_id: String,
}

/// Labels of the external key manager state gauge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EkmStateLabels {
    /// `cks-...`
    pub custom_key_store_id: String,
    /// `ACTIVE`, `DEGRADED` or `UNAVAILABLE`.
    pub state: String,
}

/// The external key manager states GetHealthStatus reports.
const EKM_STATES: [&str; 3] = ["ACTIVE", "DEGRADED", "UNAVAILABLE"];

/// The external key store proxy metrics.
pub struct XksMetrics {
    calls: Family<ProxyCallLabels, Counter>,
    latency: Family<ProxyOperationLabels, Histogram>,
    healthy: Family<StoreLabel, Gauge>,
    failed_checks: Family<StoreLabel, Gauge>,
    hsm_count: Family<StoreLabel, Gauge>,
    ekm_states: Family<EkmStateLabels, Gauge>,
}

impl XksMetrics {
    /// Registers the metrics in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let calls = Family::<ProxyCallLabels, Counter>::default();
        registry.register(
            "xks_proxy_requests",
            "Calls to external key store proxies by store, XKS operation and error (empty: success)",
            calls.clone(),
        );
        let latency = Family::<ProxyOperationLabels, Histogram>::new_with_constructor(
            (|| Histogram::new(exponential_buckets(0.000_5, 2.0, 12))) as fn() -> Histogram,
        );
        registry.register(
            "xks_proxy_request_duration_seconds",
            "Latency of calls to external key store proxies, retry included (AWS: XksProxyLatency)",
            latency.clone(),
        );
        let healthy = Family::<StoreLabel, Gauge>::default();
        registry.register(
            "xks_proxy_healthy",
            "1 while a connected external key store's proxy passes its periodic health checks, 0 once it failed too many in a row",
            healthy.clone(),
        );
        let failed_checks = Family::<StoreLabel, Gauge>::default();
        registry.register(
            "xks_proxy_failed_health_checks",
            "Consecutive failed health checks of a connected external key store's proxy",
            failed_checks.clone(),
        );
        let hsm_count = Family::<StoreLabel, Gauge>::default();
        registry.register(
            "xks_proxy_hsm_count",
            "External key managers (HSMs) the proxy reported in its last health answer (AWS: XksProxyHsmCount)",
            hsm_count.clone(),
        );
        let ekm_states = Family::<EkmStateLabels, Gauge>::default();
        registry.register(
            "xks_external_key_manager_states",
            "External key managers per health state in the proxy's last health answer (AWS: XksExternalKeyManagerStates)",
            ekm_states.clone(),
        );
        XksMetrics {
            calls,
            latency,
            healthy,
            failed_checks,
            hsm_count,
            ekm_states,
        }
    }

    /// Counts one proxy call and its latency.
    pub fn observe_call(&self, store_id: &str, operation: &str, error: Option<&str>, secs: f64) {
        self.calls
            .get_or_create(&ProxyCallLabels {
                custom_key_store_id: store_id.to_owned(),
                xks_operation: operation.to_owned(),
                error: error.unwrap_or_default().to_owned(),
            })
            .inc();
        self.latency
            .get_or_create(&ProxyOperationLabels {
                custom_key_store_id: store_id.to_owned(),
                xks_operation: operation.to_owned(),
            })
            .observe(secs);
    }

    /// Sets the health gauges from the current reports (stores no longer connected disappear).
    pub fn set_health(&self, reports: &[ProxyHealthReport]) {
        self.healthy.clear();
        self.failed_checks.clear();
        self.hsm_count.clear();
        self.ekm_states.clear();
        for r in reports {
            let store = StoreLabel {
                custom_key_store_id: r.custom_key_store_id.clone(),
            };
            self.healthy.get_or_create(&store).set(i64::from(r.healthy));
            self.failed_checks
                .get_or_create(&store)
                .set(i64::from(r.consecutive_failures));
            let Some(answer) = &r.last_answer else {
                continue;
            };
            self.hsm_count
                .get_or_create(&store)
                .set(answer.ekm_health.len() as i64);
            for state in EKM_STATES {
                self.ekm_states
                    .get_or_create(&EkmStateLabels {
                        custom_key_store_id: r.custom_key_store_id.clone(),
                        state: state.to_owned(),
                    })
                    .set(answer.ekm_count(state) as i64);
            }
        }
    }
}
