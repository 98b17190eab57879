//! The XKS Proxy API v1: routing, request validation, the four operations, errors, request
//! logging and audit records.

use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{header, HeaderValue, Method, Response, StatusCode};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use kms_audit::AuditWriter;
use kms_hsm::xks::XksTokenInfo;
use kms_hsm::HsmError;
use serde_json::{json, Map, Value};
use zeroize::Zeroizing;

use crate::audit::RequestRecord;
use crate::auth::{self, Decision};
use crate::backend::{Backend, BackendError};
use crate::cipher::{self, METADATA_V1};
use crate::config::{Config, HealthFile, KeyStore};
use crate::key_state::{self, Need, Refusal};
use crate::key_state_cache::KeyStateCache;
use crate::tls::ConnInfo;

/// Largest request body read (bytes); larger bodies get 501 UnsupportedOperationException.
pub const MAX_BODY: usize = 512 * 1024;
/// Largest plaintext / ciphertext accepted (decoded bytes); the spec minimum is 4300.
pub const MAX_DATA: usize = 64 * 1024;
/// Largest AAD accepted (decoded bytes); the spec minimum is 8192, the AAD construction's
/// 16-bit length prefix allows 65535.
pub const MAX_AAD: usize = 65535;
/// How request bodies are read: the time a client has to send one, and the memory that
/// bodies not yet authenticated may hold together.
#[derive(Debug, Clone)]
pub struct BodyReading {
    /// Time allowed to receive a whole request body.
    pub timeout: Duration,
    /// Shared by all requests not yet authenticated.
    pub budget: kms_serve::BodyBudget,
}

impl BodyReading {
    /// From the `[limits]` settings.
    pub fn from_limits(l: &crate::config::LimitsFile) -> BodyReading {
        BodyReading {
            timeout: Duration::from_secs(l.body_timeout_secs),
            budget: kms_serve::BodyBudget::new(
                l.max_unauthenticated_body_mib.saturating_mul(1024 * 1024),
            ),
        }
    }
}
/// Body of `GET /ping`.
pub const PING_RESPONSE: &str = "pong from xks-proxy";

/// An XKS error response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XksError {
    /// HTTP status.
    pub status: StatusCode,
    /// `errorName`.
    pub name: &'static str,
    /// `errorMessage` (printable ASCII, < 512 characters once sanitised).
    pub message: String,
}

impl XksError {
    fn new(status: StatusCode, name: &'static str, message: impl Into<String>) -> Self {
        XksError {
            status,
            name,
            message: message.into(),
        }
    }
    fn validation(m: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "ValidationException", m)
    }
    fn invalid_state(m: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "InvalidStateException", m)
    }
    fn invalid_ciphertext(m: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "InvalidCiphertextException", m)
    }
    fn key_usage(m: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "InvalidKeyUsageException", m)
    }
    fn key_not_found(m: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "KeyNotFoundException", m)
    }
    fn internal(m: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "InternalException", m)
    }

    fn from_backend(e: BackendError) -> Self {
        match e {
            BackendError::Timeout => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "DependencyTimeoutException",
                "the HSM did not answer in time",
            ),
            BackendError::Hsm(HsmError::KeyNotFound) => {
                Self::key_not_found("the key does not exist in the HSM")
            }
            BackendError::Hsm(HsmError::Decrypt) => Self::invalid_ciphertext(
                "decryption failed: ciphertext, IV, AAD, metadata or tag do not authenticate",
            ),
            BackendError::Hsm(e) => {
                tracing::error!(error = %e, "HSM failure");
                Self::internal("key manager failure")
            }
        }
    }

    fn body(&self) -> Value {
        let mut msg: String = self
            .message
            .chars()
            .map(|c| if (' '..='~').contains(&c) { c } else { '?' })
            .collect();
        msg.truncate(511);
        json!({"errorName": self.name, "errorMessage": msg})
    }
}

/// A key store with its run-time state.
#[derive(Debug)]
pub struct StoreRt {
    /// Configuration.
    pub cfg: KeyStore,
    limiter: Option<Mutex<(f64, Instant)>>,
}

impl StoreRt {
    fn new(cfg: KeyStore) -> Self {
        let limiter = cfg
            .max_requests_per_second
            .map(|r| Mutex::new((f64::from(r), Instant::now())));
        StoreRt { cfg, limiter }
    }

