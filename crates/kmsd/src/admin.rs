//! The admin listener: `/healthz` (liveness), `/readyz` (storage and audit trail usable; key
//! store connection states; external key store proxy health),
//! `/metrics` (Prometheus). Separate from the API listener so it can stay on a private address.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use crate::server::AppState;

/// The admin router.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn readyz(State(app): State<Arc<AppState>>) -> impl IntoResponse {
    // A round trip to the store (PostgreSQL: not ready while the database is unreachable),
    // off the async workers.
    let store = app.service.store().clone();
    let storage = match tokio::task::spawn_blocking(move || store.ping()).await {
        Ok(Ok(())) => "ok".to_owned(),
        Ok(Err(e)) => format!("error: {e}"),
        Err(e) => format!("error: {e}"),
    };
    let audit = if app.audit.is_running() {
        "ok".to_owned()
    } else {
        "error: audit writer stopped".to_owned()
    };
    let ready = storage == "ok" && audit == "ok";
    // A disconnected or failed key store makes only its own keys unusable, so it is reported
    // here but does not take the whole instance out of service.
    let key_stores: serde_json::Map<String, serde_json::Value> = app
        .service
        .key_store_states()
        .unwrap_or_default()
        .into_iter()
        .map(|k| (k.id, serde_json::Value::String(k.connection_state)))
        .collect();
    // External key stores stay CONNECTED while their proxy fails (as in AWS); the periodic
    // health checks say how the proxy is doing.
    let proxies: serde_json::Map<String, serde_json::Value> = app
        .service
        .xks_proxy_health()
        .into_iter()
        .map(|r| {
            let hsm_count = r.last_answer.as_ref().map(|a| a.ekm_health.len());
            (
                r.custom_key_store_id,
                serde_json::json!({
                    "healthy": r.healthy,
                    "consecutiveFailedChecks": r.consecutive_failures,
                    "lastErrorCode": r.last_error_code,
                    "lastError": r.last_error,
                    "lastCheckMs": r.last_check_ms,
                    "hsmCount": hsm_count,
                }),
            )
        })
        .collect();
    let body = serde_json::json!({
        "ready": ready,
        "storage": storage,
        "audit": audit,
        "auditPendingRecords": app.audit.pending(),
        "customKeyStores": key_stores,
        "externalKeyStoreProxies": proxies,
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        [("content-type", "application/json")],
        body.to_string(),
    )
}

async fn metrics(State(app): State<Arc<AppState>>) -> impl IntoResponse {
    (
        [(
            "content-type",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        app.metrics.render(
            app.audit.pending(),
            &app.service.key_store_states().unwrap_or_default(),
            &app.service.xks_proxy_health(),
        ),
    )
}
