//! The background loop that health-checks every connected external key store's proxy, as AWS
//! does: all stores at once every `health_check_interval_secs` (first round at start), each
//! check within the proxy-call budget. What it finds is shown by `/readyz` and `/metrics`.

use std::sync::Arc;
use std::time::Duration;

use kms_core::Service;

/// Checks every connected external key store's proxy every `every`, forever; a proxy is
/// reported unhealthy after `unhealthy_after` consecutive failures.
pub async fn run(service: Arc<Service>, every: Duration, unhealthy_after: u32) {
    let mut tick = tokio::time::interval(every.max(Duration::from_secs(1)));
    // A slow round (many stores, proxies timing out) delays the next one instead of bunching.
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let mut checks = tokio::task::JoinSet::new();
        for store_id in service.connected_external_key_stores() {
            let service = service.clone();
            checks.spawn(async move { service.check_xks_proxy(&store_id, unhealthy_after).await });
        }
        while checks.join_next().await.is_some() {}
    }
}