    /// Token bucket: capacity and refill rate both `max_requests_per_second`.
    fn admit(&self) -> bool {
        let (Some(l), Some(rate)) = (&self.limiter, self.cfg.max_requests_per_second) else {
            return true;
        };
        let rate = f64::from(rate);
        let mut g = l.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let tokens = (g.0 + now.duration_since(g.1).as_secs_f64() * rate).min(rate);
        if tokens >= 1.0 {
            *g = (tokens - 1.0, now);
            true
        } else {
            *g = (tokens, now);
            false
        }
    }
}

/// The reloadable part of the configuration (SIGHUP).
#[derive(Debug)]
pub struct Runtime {
    /// Global kill switch.
    pub crypto_enabled: bool,
    /// Key stores.
    pub stores: Vec<Arc<StoreRt>>,
}

impl Runtime {
    /// Takes the reloadable parts out of a configuration.
    pub fn from_config(cfg: &mut Config) -> Runtime {
        Runtime {
            crypto_enabled: cfg.crypto_enabled,
            stores: cfg
                .key_stores
                .drain(..)
                .map(|k| Arc::new(StoreRt::new(k)))
                .collect(),
        }
    }
}

/// Everything a request needs.
pub struct App {
    /// Reloadable configuration.
    pub runtime: RwLock<Arc<Runtime>>,
    /// The HSM.
    pub backend: Arc<Backend>,
    /// Audit trail.
    pub audit: AuditWriter,
    /// Health settings.
    pub health: HealthFile,
    /// Token identity for health reports.
    pub token_info: XksTokenInfo,
    /// How request bodies are read.
    pub bodies: BodyReading,
    health_cache: tokio::sync::Mutex<Option<(Instant, &'static str)>>,
}

impl App {
    /// Assembles the application state.
    pub fn new(
        runtime: Runtime,
        backend: Arc<Backend>,
        audit: AuditWriter,
        health: HealthFile,
        token_info: XksTokenInfo,
        bodies: BodyReading,
    ) -> App {
        App {
            runtime: RwLock::new(Arc::new(runtime)),
            backend,
            audit,
            health,
            token_info,
            bodies,
            health_cache: tokio::sync::Mutex::new(None),
        }
    }

