//! The HTTP server: one handler at `POST /` that frames AWS JSON 1.1 (and STS Query) requests
//! and responses, plus the `--dev` clock endpoint.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use axum::Router;
use kms_core::{Clock, ManualClock, Service};
use kms_types::{ErrorCode, KmsError};

use crate::auth::{authenticate, AuthMode};
use crate::sigv4::RequestParts;

/// Largest request body accepted (the largest legal KMS input is ~350 KiB of base64).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Everything a request handler needs.
pub struct AppState {
    /// The KMS service.
    pub service: Arc<Service>,
    /// How requests are authenticated.
    pub auth: AuthMode,
    /// The clock (a [`ManualClock`] so `--dev` can move it).
    pub clock: Arc<ManualClock>,
}

/// The router: every path goes to one handler, as AWS JSON services use `POST /`.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new().fallback(handle).with_state(state)
}

const JSON_CT: &str = "application/x-amz-json-1.1";

fn respond(
    status: u16,
    content_type: &str,
    request_id: &str,
    error_type: Option<&str>,
    body: Vec<u8>,
) -> Response {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(content_type).unwrap_or(HeaderValue::from_static(JSON_CT)),
    );
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert("x-amzn-requestid", v);
    }
    if let Ok(v) = HeaderValue::from_str(&httpdate::fmt_http_date(std::time::SystemTime::now())) {
        h.insert(header::DATE, v);
    }
    if let Some(t) = error_type.and_then(|t| HeaderValue::from_str(t).ok()) {
        h.insert("x-amzn-errortype", t);
    }
    r
}

fn json_error(e: &KmsError, request_id: &str) -> Response {
    respond(
        e.code.status(),
        JSON_CT,
        request_id,
        Some(e.code.as_str()),
        e.to_body(),
    )
}

fn header_pairs(headers: &HeaderMap, authority: Option<&str>) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = headers
        .iter()
        .filter_map(|(n, v)| {
            v.to_str()
                .ok()
                .map(|v| (n.as_str().to_owned(), v.to_owned()))
        })
        .collect();
    // HTTP/2 carries the host in :authority, which hyper exposes as the URI authority.
    if !headers.contains_key(header::HOST) {
        if let Some(a) = authority {
            out.push(("host".into(), a.to_owned()));
        }
    }
    out
}

async fn handle(
    State(app): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    let request_id = uuid::Uuid::new_v4().to_string();
    let (parts, body) = req.into_parts();
    let body = match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        Ok(b) => b,
        Err(_) => {
            let e = KmsError::new(
                ErrorCode::SerializationException,
                format!(
                    "The request body is larger than {MAX_BODY_BYTES} bytes or could not be read"
                ),
            );
            return json_error(&e, &request_id);
        }
    };
    let path = parts.uri.path().to_owned();
    if let (AuthMode::Dev { .. }, "/_kmsd/dev/advance-clock") = (&app.auth, path.as_str()) {
        return advance_clock(&app, &body, &request_id).await;
    }
    let target = parts
        .headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let is_sts = target.is_none() && content_type.starts_with("application/x-www-form-urlencoded");
    let req_parts = RequestParts {
        method: parts.method.as_str(),
        path: &path,
        query: parts.uri.query().unwrap_or(""),
        headers: header_pairs(&parts.headers, parts.uri.authority().map(|a| a.as_str())),
        body: &body,
    };
    // Signatures are checked against real time: the dev clock only moves key lifecycles.
    let now_secs = kms_core::SystemClock.now_ms() / 1000;
    let service = if is_sts { "sts" } else { "kms" };
    let caller = match authenticate(
        &app.service,
        &app.auth,
        &req_parts,
        service,
        now_secs,
        Some(peer.ip()),
        &request_id,
    ) {
        Ok(c) => c,
        Err(e) => {
            tracing::debug!(request_id, code = e.code.as_str(), "authentication failed");
            return if is_sts {
                sts_error(&e, &request_id)
            } else {
                json_error(&e, &request_id)
            };
        }
    };
    if is_sts {
        return match crate::sts::action(&body).as_deref() {
            Some("GetCallerIdentity") => respond(
                200,
                "text/xml",
                &request_id,
                None,
                crate::sts::get_caller_identity(&caller).into_bytes(),
            ),
            other => sts_error(
                &KmsError::new(
                    ErrorCode::UnsupportedOperationException,
                    format!(
                        "kmsd answers only the STS action GetCallerIdentity, not {}",
                        other.unwrap_or("(none)")
                    ),
                ),
                &request_id,
            ),
        };
    }
    let op = match target
        .as_deref()
        .and_then(|t| t.strip_prefix("TrentService."))
    {
        Some(op) => op.to_owned(),
        None => {
            let e = KmsError::new(
                ErrorCode::UnknownOperationException,
                format!(
                    "X-Amz-Target must be 'TrentService.<Operation>', not '{}'",
                    target.unwrap_or_default()
                ),
            );
            return json_error(&e, &request_id);
        }
    };
    let started = std::time::Instant::now();
    let result = app.service.dispatch(&caller, &op, &body).await;
    let micros = started.elapsed().as_micros() as u64;
    match result {
        Ok(out) => {
            tracing::debug!(
                request_id,
                op,
                principal = caller.principal_arn,
                micros,
                "ok"
            );
            respond(200, JSON_CT, &request_id, None, out)
        }
        Err(e) => {
            tracing::debug!(
                request_id,
                op,
                principal = caller.principal_arn,
                micros,
                code = e.code.as_str(),
                "error"
            );
            json_error(&e, &request_id)
        }
    }
}

fn sts_error(e: &KmsError, request_id: &str) -> Response {
    respond(
        e.code.status(),
        "text/xml",
        request_id,
        None,
        crate::sts::error(e, request_id).into_bytes(),
    )
}

/// `--dev` only: moves the service clock forward by the number of seconds in the body and runs
/// the deletion sweeper at once. Lets tests see scheduled deletions happen.
async fn advance_clock(app: &AppState, body: &[u8], request_id: &str) -> Response {
    let secs: Option<i64> = std::str::from_utf8(body)
        .ok()
        .and_then(|s| s.trim().parse().ok());
    let Some(secs) = secs.filter(|s| *s >= 0) else {
        let e = KmsError::new(
            ErrorCode::ValidationException,
            "body must be a non-negative number of seconds",
        );
        return json_error(&e, request_id);
    };
    app.clock.advance_ms(secs.saturating_mul(1000));
    match app.service.sweep_due_deletions().await {
        Ok(n) => respond(
            200,
            "application/json",
            request_id,
            None,
            format!("{{\"DeletedKeys\":{n}}}").into_bytes(),
        ),
        Err(e) => json_error(&e, request_id),
    }
}
