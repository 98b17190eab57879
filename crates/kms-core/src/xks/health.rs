//! Periodic health checks of connected external key stores' proxies, as AWS runs them
//! (GetHealthStatus with `kmsOperation` `KmsHealthCheck`).
//!
//! As in AWS, a failing proxy does not change the store's ConnectionState: CONNECTED means
//! "Connect was done and not undone", and a FAILED store would need Disconnect + Connect, so it
//! could not recover by itself. The checks' outcome is kept here, per store, in memory, and
//! shown by the binary (`/readyz`, `/metrics`); a store is unhealthy after a configurable number
//! of consecutive failed checks and healthy again at the first check that passes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::client::{ProxyHealth, RequestMetadata};
use super::store::connection_error_code;
use super::XksFault;
use crate::service::Service;

/// The `kmsOperation` of periodic health checks (not a KMS API; AWS uses this name).
pub const HEALTH_CHECK_OPERATION: &str = "KmsHealthCheck";

/// What the health checks know about one connected external key store's proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyHealthReport {
    /// The external key store (`cks-...`).
    pub custom_key_store_id: String,
    /// False once `unhealthy_after` consecutive checks failed; true again at the first success.
    pub healthy: bool,
    /// Failed checks since the last success.
    pub consecutive_failures: u32,
    /// Why the last check failed, as a ConnectionErrorCode (e.g. `XKS_PROXY_NOT_REACHABLE`);
    /// `None` when it passed.
    pub last_error_code: Option<String>,
    /// Why the last check failed, in words; `None` when it passed.
    pub last_error: Option<String>,
    /// When the last check ended (ms since the epoch).
    pub last_check_ms: i64,
    /// The proxy's last GetHealthStatus answer (HSM count and states), if any.
    pub last_answer: Option<ProxyHealth>,
}

/// How a recorded check changed a store's health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transition {
    Unchanged,
    BecameUnhealthy,
    Recovered,
}

/// The health of every connected external key store's proxy.
#[derive(Debug, Default)]
pub struct HealthBoard {
    reports: Mutex<HashMap<String, ProxyHealthReport>>,
}

impl HealthBoard {
    fn with_reports<T>(&self, f: impl FnOnce(&mut HashMap<String, ProxyHealthReport>) -> T) -> T {
        let mut guard = self.reports.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard)
    }

    /// Records a check that passed.
    fn record_success(&self, store_id: &str, now_ms: i64, answer: ProxyHealth) -> Transition {
        self.with_reports(|m| {
            let was_healthy = m.get(store_id).is_none_or(|r| r.healthy);
            m.insert(
                store_id.to_owned(),
                ProxyHealthReport {
                    custom_key_store_id: store_id.to_owned(),
                    healthy: true,
                    consecutive_failures: 0,
                    last_error_code: None,
                    last_error: None,
                    last_check_ms: now_ms,
                    last_answer: Some(answer),
                },
            );
            if was_healthy {
                Transition::Unchanged
            } else {
                Transition::Recovered
            }
        })
    }

    /// Records a failed check; the store turns unhealthy at `unhealthy_after` failures in a row.
    fn record_failure(
        &self,
        store_id: &str,
        now_ms: i64,
        fault: &XksFault,
        answer: Option<ProxyHealth>,
        unhealthy_after: u32,
    ) -> Transition {
        self.with_reports(|m| {
            let report = m
                .entry(store_id.to_owned())
                .or_insert_with(|| ProxyHealthReport {
                    custom_key_store_id: store_id.to_owned(),
                    healthy: true,
                    consecutive_failures: 0,
                    last_error_code: None,
                    last_error: None,
                    last_check_ms: now_ms,
                    last_answer: None,
                });
            report.consecutive_failures = report.consecutive_failures.saturating_add(1);
            report.last_error_code = Some(connection_error_code(fault).to_owned());
            report.last_error = Some(fault.to_string());
            report.last_check_ms = now_ms;
            if answer.is_some() {
                report.last_answer = answer;
            }
            if report.healthy && report.consecutive_failures >= unhealthy_after.max(1) {
                report.healthy = false;
                Transition::BecameUnhealthy
            } else {
                Transition::Unchanged
            }
        })
    }

    /// Forgets a store (disconnected, or connected anew).
    fn forget(&self, store_id: &str) {
        self.with_reports(|m| m.remove(store_id));
    }

    /// Every report, by store id.
    pub fn reports(&self) -> Vec<ProxyHealthReport> {
        let mut all: Vec<ProxyHealthReport> = self.with_reports(|m| m.values().cloned().collect());
        all.sort_by(|a, b| a.custom_key_store_id.cmp(&b.custom_key_store_id));
        all
    }
}

impl Service {
    /// The ids of the external key stores connected in this process (their keys usable).
    pub fn connected_external_key_stores(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .xks_targets
            .read()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        ids.sort();
        ids
    }

    /// The health of every connected external key store's proxy (stores not checked yet are
    /// missing).
    pub fn xks_proxy_health(&self) -> Vec<ProxyHealthReport> {
        self.xks_health.reports()
    }