    /// The configuration in force.
    pub fn runtime(&self) -> Arc<Runtime> {
        self.runtime
            .read()
            .map(|r| r.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    /// Replaces the reloadable configuration.
    pub fn set_runtime(&self, rt: Runtime) {
        let mut g = self.runtime.write().unwrap_or_else(|p| p.into_inner());
        *g = Arc::new(rt);
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Op {
    Health,
    Metadata(String),
    Encrypt(String),
    Decrypt(String),
}

impl Op {
    fn name(&self) -> &'static str {
        match self {
            Op::Health => "GetHealthStatus",
            Op::Metadata(_) => "GetKeyMetadata",
            Op::Encrypt(_) => "Encrypt",
            Op::Decrypt(_) => "Decrypt",
        }
    }
    fn key(&self) -> Option<&str> {
        match self {
            Op::Health => None,
            Op::Metadata(k) | Op::Encrypt(k) | Op::Decrypt(k) => Some(k),
        }
    }
}

fn parse_op(rest: &str) -> Option<Op> {
    if rest == "health" {
        return Some(Op::Health);
    }
    let rest = rest.strip_prefix("keys/")?;
    let (id, action) = rest.split_once('/')?;
    if id.is_empty() || action.contains('/') {
        return None;
    }
    let id = id.to_owned();
    match action {
        "metadata" => Some(Op::Metadata(id)),
        "encrypt" => Some(Op::Encrypt(id)),
        "decrypt" => Some(Op::Decrypt(id)),
        _ => None,
    }
}

fn route(rt: &Runtime, path: &str) -> Option<(Arc<StoreRt>, Op)> {
    // Longest URI path first, so nested prefixes resolve to the most specific store.
    let mut best: Option<(Arc<StoreRt>, Op)> = None;
    for s in &rt.stores {
        let Some(rest) = path
            .strip_prefix(s.cfg.uri_path.as_str())
            .and_then(|r| r.strip_prefix('/'))
        else {
            continue;
        };
        if let Some(op) = parse_op(rest) {
            if best
                .as_ref()
                .is_none_or(|(b, _)| b.cfg.uri_path.len() < s.cfg.uri_path.len())
            {
                best = Some((s.clone(), op));
            }
        }
    }
    best
}

fn now_secs() -> i64 {
    crate::audit::now_ms().div_euclid(1000)
}

fn json_response(status: StatusCode, v: &Value) -> Response<Body> {
    let mut r = Response::new(Body::from(v.to_string()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn text_response(status: StatusCode, text: &'static str) -> Response<Body> {
    let mut r = Response::new(Body::from(text));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    r
}

/// Handles every request (axum fallback).
pub async fn handle(
    axum::extract::State(app): axum::extract::State<Arc<App>>,
    req: axum::extract::Request,
) -> Response<Body> {
    let started = Instant::now();
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_owned();
    if path == "/ping" {
        return if parts.method == Method::GET || parts.method == Method::HEAD {
            text_response(StatusCode::OK, PING_RESPONSE)
        } else {
            let mut r = text_response(StatusCode::METHOD_NOT_ALLOWED, "");
            r.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET"));
            r
        };
    }
    let conn = parts
        .extensions
        .get::<ConnInfo>()
        .cloned()
        .unwrap_or_default();
    let mut rec = RequestRecord {
        time_ms: crate::audit::now_ms(),
        request_id: uuid::Uuid::new_v4().to_string(),
        operation: "Unknown".into(),
        method: parts.method.to_string(),
        path: path.clone(),
        source_ip: conn.peer.map(|p| p.ip().to_string()).unwrap_or_default(),
        client_cn: conn.client_cn.clone(),
        request_metadata: Value::Null,
        parameters: Value::Null,
        ..Default::default()
    };
    let result = process(&app, &parts, body, &mut rec).await;
    let response = match &result {
        Ok(v) => json_response(StatusCode::OK, v),
        Err(e) if e.status == StatusCode::METHOD_NOT_ALLOWED => {
            let mut r = json_response(e.status, &e.body());
            r.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("POST"));
            r
        }
        Err(e) => json_response(e.status, &e.body()),
    };
    rec.status = response.status().as_u16();
    if let Err(e) = &result {
        rec.error_name = Some(e.name.to_owned());
        rec.error_message = Some(e.message.clone());
    }
    rec.latency_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    log_request(&rec);
    app.audit.record_nowait(rec.to_line());
    response
}

fn md_str(rec: &RequestRecord, name: &str) -> String {
    rec.request_metadata
        .get(name)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

fn log_request(rec: &RequestRecord) {
    let latency_ms = rec.latency_us as f64 / 1000.0;
    tracing::info!(
        target: "xks_proxy::request",
        request_id = %rec.request_id,
        operation = %rec.operation,
        key_store = rec.key_store.as_deref().unwrap_or(""),
        external_key_id = rec.external_key_id.as_deref().unwrap_or(""),
        access_key_id = rec.access_key_id.as_deref().unwrap_or(""),
        kms_request_id = %md_str(rec, "kmsRequestId"),
        kms_operation = %md_str(rec, "kmsOperation"),
        aws_principal_arn = %md_str(rec, "awsPrincipalArn"),
        kms_key_arn = %md_str(rec, "kmsKeyArn"),
        kms_via_service = %md_str(rec, "kmsViaService"),
        source_ip = %rec.source_ip,
        status = rec.status,
        error = rec.error_name.as_deref().unwrap_or(""),
        latency_ms,
        "xks request"
    );
}

async fn process(
    app: &Arc<App>,
    parts: &axum::http::request::Parts,
    body: Body,
    rec: &mut RequestRecord,
) -> Result<Value, XksError> {
    let rt = app.runtime();
    let Some((store, op)) = route(&rt, parts.uri.path()) else {
        return Err(XksError::new(
            StatusCode::NOT_FOUND,
            "InvalidUriPathException",
            format!("no XKS API at {}", parts.uri.path()),
        ));
    };
    rec.operation = op.name().to_owned();
    rec.key_store = Some(store.cfg.name.clone());
    rec.external_key_id = op.key().map(str::to_owned);
    if parts.method != Method::POST {
        return Err(XksError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowedException",
            format!("{} is not allowed here: XKS APIs take POST", parts.method),
        ));
    }
    // Authentication over the raw bytes, before anything in the body is looked at; what needs
    // only the headers is checked before the body is read, so clients without one of the
    // store's access keys cannot make the proxy hold request bodies.
    let mut headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_ascii_lowercase(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    if !headers.iter().any(|(n, _)| n == "host") {
        if let Some(a) = parts.uri.authority() {
            headers.push(("host".into(), a.to_string()));
        }
    }
    rec.access_key_id = headers
        .iter()
        .find(|(n, _)| n == "authorization")
        .and_then(|(_, v)| kms_sigv4::parse_authorization(v).ok())
        .map(|a| a.access_key_id);
    if let Err(m) = auth::check_headers(&store.cfg, &headers) {
        return Err(authentication_failed(&store, m));
    }
    let (body, budget_charge) =
        match kms_serve::read_body(body, MAX_BODY, app.bodies.timeout, &app.bodies.budget).await {
            Ok(read) => read,
            Err(kms_serve::BodyError::TimedOut) => {
                return Err(XksError::validation(
                    "the request body was not received in time",
                ))
            }
            Err(_) => {
                return Err(XksError::new(
                    StatusCode::NOT_IMPLEMENTED,
                    "UnsupportedOperationException",
                    format!("request body larger than {MAX_BODY} bytes"),
                ))
            }
        };
    let req_parts = kms_sigv4::RequestParts {
        method: parts.method.as_str(),
        path: parts.uri.path(),
        query: parts.uri.query().unwrap_or(""),
        headers,
        body: &body,
    };
    let authenticated = auth::authenticate(&store.cfg, &req_parts, now_secs());
    // Authenticated or refused: the body no longer counts against the anonymous budget.
    drop(budget_charge);
    match authenticated {
        Ok(akid) => {
            rec.access_key_id = Some(akid);
            rec.authenticated = true;
        }
        Err(m) => return Err(authentication_failed(&store, m)),
    }
    if !store.admit() {
        return Err(XksError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "ThrottlingException",
            format!("key store {:?} request rate exceeded", store.cfg.name),
        ));
    }

    let v: Value = serde_json::from_slice(&body)
        .map_err(|e| XksError::validation(format!("request body is not valid JSON: {e}")))?;
    let Value::Object(obj) = v else {
        return Err(XksError::validation("request body must be a JSON object"));
    };
    let metadata = obj.get("requestMetadata").cloned().unwrap_or(Value::Null);
    rec.request_metadata = metadata.clone();
    if op == Op::Health {
        // Health is never refused for its metadata (and exempt from authorisation).
        return Ok(health(app).await);
    }
    check_metadata(&op, &metadata)?;

    let key_id = op.key().unwrap_or_default().to_owned();
    let Some(label) = store.cfg.keys.get(&key_id).cloned() else {
        return Err(XksError::key_not_found(format!(
            "external key {key_id:?} is not served by this key store"
        )));
    };
    match auth::authorize(&store.cfg, &key_id, &metadata) {
        Decision::NoRules => {}
        Decision::Allowed(rule) => rec.rule = Some(rule),
        Decision::Denied(m) => {
            tracing::warn!(key_store = %store.cfg.name, reason = %m, "request denied by authorisation rules");
            rec.rule = Some("deny (no rule matched)".into());
            return Err(XksError::new(
                StatusCode::FORBIDDEN,
                "AccessDeniedException",
                m,
            ));
        }
    }
    match op {
        Op::Health => Ok(health(app).await),
        Op::Metadata(_) => metadata_op(app, label).await,
        Op::Encrypt(_) => {
            crypto_allowed(&rt, &store)?;
            encrypt_op(app, label, &obj, rec).await
        }
        Op::Decrypt(_) => {
            crypto_allowed(&rt, &store)?;
            decrypt_op(app, label, &obj, rec).await
        }
    }
}

/// The 401 for a request that failed authentication (logged with the reason).
fn authentication_failed(store: &StoreRt, reason: String) -> XksError {
    tracing::warn!(key_store = %store.cfg.name, %reason, "SigV4 authentication failed");
    XksError::new(
        StatusCode::UNAUTHORIZED,
        "AuthenticationFailedException",
        reason,
    )
}

fn crypto_allowed(rt: &Runtime, store: &StoreRt) -> Result<(), XksError> {
    if !rt.crypto_enabled {
        return Err(XksError::invalid_state(
            "cryptographic operations are disabled on this proxy (kill switch)",
        ));
    }
    if !store.cfg.crypto_enabled {
        return Err(XksError::invalid_state(format!(
            "cryptographic operations are disabled for key store {:?}",
            store.cfg.name
        )));
    }
    Ok(())
}

/// Required requestMetadata members per operation (spec §4); unknown members are ignored.
fn check_metadata(op: &Op, md: &Value) -> Result<(), XksError> {
    let Value::Object(m) = md else {
        return Err(XksError::validation("requestMetadata is required"));
    };
    let mut required = vec!["kmsRequestId", "kmsOperation", "awsPrincipalArn"];
    if matches!(op, Op::Encrypt(_) | Op::Decrypt(_)) {
        required.push("kmsKeyArn");
    }
    for r in required {
        match m.get(r) {
            Some(Value::String(_)) => {}
            Some(_) => {
                return Err(XksError::validation(format!(
                    "requestMetadata.{r} must be a string"
                )))
            }
            None => {
                return Err(XksError::validation(format!(
                    "requestMetadata.{r} is required"
                )))
            }
        }
    }
    for o in ["kmsViaService", "awsSourceVpc", "awsSourceVpce"] {
        if m.get(o).is_some_and(|v| !v.is_string() && !v.is_null()) {
            return Err(XksError::validation(format!(
                "requestMetadata.{o} must be a string"
            )));
        }
    }
    Ok(())
}

/// An optional string member (`null` counts as absent).
fn opt_str<'a>(obj: &'a Map<String, Value>, name: &str) -> Result<Option<&'a str>, XksError> {
    match obj.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(XksError::validation(format!("{name} must be a string"))),
    }
}

fn check_algorithm(obj: &Map<String, Value>) -> Result<(), XksError> {
    match opt_str(obj, "encryptionAlgorithm")? {
        Some("AES_GCM") => Ok(()),
        Some(other) => Err(XksError::validation(format!(
            "encryptionAlgorithm {other:?} is not supported: only AES_GCM"
        ))),
        None => Err(XksError::validation("encryptionAlgorithm is required")),
    }
}

/// Decodes an optional base64 member; `bad` builds the error for malformed or oversized values.
fn opt_b64(
    obj: &Map<String, Value>,
    name: &str,
    max: usize,
    bad: fn(String) -> XksError,
) -> Result<Option<Zeroizing<Vec<u8>>>, XksError> {
    let Some(s) = opt_str(obj, name)? else {
        return Ok(None);
    };
    if s.len() > max.div_ceil(3) * 4 + 4 {
        return Err(XksError::new(
            StatusCode::NOT_IMPLEMENTED,
            "UnsupportedOperationException",
            format!("{name} is longer than the supported {max} bytes"),
        ));
    }
    let v = Zeroizing::new(
        B64.decode(s)
            .map_err(|_| bad(format!("{name} is not valid base64")))?,
    );
    if v.len() > max {
        return Err(XksError::new(
            StatusCode::NOT_IMPLEMENTED,
            "UnsupportedOperationException",
            format!("{name} is longer than the supported {max} bytes"),
        ));
    }
    Ok(Some(v))
}

/// The outcome of an HSM call that first checked the key: the operation's result, or why the
/// key cannot serve it.
type KeyCheck<T> = Result<T, Refusal>;

fn key_error<T>(k: KeyCheck<T>) -> Result<T, XksError> {
    k.map_err(|refusal| match refusal {
        Refusal::Missing => XksError::key_not_found("the external key does not exist in the HSM"),
        Refusal::NotAes256 => XksError::key_usage("the external key is not an AES-256 key"),
        Refusal::Disabled => XksError::invalid_state("the external key is disabled in the HSM"),
        Refusal::NotAllowed(why) => XksError::key_usage(why),
    })
}

/// After a failed operation on a key that looked usable: if it was disabled or restricted
/// meanwhile (e.g. `CKR_KEY_FUNCTION_NOT_PERMITTED`), say so (the state is read from the token
/// again, not taken from memory).
fn recheck<T>(
    states: &KeyStateCache,
    hsm: &kms_hsm::Hsm,
    label: &str,
    need: Need,
    e: HsmError,
) -> Result<KeyCheck<T>, HsmError> {
    if matches!(e, HsmError::Other(_)) {
        if let Ok(Err(refusal @ (Refusal::Disabled | Refusal::NotAllowed(_)))) =
            states.check_fresh(hsm, label, need)
        {
            return Ok(Err(refusal));
        }
    }
    Err(e)
}

/// GetKeyMetadata: `keyUsage` is what the token key allows, `keyStatus` whether it is
/// disabled (see [`key_state`]).
async fn metadata_op(app: &Arc<App>, label: String) -> Result<Value, XksError> {
    let states = app.backend.key_states().clone();
    let info = app
        .backend
        .run(move |hsm| states.read(hsm, &label))
        .await
        .map_err(XksError::from_backend)?;
    let info = key_error(match info {
        None => Err(Refusal::Missing),
        Some(i) if !i.is_aes256() => Err(Refusal::NotAes256),
        Some(i) => Ok(i),
    })?;
    Ok(json!({
        "keySpec": "AES_256",
        "keyUsage": key_state::key_usage(&info),
        "keyStatus": if info.disabled { "DISABLED" } else { "ENABLED" },
    }))
}

struct Sealed {
    iv: [u8; 12],
    ciphertext: Vec<u8>,
    tag: Vec<u8>,
    cdiv: Option<[u8; 32]>,
}

async fn encrypt_op(
    app: &Arc<App>,
    label: String,
    obj: &Map<String, Value>,
    rec: &mut RequestRecord,
) -> Result<Value, XksError> {
    check_algorithm(obj)?;
    let plaintext = opt_b64(obj, "plaintext", MAX_DATA, XksError::validation)?
        .ok_or_else(|| XksError::validation("plaintext is required"))?;
    let aad = opt_b64(
        obj,
        "additionalAuthenticatedData",
        MAX_AAD,
        XksError::validation,
    )?
    .unwrap_or_default();
    let want_cdiv = match opt_str(obj, "ciphertextDataIntegrityValueAlgorithm")? {
        None => false,
        Some("SHA_256") => true,
        Some(other) => {
            return Err(XksError::validation(format!(
                "ciphertextDataIntegrityValueAlgorithm {other:?} is not supported: only SHA_256"
            )))
        }
    };
    rec.parameters = json!({
        "encryptionAlgorithm": "AES_GCM",
        "plaintextBytes": plaintext.len(),
        "aadBytes": aad.len(),
        "ciphertextDataIntegrityValueAlgorithm": if want_cdiv { Some("SHA_256") } else { None },
    });
    let gcm_aad = cipher::gcm_aad(&aad, &METADATA_V1)
        .ok_or_else(|| XksError::validation("additionalAuthenticatedData is too long"))?;
    let aad = aad.to_vec();
    let need = Need::Encrypt {
        trial_decrypt: want_cdiv,
    };
    let states = app.backend.key_states().clone();
    let sealed = app
        .backend
        .run(move |hsm| -> Result<KeyCheck<Sealed>, HsmError> {
            if let Err(refusal) = states.check(hsm, &label, need)? {
                return Ok(Err(refusal));
            }
            // Two attempts: a trial decrypt that fails (CDIV requested) leads to one retry
            // with a fresh IV.
            let mut last = HsmError::Other("trial decryption failed".into());
            for _ in 0..2 {
                let iv: [u8; 12] = kms_crypto::random_array()
                    .map_err(|e| HsmError::Other(format!("random IV: {e}")))?;
                let out = match hsm.xks_aes_gcm_encrypt(&label, &iv, &gcm_aad, &plaintext) {
                    Ok(o) => o,
                    Err(e) => return recheck(&states, hsm, &label, need, e),
                };
                if out.len() < kms_hsm::GCM_TAG_LEN {
                    return Err(HsmError::Other("HSM returned a short ciphertext".into()));
                }
                let (ct, tag) = out.split_at(out.len() - kms_hsm::GCM_TAG_LEN);
                let mut sealed = Sealed {
                    iv,
                    ciphertext: ct.to_vec(),
                    tag: tag.to_vec(),
                    cdiv: None,
                };
                if !want_cdiv {
                    return Ok(Ok(sealed));
                }
                // CDIV over the output first, then prove the output decrypts.
                sealed.cdiv = Some(cipher::cdiv(&aad, &METADATA_V1, &iv, ct, tag));
                match hsm.xks_aes_gcm_decrypt(&label, &iv, &gcm_aad, &out) {
                    Ok(p) if kms_crypto::constant_time_eq(&p, &plaintext) => return Ok(Ok(sealed)),
                    Ok(_) => {
                        tracing::error!("trial decryption returned different plaintext; retrying");
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "trial decryption failed; retrying");
                        last = e;
                    }
                }
            }
            // A trial decryption the token refused (usage taken away meanwhile) is reported as such.
            recheck(&states, hsm, &label, need, last)
        })
        .await
        .map_err(XksError::from_backend)?;
    let s = key_error(sealed)?;
    let mut out = json!({
        "ciphertext": B64.encode(&s.ciphertext),
        "ciphertextMetadata": B64.encode(METADATA_V1),
        "initializationVector": B64.encode(s.iv),
        "authenticationTag": B64.encode(&s.tag),
    });
    if let Some(c) = s.cdiv {
        out["ciphertextDataIntegrityValue"] = json!(B64.encode(c));
    }
    Ok(out)
}

async fn decrypt_op(
    app: &Arc<App>,
    label: String,
    obj: &Map<String, Value>,
    rec: &mut RequestRecord,
) -> Result<Value, XksError> {
    check_algorithm(obj)?;
    let ciphertext = opt_b64(obj, "ciphertext", MAX_DATA, XksError::invalid_ciphertext)?
        .ok_or_else(|| XksError::invalid_ciphertext("ciphertext is required"))?;
    let iv = opt_b64(
        obj,
        "initializationVector",
        16,
        XksError::invalid_ciphertext,
    )?
    .ok_or_else(|| XksError::invalid_ciphertext("initializationVector is required"))?;
    let tag = opt_b64(obj, "authenticationTag", 16, XksError::invalid_ciphertext)?
        .ok_or_else(|| XksError::invalid_ciphertext("authenticationTag is required"))?;
    let aad = opt_b64(
        obj,
        "additionalAuthenticatedData",
        MAX_AAD,
        XksError::invalid_ciphertext,
    )?
    .unwrap_or_default();
    let metadata = opt_b64(
        obj,
        "ciphertextMetadata",
        cipher::MAX_METADATA_LEN,
        XksError::invalid_ciphertext,
    )?;
    rec.parameters = json!({
        "encryptionAlgorithm": "AES_GCM",
        "ciphertextBytes": ciphertext.len(),
        "aadBytes": aad.len(),
        "ciphertextMetadataBytes": metadata.as_ref().map(|m| m.len()),
    });
    let iv: [u8; 12] = match iv.len() {
        12 => {
            let mut a = [0u8; 12];
            a.copy_from_slice(&iv);
            a
        }
        16 => return Err(XksError::invalid_ciphertext(
            "this proxy only produces 12-byte IVs: a 16-byte IV cannot be one of its ciphertexts",
        )),
        n => {
            return Err(XksError::invalid_ciphertext(format!(
                "initializationVector must be 12 or 16 bytes, not {n}"
            )))
        }
    };
    if tag.len() != kms_hsm::GCM_TAG_LEN {
        return Err(XksError::invalid_ciphertext(format!(
            "authenticationTag must be 16 bytes, not {}",
            tag.len()
        )));
    }
    let gcm_aad = match metadata.as_deref() {
        None => aad.to_vec(),
        Some(m) if m[..] == METADATA_V1[..] => cipher::gcm_aad(&aad, m).ok_or_else(|| {
            XksError::invalid_ciphertext("additionalAuthenticatedData is too long")
        })?,
        Some(_) => {
            return Err(XksError::invalid_ciphertext(
                "ciphertextMetadata is not one this proxy produced",
            ))
        }
    };
    let mut ct_tag = Zeroizing::new(Vec::with_capacity(ciphertext.len() + tag.len()));
    ct_tag.extend_from_slice(&ciphertext);
    ct_tag.extend_from_slice(&tag);
    let states = app.backend.key_states().clone();
    let plain = app
        .backend
        .run(
            move |hsm| -> Result<KeyCheck<Zeroizing<Vec<u8>>>, HsmError> {
                if let Err(refusal) = states.check(hsm, &label, Need::Decrypt)? {
                    return Ok(Err(refusal));
                }
                match hsm.xks_aes_gcm_decrypt(&label, &iv, &gcm_aad, &ct_tag) {
                    Ok(p) => Ok(Ok(p)),
                    Err(HsmError::Decrypt) => Err(HsmError::Decrypt),
                    Err(e) => recheck(&states, hsm, &label, Need::Decrypt, e),
                }
            },
        )
        .await
        .map_err(XksError::from_backend)?;
    let plain = key_error(plain)?;
    Ok(json!({ "plaintext": B64.encode(&*plain) }))
}

/// The deep health check: an encrypt/decrypt round trip with the dedicated test key, reused
/// for `health.cache_secs` (≤ 60 s).
async fn health(app: &Arc<App>) -> Value {
    let status = {
        let mut cache = app.health_cache.lock().await;
        let ttl = Duration::from_secs(app.health.cache_secs);
        match *cache {
            Some((at, s)) if at.elapsed() < ttl => s,
            _ => {
                let s = deep_check(app).await;
                *cache = Some((Instant::now(), s));
                s
            }
        }
    };
    json!({
        "xksProxyFleetSize": app.health.fleet_size,
        "xksProxyVendor": "kmsd project",
        "xksProxyModel": concat!("xks-proxy ", env!("CARGO_PKG_VERSION")),
        "ekmVendor": app.token_info.manufacturer,
        "ekmFleetDetails": [{
            "id": app.token_info.label,
            "model": app.token_info.model,
            "healthStatus": status,
        }],
    })
}

async fn deep_check(app: &Arc<App>) -> &'static str {
    let label = app.health.key_label.clone();
    let r = app
        .backend
        .run(move |hsm| {
            let iv: [u8; 12] =
                kms_crypto::random_array().map_err(|e| HsmError::Other(e.to_string()))?;
            let probe: [u8; 32] =
                kms_crypto::random_array().map_err(|e| HsmError::Other(e.to_string()))?;
            let aad = b"xks-proxy deep health check";
            let ct = hsm.xks_aes_gcm_encrypt(&label, &iv, aad, &probe)?;
            let pt = hsm.xks_aes_gcm_decrypt(&label, &iv, aad, &ct)?;
            Ok(kms_crypto::constant_time_eq(&pt, &probe))
        })
        .await;
    match r {
        Ok(true) => "ACTIVE",
        Ok(false) => {
            tracing::error!("deep health check: round trip returned different data");
            "UNAVAILABLE"
        }
        Err(e) => {
            tracing::error!(error = %e, "deep health check failed");
            "UNAVAILABLE"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn op_parsing() {
        assert_eq!(parse_op("health"), Some(Op::Health));
        assert_eq!(
            parse_op("keys/a.b_c-1/encrypt"),
            Some(Op::Encrypt("a.b_c-1".into()))
        );
        assert_eq!(parse_op("keys/x/metadata"), Some(Op::Metadata("x".into())));
        assert_eq!(parse_op("keys//encrypt"), None);
        assert_eq!(parse_op("keys/x/encrypt/"), None);
        assert_eq!(parse_op("keys/x/sign"), None);
        assert_eq!(parse_op("healthz"), None);
    }

    #[test]
    fn throttling_bucket() {
        let cfg = crate::config::KeyStore {
            name: "s".into(),
            uri_path: "/kms/xks/v1".into(),
            region: "r".into(),
            crypto_enabled: true,
            max_requests_per_second: Some(2),
            credentials: vec![],
            keys: Default::default(),
            rules: vec![],
        };
        let s = StoreRt::new(cfg);
        assert!(s.admit() && s.admit());
        assert!(!s.admit());
        std::thread::sleep(Duration::from_millis(600));
        assert!(s.admit());
    }

    #[test]
    fn error_message_is_sanitised() {
        let e = XksError::validation(format!("bad\u{7}value {}", "x".repeat(600)));
        let b = e.body();
        let m = b["errorMessage"].as_str().unwrap();
        assert!(m.len() < 512);
        assert!(m.starts_with("bad?value"));
    }
}
