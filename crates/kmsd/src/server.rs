//! The HTTP server: one handler at `POST /` that frames AWS JSON 1.1 (and STS Query) requests
//! and responses, plus the `--dev` clock endpoint and the web console's static files.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Version};
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
    /// The audit trail.
    pub audit: kms_audit::AuditWriter,
    /// Prometheus metrics.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Proxies whose `X-Forwarded-For` is believed (see [`crate::client_ip`]).
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// Time a client has to send a whole request body.
    pub body_read_timeout: std::time::Duration,
    /// Memory that request bodies not yet authenticated may hold together.
    pub body_budget: kms_serve::BodyBudget,
    /// Request quotas (`--quotas`); `None` when off.
    pub quotas: Option<Arc<crate::quota::Quotas>>,
    /// The audit trail's directory (read by `Kmsd.ReadAuditRecords`).
    pub audit_dir: std::path::PathBuf,
    /// Serve the web console at `/console/`.
    pub console: bool,
}

/// The router: every path goes to one handler, as AWS JSON services use `POST /`; with the
/// console on, `GET /console/...` serves its static files.
pub fn router(state: Arc<AppState>) -> Router {
    let console = state.console;
    let r = Router::new();
    let r = if console {
        use axum::routing::get;
        r.route("/console", get(crate::console::redirect))
            .route("/console/", get(crate::console::serve))
            .route("/console/{*file}", get(crate::console::serve))
    } else {
        r
    };
    r.fallback(handle).with_state(state)
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

/// What the audit record of one call needs beyond the caller.
struct CallInfo {
    event_name: String,
    event_source: &'static str,
    request_parameters: serde_json::Value,
    response_elements: serde_json::Value,
    error: Option<KmsError>,
}

/// Asks an HTTP/1 client to close the connection after this response (its request body was
/// left unread, so the connection cannot carry another request).
fn closing_connection(mut r: Response, version: Version) -> Response {
    if version < Version::HTTP_2 {
        r.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    r
}

/// Reads a request body (at most [`MAX_BODY_BYTES`], within the body timeout, charged to the
/// budget of unauthenticated bodies), or the response that refuses it.
async fn read_request_body(
    app: &AppState,
    body: Body,
    version: Version,
    request_id: &str,
) -> Result<(Bytes, kms_serve::BudgetCharge), Response> {
    use kms_serve::BodyError;
    kms_serve::read_body(
        body,
        MAX_BODY_BYTES,
        app.body_read_timeout,
        &app.body_budget,
    )
    .await
    .map_err(|why| {
        let message = match why {
            BodyError::TimedOut => format!(
                "The request body was not received within {} seconds",
                app.body_read_timeout.as_secs()
            ),
            BodyError::TooLarge | BodyError::Read(_) => format!(
                "The request body is larger than {MAX_BODY_BYTES} bytes or could not be read"
            ),
        };
        let e = KmsError::new(ErrorCode::SerializationException, message);
        closing_connection(json_error(&e, request_id), version)
    })
}

async fn handle(
    State(app): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    let request_id = uuid::Uuid::new_v4().to_string();
    let started_ms = kms_core::SystemClock.now_ms();
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_owned();
    if let (AuthMode::Dev { .. }, "/_kmsd/dev/advance-clock") = (&app.auth, path.as_str()) {
        return match read_request_body(&app, body, parts.version, &request_id).await {
            Ok((body, _)) => advance_clock(&app, &body, &request_id).await,
            Err(refused) => refused,
        };
    }
    let headers = header_pairs(&parts.headers, parts.uri.authority().map(|a| a.as_str()));
    // A request without a well-formed Authorization header is answered without reading its
    // body: anonymous clients cannot make kmsd hold request bodies.
    let header_check = crate::auth::authorization(&headers);
    let (body, budget_charge) = match &header_check {
        Ok(_) => match read_request_body(&app, body, parts.version, &request_id).await {
            Ok(read) => read,
            Err(refused) => return refused,
        },
        Err(_) => (Bytes::new(), kms_serve::BudgetCharge::default()),
    };
    let body_unread = header_check.is_err();
    let response = handle_read(
        &app,
        peer,
        &parts,
        headers,
        header_check,
        body,
        budget_charge,
        &request_id,
        started_ms,
    )
    .await;
    if body_unread {
        closing_connection(response, parts.version)
    } else {
        response
    }
}

/// The rest of [`handle`], once the body is read (or, without a well-formed Authorization
/// header, left unread: `header_check` holds the error).
#[allow(clippy::too_many_arguments)]
async fn handle_read(
    app: &AppState,
    peer: SocketAddr,
    parts: &axum::http::request::Parts,
    headers: Vec<(String, String)>,
    header_check: Result<crate::sigv4::ParsedAuth, KmsError>,
    body: Bytes,
    budget_charge: kms_serve::BudgetCharge,
    request_id: &str,
    started_ms: i64,
) -> Response {
    let path = parts.uri.path();
    // CloudHSM v2 in Smithy RPC v2 CBOR (botocore >= 1.44): the operation is in the path and
    // the body CBOR; the JSON 1.1 path serves it and the answer is re-encoded at the end. The
    // signature stays checked over the body as sent.
    let cbor_op = crate::cbor::operation_of(path).map(str::to_owned);
    let dispatch_body = match &cbor_op {
        None => body.clone(),
        Some(_) if header_check.is_err() => body.clone(),
        Some(_) => match crate::cbor::request_to_json(&body) {
            Ok(json) => axum::body::Bytes::from(json),
            Err(why) => {
                let e = KmsError::new(
                    ErrorCode::SerializationException,
                    format!("The request body is not valid RPC v2 CBOR: {why}"),
                );
                return crate::cbor::into_cbor_response(json_error(&e, request_id)).await;
            }
        },
    };
    let target = match &cbor_op {
        Some(op) => Some(format!("BaldrApiService.{op}")),
        None => parts
            .headers
            .get("x-amz-target")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
    };
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let is_sts = target.is_none() && content_type.starts_with("application/x-www-form-urlencoded");
    let req_parts = RequestParts {
        method: parts.method.as_str(),
        path,
        query: parts.uri.query().unwrap_or(""),
        headers,
        body: &body,
    };
    let host = req_parts
        .headers
        .iter()
        .find(|(n, _)| n == "host")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    // Signatures are checked against real time: the dev clock only moves key lifecycles.
    let now_secs = started_ms / 1000;
    let is_cloudhsm = target
        .as_deref()
        .is_some_and(|t| t.starts_with("BaldrApiService."));
    let service = if is_sts {
        "sts"
    } else if is_cloudhsm {
        "cloudhsm"
    } else {
        "kms"
    };
    let secure = parts.extensions.get::<crate::tls::TlsDetails>().is_some();
    let forwarded_for: Vec<&str> = parts
        .headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    let client_ip = crate::client_ip::resolve(peer.ip(), &forwarded_for, &app.trusted_proxies);
    // What other kmsd processes and nodes sharing the store wrote (a deleted access key, a
    // disabled key, ...) is visible to this request. Unsigned requests never reach the store.
    let synced = match &header_check {
        Ok(_) => app.service.sync_changes_async().await,
        Err(_) => Ok(()),
    };
    let auth = synced
        .and_then(|()| header_check.as_ref().map_err(Clone::clone))
        .and_then(|parsed| {
            authenticate(
                &app.service,
                &app.auth,
                &req_parts,
                parsed,
                service,
                now_secs,
                Some(client_ip),
                request_id,
                secure,
            )
        });
    // Authenticated or refused: the body no longer counts against the anonymous budget.
    drop(budget_charge);
    let op = match (&target, is_sts) {
        (_, true) => crate::sts::action(&body).unwrap_or_default(),
        (Some(t), false) => t
            .strip_prefix("TrentService.")
            .or_else(|| t.strip_prefix("BaldrApiService."))
            .or_else(|| t.strip_prefix(crate::audit_api::TARGET_PREFIX))
            .unwrap_or(t)
            .to_owned(),
        (None, false) => String::new(),
    };
    let (response, info) = match &auth {
        Err(e) => {
            tracing::debug!(request_id, code = e.code.as_str(), "authentication failed");
            let r = if is_sts {
                sts_error(e, request_id)
            } else {
                json_error(e, request_id)
            };
            (
                r,
                CallInfo {
                    event_name: op.clone(),
                    event_source: source_of(is_sts, is_cloudhsm),
                    request_parameters: serde_json::Value::Null,
                    response_elements: serde_json::Value::Null,
                    error: Some(e.clone()),
                },
            )
        }
        Ok(caller) if is_sts => sts_call(app, caller, &op, &body, request_id).await,
        Ok(caller) => {
            kms_call(
                app,
                caller,
                target.as_deref(),
                &op,
                &dispatch_body,
                request_id,
            )
            .await
        }
    };
    let caller = auth.ok();
    // For calls that failed authentication, record what the Authorization header claimed.
    let claimed = header_check.ok();
    let record = kms_audit::ApiCallRecord {
        time_ms: started_ms,
        event_name: info.event_name,
        event_source: info.event_source.to_owned(),
        region: caller
            .as_ref()
            .map(|c| c.region.clone())
            .or_else(|| claimed.as_ref().map(|a| a.region.clone()))
            .unwrap_or_default(),
        account: caller.as_ref().map(|c| c.account.clone()),
        principal_arn: caller.as_ref().map(|c| c.principal_arn.clone()),
        principal_id: caller.as_ref().map(|c| c.user_id.clone()),
        access_key_id: caller
            .as_ref()
            .map(|c| c.access_key_id.clone())
            .or_else(|| claimed.as_ref().map(|a| a.access_key_id.clone())),
        source_ip: client_ip.to_string(),
        user_agent: parts
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned(),
        request_parameters: info.request_parameters,
        response_elements: info.response_elements,
        error_code: info.error.as_ref().map(|e| e.code.as_str().to_owned()),
        error_message: info.error.as_ref().map(|e| e.message.clone()),
        request_id: request_id.to_owned(),
        event_id: uuid::Uuid::new_v4().to_string(),
        read_only: crate::audit::is_read_only(&op),
        resources: caller.as_ref().map(|c| c.touched()).unwrap_or_default(),
        tls: parts
            .extensions
            .get::<crate::tls::TlsDetails>()
            .map(|t| (t.version.clone(), t.cipher_suite.clone(), host)),
    };
    // Serialised once, here; the writer thread only splices in the chain link.
    let audited = match kms_audit::AuditLine::from_serialize(&record) {
        Ok(line) => app.audit.record(line).await,
        Err(e) => Err(e),
    };
    if record.error_code.is_none() && audited.is_ok() {
        // GetKeyLastUsage: in memory now, written to the store in batches.
        for arn in &record.resources {
            app.service.record_key_usage(
                arn,
                &record.event_name,
                (started_ms, &record.request_id, &record.event_id),
            );
        }
    }
    let error_code = record
        .error_code
        .as_deref()
        .or(audited.as_ref().err().map(|_| "KMSInternalException"));
    app.metrics.observe(
        if record.event_name.is_empty() {
            "(none)"
        } else {
            &record.event_name
        },
        error_code,
        (kms_core::SystemClock.now_ms() - started_ms) as f64 / 1000.0,
    );
    if let Err(e) = audited {
        // Fail closed: a call whose audit record is not durable is not acknowledged.
        tracing::error!(request_id, error = %e, "audit record not written; failing the request");
        let e = KmsError::internal(
            "kmsd could not write the audit record for this request; it was not acknowledged",
        );
        return if is_sts {
            sts_error(&e, request_id)
        } else if cbor_op.is_some() {
            crate::cbor::into_cbor_response(json_error(&e, request_id)).await
        } else {
            json_error(&e, request_id)
        };
    }
    if cbor_op.is_some() {
        return crate::cbor::into_cbor_response(response).await;
    }
    response
}

fn source_of(is_sts: bool, is_cloudhsm: bool) -> &'static str {
    if is_sts {
        "sts.amazonaws.com"
    } else if is_cloudhsm {
        "cloudhsm.amazonaws.com"
    } else {
        "kms.amazonaws.com"
    }
}

async fn sts_call(
    app: &AppState,
    caller: &kms_core::Caller,
    action: &str,
    body: &[u8],
    request_id: &str,
) -> (Response, CallInfo) {
    let info = |error, request_parameters, response_elements| CallInfo {
        event_name: action.to_owned(),
        event_source: "sts.amazonaws.com",
        request_parameters,
        response_elements,
        error,
    };
    let null = serde_json::Value::Null;
    match action {
        "GetCallerIdentity" => {
            let body = crate::sts::get_caller_identity(caller).into_bytes();
            (
                respond(200, "text/xml", request_id, None, body),
                info(None, null.clone(), null),
            )
        }
        "AssumeRole" => {
            let role_arn = crate::sts::param(body, "RoleArn").unwrap_or_default();
            let session = crate::sts::param(body, "RoleSessionName").unwrap_or_default();
            let duration = crate::sts::param(body, "DurationSeconds");
            let params = serde_json::json!({
                "roleArn": role_arn,
                "roleSessionName": session,
                "durationSeconds": duration,
            });
            let result = match duration.as_deref().map(str::parse::<i64>) {
                Some(Err(_)) => Err(KmsError::new(
                    ErrorCode::ValidationException,
                    "DurationSeconds must be a number of seconds",
                )),
                d => {
                    let secs = d.and_then(Result::ok).unwrap_or(3600);
                    app.service
                        .assume_role_for(caller, &role_arn, &session, secs)
                        .await
                }
            };
            match result {
                Ok(creds) => {
                    let elements = serde_json::json!({
                        "credentials": {
                            "accessKeyId": creds.access_key_id,
                            "expiration": creds.expires_ms / 1000,
                        },
                        "assumedRoleUser": {
                            "assumedRoleId": creds.assumed_role_id,
                            "arn": creds.assumed_role_arn,
                        },
                    });
                    let body = crate::sts::assume_role(&creds, request_id).into_bytes();
                    (
                        respond(200, "text/xml", request_id, None, body),
                        info(None, params, elements),
                    )
                }
                Err(e) => (sts_error(&e, request_id), info(Some(e), params, null)),
            }
        }
        _ => {
            let e = KmsError::new(
                ErrorCode::UnsupportedOperationException,
                format!(
                    "kmsd answers the STS actions GetCallerIdentity and AssumeRole, not {}",
                    if action.is_empty() { "(none)" } else { action }
                ),
            );
            (sts_error(&e, request_id), info(Some(e), null.clone(), null))
        }
    }
}

async fn kms_call(
    app: &AppState,
    caller: &kms_core::Caller,
    target: Option<&str>,
    op: &str,
    body: &[u8],
    request_id: &str,
) -> (Response, CallInfo) {
    let request_parameters = serde_json::from_slice::<serde_json::Value>(body)
        .map(|v| kms_audit::redact_request(v, kms_types::REDACTED_MEMBERS))
        .unwrap_or(serde_json::Value::Null);
    let mut info = CallInfo {
        event_name: op.to_owned(),
        event_source: "kms.amazonaws.com",
        request_parameters,
        response_elements: serde_json::Value::Null,
        error: None,
    };
    if target.is_some_and(|t| t.starts_with(crate::audit_api::TARGET_PREFIX)) {
        match crate::audit_api::call(&app.service, &app.audit_dir, caller, op, body).await {
            Ok(out) => return (respond(200, JSON_CT, request_id, None, out), info),
            Err(e) => {
                let r = json_error(&e, request_id);
                info.error = Some(e);
                return (r, info);
            }
        }
    }
    let cloudhsm = target.is_some_and(|t| t.starts_with("BaldrApiService."));
    if cloudhsm {
        info.event_source = "cloudhsm.amazonaws.com";
    }
    if !cloudhsm
        && target
            .and_then(|t| t.strip_prefix("TrentService."))
            .is_none()
    {
        let e = KmsError::new(
            ErrorCode::UnknownOperationException,
            format!(
                "X-Amz-Target must be 'TrentService.<Operation>', not '{}'",
                target.unwrap_or_default()
            ),
        );
        let r = json_error(&e, request_id);
        info.error = Some(e);
        return (r, info);
    }
    // Request quotas (KMS operations; the CloudHSM API has none here).
    if let (Some(quotas), false) = (&app.quotas, cloudhsm) {
        let charges = app.service.quota_charges(caller, op, body);
        if let Err(e) = quotas.admit(&caller.account, &caller.region, &charges) {
            tracing::debug!(
                request_id,
                op,
                principal = caller.principal_arn,
                "throttled"
            );
            let r = json_error(&e, request_id);
            info.error = Some(e);
            return (r, info);
        }
    }
    let started = std::time::Instant::now();
    let result = if cloudhsm {
        app.service.dispatch_cloudhsm(caller, op, body).await
    } else {
        app.service.dispatch(caller, op, body).await
    };
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
            if !crate::audit::is_read_only(op) {
                info.response_elements = serde_json::from_slice::<serde_json::Value>(&out)
                    .map(|v| kms_audit::redact_request(v, kms_types::REDACTED_MEMBERS))
                    .unwrap_or(serde_json::Value::Null);
            }
            (respond(200, JSON_CT, request_id, None, out), info)
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
            let r = json_error(&e, request_id);
            info.error = Some(e);
            (r, info)
        }
    }
}

fn sts_error(e: &KmsError, request_id: &str) -> Response {
    respond(
        crate::sts::status(e.code),
        "text/xml",
        request_id,
        None,
        crate::sts::error(e, request_id).into_bytes(),
    )
}

/// `--dev` only: moves the service clock forward by the number of seconds in the body and runs
/// the cluster jobs (`kms_core::jobs::CLUSTER_JOBS`: deletions, rotations, daily cluster backups,
/// imported-material expiry) at once. Lets tests see scheduled deletions happen.
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
    match app.service.run_cluster_jobs_now().await {
        Ok(done) => {
            // {"DeletedKeys":n,...} in the jobs' order.
            let counts: Vec<String> = done
                .iter()
                .map(|(name, n)| format!("\"{name}\":{n}"))
                .collect();
            respond(
                200,
                "application/json",
                request_id,
                None,
                format!("{{{}}}", counts.join(",")).into_bytes(),
            )
        }
        Err(e) => json_error(&e, request_id),
    }
}