    /// One periodic health check of a connected external key store's proxy: GetHealthStatus
    /// within the proxy-call budget; a proxy whose every key manager is UNAVAILABLE fails it.
    /// The outcome is dropped if the store was disconnected or reconnected meanwhile.
    pub async fn check_xks_proxy(&self, store_id: &str, unhealthy_after: u32) {
        let Some(target) = self
            .xks_targets
            .read()
            .ok()
            .and_then(|m| m.get(store_id).cloned())
        else {
            return;
        };
        let Some(client) = self.xks_client() else {
            return;
        };
        let meta = RequestMetadata {
            kms_request_id: uuid::Uuid::new_v4().to_string(),
            kms_operation: HEALTH_CHECK_OPERATION.into(),
            aws_principal_arn: None,
            kms_key_arn: None,
        };
        let outcome = client.health_status(&target, meta).await;
        let now = self.now_ms();
        let Ok(targets) = self.xks_targets.read() else {
            return;
        };
        // Holding the read lock: a concurrent disconnect forgets the report after this write.
        if !targets
            .get(store_id)
            .is_some_and(|t| Arc::ptr_eq(t, &target))
        {
            return;
        }
        let transition = match outcome {
            Ok(answer) if answer.ekm_count("UNAVAILABLE") < answer.ekm_health.len() => {
                self.xks_health.record_success(store_id, now, answer)
            }
            Ok(answer) => {
                let fault =
                    XksFault::Unreachable("every external key manager is UNAVAILABLE".into());
                let t = self.xks_health.record_failure(
                    store_id,
                    now,
                    &fault,
                    Some(answer),
                    unhealthy_after,
                );
                tracing::debug!(custom_key_store = %store_id, fault = %fault, "external key store health check failed");
                t
            }
            Err(fault) => {
                tracing::debug!(custom_key_store = %store_id, fault = %fault, "external key store health check failed");
                self.xks_health
                    .record_failure(store_id, now, &fault, None, unhealthy_after)
            }
        };
        drop(targets);
        match transition {
            Transition::BecameUnhealthy => {
                let report = self
                    .xks_health
                    .reports()
                    .into_iter()
                    .find(|r| r.custom_key_store_id == store_id);
                tracing::warn!(
                    custom_key_store = %store_id,
                    failed_checks = report.as_ref().map_or(0, |r| r.consecutive_failures),
                    error_code = report.as_ref().and_then(|r| r.last_error_code.clone()).unwrap_or_default(),
                    error = report.as_ref().and_then(|r| r.last_error.clone()).unwrap_or_default(),
                    "external key store proxy is unhealthy: its keys fail with KMSInvalidStateException until it answers again (the store stays CONNECTED)"
                );
            }
            Transition::Recovered => {
                tracing::info!(custom_key_store = %store_id, "external key store proxy answers its health checks again");
            }
            Transition::Unchanged => {}
        }
    }

    /// Records the health check a Connect or Update just passed.
    pub(crate) fn record_xks_health(&self, store_id: &str, answer: ProxyHealth) {
        self.xks_health
            .record_success(store_id, self.now_ms(), answer);
    }

    /// Forgets the health of a store whose target was replaced or removed.
    pub(crate) fn forget_xks_health(&self, store_id: &str) {
        self.xks_health.forget(store_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(states: &[&str]) -> ProxyHealth {
        ProxyHealth {
            proxy_fleet_size: 1,
            ekm_health: states.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    #[test]
    fn unhealthy_after_the_threshold_and_recovers_at_the_first_success() {
        let board = HealthBoard::default();
        let down = XksFault::Timeout;
        assert_eq!(
            board.record_success("cks-1", 1, answer(&["ACTIVE"])),
            Transition::Unchanged
        );
        assert_eq!(
            board.record_failure("cks-1", 2, &down, None, 2),
            Transition::Unchanged
        );
        let r = &board.reports()[0];
        assert!(r.healthy);
        assert_eq!(r.consecutive_failures, 1);
        assert_eq!(r.last_error_code.as_deref(), Some("XKS_PROXY_TIMED_OUT"));
        assert_eq!(
            board.record_failure("cks-1", 3, &down, None, 2),
            Transition::BecameUnhealthy
        );
        assert_eq!(
            board.record_failure("cks-1", 4, &down, None, 2),
            Transition::Unchanged
        );
        let r = &board.reports()[0];
        assert!(!r.healthy);
        assert_eq!(r.consecutive_failures, 3);
        // The last answer is kept through failures without one.
        assert_eq!(r.last_answer, Some(answer(&["ACTIVE"])));
        assert_eq!(
            board.record_success("cks-1", 5, answer(&["ACTIVE", "DEGRADED"])),
            Transition::Recovered
        );
        let r = &board.reports()[0];
        assert!(r.healthy);
        assert_eq!(r.consecutive_failures, 0);
        assert_eq!(r.last_error, None);
        board.forget("cks-1");
        assert!(board.reports().is_empty());
    }
}
