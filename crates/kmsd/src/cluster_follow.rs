//! Keeps an idle node in step with the others on its store: reads the change log every
//! second (each request does so before it is served anyway), so a key store connected or
//! disconnected on another node opens or closes this node's HSM sessions and proxy targets
//! even while no request arrives here.

use std::sync::Arc;
use std::time::Duration;

use kms_core::Service;

/// Reads the store's change log every `every`, forever.
pub async fn run(service: Arc<Service>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = service.sync_changes_async().await {
            tracing::debug!(error = %e.message, "reading the store's change log failed; trying again");
        }
    }
}
