//! `kmsd-bench`: a closed-loop load generator for kmsd.
//!
//! It opens `--connections` keep-alive HTTP/1.1 connections to a loopback kmsd endpoint and, on
//! each, sends SigV4-signed requests of one operation back to back (every request is freshly
//! signed, as a real SDK client would): `Encrypt`, `GenerateDataKey`, `Decrypt` (of a
//! ciphertext made once at setup), `Sign` (RSA_2048 with
//! RSASSA_PSS_SHA_256, or ECC_NIST_P256 with ECDSA_SHA_256), `Verify` (of a signature made once
//! at setup), or `GenerateMac` (HMAC_256, HMAC_SHA_256). Setup creates a key of the right spec
//! unless `--key-id` names one (e.g. a key in a custom key store). `--op xks-encrypt` instead
//! talks to an XKS proxy directly (HTTPS, SigV4 service `kms-xks-proxy`), the way kmsd calls it
//! for a key in an external key store, so the proxy's own latency can be measured alone.
//!
//! After `--warmup-secs` it records the latency of every response for `--duration-secs`, then
//! prints a summary (or one JSON line with `--json`), including the CPU used during the
//! measured window by this client, by each `--server-pid`, and by everything else on the machine
//! (from `/proc`), so contended runs can be recognised.
//!
//! The hidden `--raw-aes` mode instead times aws-lc-rs AES-256-GCM seals of
//! `--plaintext-bytes` bytes on one thread, `--raw-sign` times SigV4 signing of an Encrypt
//! request, and `--raw-asym` times the primitives behind Sign, Verify and GenerateMac (RSA-2048
//! PSS-SHA256 sign and verify, P-256 ECDSA sign and verify, HMAC-SHA256) on one thread, both
//! bare (key parsed once) and through `kms_crypto` as kmsd calls them per request, so kmsd's
//! overhead over the primitives is visible.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use clap::{Parser, ValueEnum};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, StatusCode};
use kmsd::sigv4::{self, RequestParts};
use tokio::net::TcpStream;

/// Any error this tool reports.
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Content type of the AWS JSON 1.1 protocol.
const JSON_CT: &str = "application/x-amz-json-1.1";

/// The operation under load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Op {
    /// `TrentService.Encrypt` of `--plaintext-bytes` random bytes (symmetric key).
    Encrypt,
    /// `TrentService.GenerateDataKey` with `KeySpec` `AES_256` (symmetric key).
    GenerateDataKey,
    /// `TrentService.Decrypt` of a ciphertext of `--plaintext-bytes` made by Encrypt at setup
    /// (symmetric key).
    Decrypt,
    /// `TrentService.Sign` of a `--plaintext-bytes` message, RSA_2048 key, RSASSA_PSS_SHA_256.
    SignRsa,
    /// `TrentService.Sign` of a `--plaintext-bytes` message, ECC_NIST_P256 key, ECDSA_SHA_256.
    SignEcc,
    /// `TrentService.Verify` (RSA_2048, RSASSA_PSS_SHA_256) of a signature made at setup.
    VerifyRsa,
    /// `TrentService.Verify` (ECC_NIST_P256, ECDSA_SHA_256) of a signature made at setup.
    VerifyEcc,
    /// `TrentService.GenerateMac` of a `--plaintext-bytes` message, HMAC_256 key, HMAC_SHA_256.
    GenerateMac,
    /// XKS proxy API `POST <--xks-path>/keys/<--key-id>/encrypt` sent straight to a proxy
    /// (`https://` endpoint), AES_GCM with AAD and the SHA_256 integrity value, as kmsd sends it.
    XksEncrypt,
}

impl Op {
    /// The API operation name (the `X-Amz-Target` suffix for kmsd operations).
    fn api(self) -> &'static str {
        match self {
            Op::Encrypt => "Encrypt",
            Op::GenerateDataKey => "GenerateDataKey",
            Op::Decrypt => "Decrypt",
            Op::SignRsa | Op::SignEcc => "Sign",
            Op::VerifyRsa | Op::VerifyEcc => "Verify",
            Op::GenerateMac => "GenerateMac",
            Op::XksEncrypt => "XksEncrypt",
        }
    }

    /// The name used in reports.
    fn label(self) -> &'static str {
        match self {
            Op::Encrypt => "Encrypt",
            Op::GenerateDataKey => "GenerateDataKey",
            Op::Decrypt => "Decrypt",
            Op::SignRsa => "Sign RSA_2048 RSASSA_PSS_SHA_256",
            Op::SignEcc => "Sign ECC_NIST_P256 ECDSA_SHA_256",
            Op::VerifyRsa => "Verify RSA_2048 RSASSA_PSS_SHA_256",
            Op::VerifyEcc => "Verify ECC_NIST_P256 ECDSA_SHA_256",
            Op::GenerateMac => "GenerateMac HMAC_256 HMAC_SHA_256",
            Op::XksEncrypt => "XKS proxy Encrypt",
        }
    }

    /// The CreateKey body for this operation's key.
    fn create_key_body(self) -> &'static [u8] {
        match self {
            Op::Encrypt | Op::GenerateDataKey | Op::Decrypt | Op::XksEncrypt => b"{}",
            Op::SignRsa | Op::VerifyRsa => br#"{"KeySpec":"RSA_2048","KeyUsage":"SIGN_VERIFY"}"#,
            Op::SignEcc | Op::VerifyEcc => {
                br#"{"KeySpec":"ECC_NIST_P256","KeyUsage":"SIGN_VERIFY"}"#
            }
            Op::GenerateMac => br#"{"KeySpec":"HMAC_256","KeyUsage":"GENERATE_VERIFY_MAC"}"#,
        }
    }

    /// The signing algorithm of Sign/Verify operations.
    fn signing_algorithm(self) -> Option<&'static str> {
        match self {
            Op::SignRsa | Op::VerifyRsa => Some("RSASSA_PSS_SHA_256"),
            Op::SignEcc | Op::VerifyEcc => Some("ECDSA_SHA_256"),
            _ => None,
        }
    }

    /// Whether a successful answer looks right (checked on each connection's first answer).
    fn answer_ok(self, body: &[u8]) -> bool {
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
            return false;
        };
        let non_empty = |field: &str| {
            v.get(field)
                .and_then(|f| f.as_str())
                .is_some_and(|s| !s.is_empty())
        };
        match self {
            Op::Encrypt => non_empty("CiphertextBlob"),
            Op::GenerateDataKey => non_empty("Plaintext") && non_empty("CiphertextBlob"),
            Op::Decrypt => non_empty("Plaintext"),
            Op::SignRsa | Op::SignEcc => non_empty("Signature"),
            Op::VerifyRsa | Op::VerifyEcc => {
                v.get("SignatureValid") == Some(&serde_json::Value::Bool(true))
            }
            Op::GenerateMac => non_empty("Mac"),
            Op::XksEncrypt => non_empty("ciphertext") && non_empty("ciphertextDataIntegrityValue"),
        }
    }
}

/// Command-line arguments.
#[derive(Debug, Parser)]
#[command(
    name = "kmsd-bench",
    about = "Closed-loop load generator for a loopback kmsd (or XKS proxy)"
)]
struct Args {
    /// Endpoint, e.g. `http://127.0.0.1:8080` or `https://localhost:8443` (loopback only).
    #[arg(long, required_unless_present_any = ["raw_aes", "raw_sign", "raw_asym"])]
    endpoint: Option<String>,
    /// Operation to send.
    #[arg(long, value_enum, default_value_t = Op::Encrypt)]
    op: Op,
    /// Number of keep-alive connections, each with one request in flight.
    #[arg(long, default_value_t = 16)]
    connections: usize,
    /// Measured duration in seconds (after warmup).
    #[arg(long, default_value_t = 10)]
    duration_secs: u64,
    /// Warmup in seconds (load is sent but not recorded).
    #[arg(long, default_value_t = 2)]
    warmup_secs: u64,
    /// Plaintext size for Encrypt, message size for Sign/Verify/GenerateMac (and for the raw
    /// modes).
    #[arg(long, default_value_t = 256)]
    plaintext_bytes: usize,
    /// AWS shared credentials file; the `[default]` profile is used. Without it the access key
    /// `bench` / secret `bench` is used, which a `--dev` server accepts.
    #[arg(long)]
    credentials_file: Option<PathBuf>,
    /// SigV4 signing region.
    #[arg(long, default_value = "us-east-1")]
    region: String,
    /// Spread the load uniformly over this many symmetric keys created at setup (`encrypt` and
    /// `generate-data-key`), one in ten with an alias. Setup reports CreateKey throughput per
    /// tenth of the keys and the latency of every ListKeys (1000) and ListAliases (100) page,
    /// so costs that grow with the number of keys show.
    #[arg(long, default_value_t = 1)]
    keys: usize,
    /// Spread the load uniformly over every key ListKeys shows (made earlier, e.g. by a run
    /// with `--keys` before the server restarted); each must accept the operation.
    #[arg(long, conflicts_with = "keys")]
    existing_keys: bool,
    /// Key to use; if absent one of the operation's spec is created with CreateKey. For
    /// `xks-encrypt`, the proxy's external key id (required).
    #[arg(long)]
    key_id: Option<String>,
    /// URI path of the XKS proxy's key store (`xks-encrypt` only).
    #[arg(long, default_value = "/example/kms/xks/v1")]
    xks_path: String,
    /// PEM CA bundle to trust for an `https://` endpoint.
    #[arg(long)]
    ca_file: Option<PathBuf>,
    /// A server process whose CPU use during the measured window is reported (repeatable).
    #[arg(long)]
    server_pid: Vec<u32>,
    /// Client runtime worker threads (0 = number of CPUs).
    #[arg(long, default_value_t = 0)]
    client_threads: usize,
    /// Print one JSON line instead of the text summary.
    #[arg(long)]
    json: bool,
    /// Time raw AES-256-GCM seals of `--plaintext-bytes` on one thread instead of load testing.
    #[arg(long, hide = true)]
    raw_aes: bool,
    /// Time SigV4 signing of an Encrypt request on one thread instead of load testing.
    #[arg(long, hide = true)]
    raw_sign: bool,
    /// Time RSA-2048 PSS / P-256 ECDSA sign and verify and HMAC-SHA256 on one thread.
    #[arg(long, hide = true)]
    raw_asym: bool,
}

/// TLS settings of an `https://` endpoint.
struct Tls {
    /// The connector (rustls, aws-lc-rs provider).
    connector: tokio_rustls::TlsConnector,
    /// The server name to verify (the endpoint's host).
    name: rustls::pki_types::ServerName<'static>,
}

/// What every connection needs to build and sign requests.
struct Ctx {
    /// Resolved loopback address of the server.
    addr: SocketAddr,
    /// `Host` header value (`host:port` as given in the endpoint).
    host: String,
    /// TLS, for `https://` endpoints.
    tls: Option<Tls>,
    /// Access key id.
    access_key_id: String,
    /// Secret access key.
    secret: String,
    /// Signing region.
    region: String,
    /// SigV4 service name (`kms` or `kms-xks-proxy`).
    service: &'static str,
    /// Request path.
    path: String,
    /// Content type.
    content_type: &'static str,
    /// `X-Amz-Target` value, if any.
    target: Option<String>,
    /// The JSON request bodies (one per key under load; each request takes one at random).
    bodies: Vec<Bytes>,
    /// The operation under load.
    op: Op,
}

/// Phase boundaries shared by all connections.
#[derive(Clone, Copy)]
struct Timing {
    /// Requests started before this are warmup and not recorded.
    warm_end: Instant,
    /// No request is started after this, and responses after it are not recorded.
    deadline: Instant,
}

/// What one connection measured.
#[derive(Default)]
struct WorkerResult {
    /// Latencies in microseconds of recorded responses (any status).
    latencies_us: Vec<u64>,
    /// Recorded responses with a status other than 200.
    http_errors: u64,
    /// Recorded transport failures (connect, send or read); they have no latency.
    transport_errors: u64,
}

/// The first error seen by any connection, printed once in the summary.
static FIRST_ERROR: OnceLock<String> = OnceLock::new();

/// CPU use during the measured window, in cores (CPU seconds per second).
#[derive(Debug, Clone, Default)]
struct CpuUse {
    /// All CPUs of the machine, busy (everything but idle and iowait).
    machine: f64,
    /// This process.
    client: f64,
    /// Each `--server-pid`.
    servers: Vec<(u32, f64)>,
    /// The rest: machine minus client minus servers (other load on the machine).
    other: f64,
}

/// The final numbers, printed as text or JSON.
struct Summary {
    /// Operation label.
    op: &'static str,
    /// Number of connections.
    connections: usize,
    /// Measured seconds.
    duration_secs: f64,
    /// Recorded requests (responses plus transport failures).
    requests: u64,
    /// Recorded errors.
    errors: u64,
    /// Requests per second.
    rps: f64,
    /// Median latency in ms.
    p50_ms: f64,
    /// 90th percentile latency in ms.
    p90_ms: f64,
    /// 99th percentile latency in ms.
    p99_ms: f64,
    /// 99.9th percentile latency in ms.
    p999_ms: f64,
    /// Largest latency in ms.
    max_ms: f64,
    /// Mean latency in ms.
    mean_ms: f64,
    /// CPU use, if it could be read.
    cpu: Option<CpuUse>,
}

/// Entry point: parses arguments, builds the runtime, and runs the selected mode.
fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let result = if args.raw_aes {
        raw_aes(&args)
    } else if args.raw_sign {
        raw_sign(&args)
    } else if args.raw_asym {
        raw_asym(&args)
    } else {
        let threads = if args.client_threads == 0 {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        } else {
            args.client_threads
        };
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
            .map_err(BoxError::from)
            .and_then(|rt| rt.block_on(run(&args)))
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kmsd-bench: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Runs the load test described by `args` and prints the summary.
async fn run(args: &Args) -> Result<(), BoxError> {
    let endpoint = args.endpoint.as_deref().ok_or("--endpoint is required")?;
    let (addr, host, https) = resolve_loopback(endpoint).await?;
    let (access_key_id, secret) = match &args.credentials_file {
        Some(path) => read_credentials(path)?,
        None => ("bench".to_owned(), "bench".to_owned()),
    };
    if args.connections == 0 {
        return Err("--connections must be at least 1".into());
    }
    let tls = if https {
        Some(tls_settings(&host, args.ca_file.as_deref())?)
    } else {
        None
    };
    let mut ctx = Ctx {
        addr,
        host,
        tls,
        access_key_id,
        secret,
        region: args.region.clone(),
        service: "kms",
        path: "/".to_owned(),
        content_type: JSON_CT,
        target: None,
        bodies: Vec::new(),
        op: args.op,
    };
    let mut setup = None;
    let key_id = if args.op == Op::XksEncrypt {
        let key = args
            .key_id
            .clone()
            .ok_or("--op xks-encrypt needs --key-id (the proxy's external key id)")?;
        ctx.service = "kms-xks-proxy";
        ctx.content_type = "application/json";
        ctx.path = format!("{}/keys/{key}/encrypt", args.xks_path.trim_end_matches('/'));
        ctx.bodies = vec![Bytes::from(xks_encrypt_body(args.plaintext_bytes)?)];
        key
    } else {
        if (args.keys > 1 || args.existing_keys)
            && !matches!(args.op, Op::Encrypt | Op::GenerateDataKey)
        {
            return Err(
                "--keys and --existing-keys work with encrypt and generate-data-key".into(),
            );
        }
        let many = if args.keys > 1 {
            let (keys, report) = many_keys(&ctx, args.keys, args.connections).await?;
            setup = Some(report);
            keys
        } else if args.existing_keys {
            existing_keys(&ctx).await?
        } else {
            Vec::new()
        };
        let key_id = match (&args.key_id, many.first()) {
            (Some(k), _) => k.clone(),
            (None, Some(first)) => first.clone(),
            (None, None) => {
                let v = call(
                    &ctx,
                    "CreateKey",
                    Bytes::from_static(args.op.create_key_body()),
                )
                .await?;
                v["KeyMetadata"]["KeyId"]
                    .as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| format!("CreateKey answer has no KeyMetadata.KeyId: {v}"))?
            }
        };
        let message = kms_crypto::random_bytes(args.plaintext_bytes)?;
        // What Verify and Decrypt work on: a signature or a ciphertext made now.
        let made_at_setup = match (args.op, args.op.signing_algorithm()) {
            (Op::Decrypt, _) => {
                let body = serde_json::json!({ "KeyId": key_id, "Plaintext": b64(&message) });
                Some(call_for(&ctx, "Encrypt", &body, "CiphertextBlob").await?)
            }
            (Op::VerifyRsa | Op::VerifyEcc, Some(alg)) => {
                let body = serde_json::json!({
                    "KeyId": key_id, "Message": b64(&message), "MessageType": "RAW",
                    "SigningAlgorithm": alg,
                });
                Some(call_for(&ctx, "Sign", &body, "Signature").await?)
            }
            _ => None,
        };
        ctx.target = Some(format!("TrentService.{}", args.op.api()));
        let under_load = if many.is_empty() {
            std::slice::from_ref(&key_id)
        } else {
            &many[..]
        };
        for key in under_load {
            ctx.bodies.push(Bytes::from(request_body(
                args.op,
                key,
                &message,
                made_at_setup.as_deref(),
            )?));
        }
        if many.len() > 1 {
            format!("{} keys", many.len())
        } else {
            key_id
        }
    };
    let ctx = Arc::new(ctx);

    let start = Instant::now();
    let warm_end = start + Duration::from_secs(args.warmup_secs);
    let timing = Timing {
        warm_end,
        deadline: warm_end + Duration::from_secs(args.duration_secs),
    };
    let cpu_task = tokio::spawn(measure_cpu(timing, args.server_pid.clone()));
    let workers: Vec<_> = (0..args.connections)
        .map(|_| tokio::spawn(worker(Arc::clone(&ctx), timing)))
        .collect();
    let mut latencies = Vec::new();
    let (mut http_errors, mut transport_errors) = (0u64, 0u64);
    for w in workers {
        let r = w.await?;
        latencies.extend(r.latencies_us);
        http_errors += r.http_errors;
        transport_errors += r.transport_errors;
    }
    let cpu = cpu_task.await.ok().flatten();
    latencies.sort_unstable();
    let requests = latencies.len() as u64 + transport_errors;
    let errors = http_errors + transport_errors;
    let duration_secs = args.duration_secs as f64;
    let mean_ms = if latencies.is_empty() {
        0.0
    } else {
        latencies.iter().sum::<u64>() as f64 / latencies.len() as f64 / 1000.0
    };
    let summary = Summary {
        op: args.op.label(),
        connections: args.connections,
        duration_secs,
        requests,
        errors,
        rps: if duration_secs > 0.0 {
            requests as f64 / duration_secs
        } else {
            0.0
        },
        p50_ms: percentile_ms(&latencies, 0.50),
        p90_ms: percentile_ms(&latencies, 0.90),
        p99_ms: percentile_ms(&latencies, 0.99),
        p999_ms: percentile_ms(&latencies, 0.999),
        max_ms: latencies.last().map_or(0.0, |&us| us as f64 / 1000.0),
        mean_ms,
        cpu,
    };
    print_summary(&summary, args.json, &key_id, setup.as_ref());
    Ok(())
}

/// What setup measured while making `--keys` keys.
struct SetupReport {
    /// CreateKey requests per second in each tenth of the keys made.
    create_key_per_sec: Vec<f64>,
    /// Latency (ms) of each ListKeys page (Limit 1000), in order.
    list_keys_page_ms: Vec<f64>,
    /// Latency (ms) of each ListAliases page (Limit 100), in order.
    list_aliases_page_ms: Vec<f64>,
}

impl SetupReport {
    fn json(&self) -> serde_json::Value {
        fn pages(ms: &[f64]) -> serde_json::Value {
            let mut sorted = ms.to_vec();
            sorted.sort_by(f64::total_cmp);
            serde_json::json!({
                "pages": ms.len(),
                "first_ms": ms.first().copied().map(r3),
                "median_ms": sorted.get(sorted.len() / 2).copied().map(r3),
                "last_ms": ms.last().copied().map(r3),
                "max_ms": sorted.last().copied().map(r3),
            })
        }
        serde_json::json!({
            "create_key_per_sec_by_tenth": self.create_key_per_sec.iter().map(|r| r.round()).collect::<Vec<_>>(),
            "list_keys": pages(&self.list_keys_page_ms),
            "list_aliases": pages(&self.list_aliases_page_ms),
        })
    }
}

/// Creates `n` symmetric keys over `connections` keep-alive connections (one in ten gets an
/// alias `alias/bench-<i>`), timing CreateKey per tenth, then pages through ListKeys and
/// ListAliases timing each page.
async fn many_keys(
    ctx: &Ctx,
    n: usize,
    connections: usize,
) -> Result<(Vec<String>, SetupReport), BoxError> {
    let tenth = n.div_ceil(10);
    let mut keys = Vec::with_capacity(n);
    let mut create_key_per_sec = Vec::new();
    let run = format!("{:x}", now_secs());
    while keys.len() < n {
        let batch = tenth.min(n - keys.len());
        let started = Instant::now();
        let next = std::sync::atomic::AtomicUsize::new(0);
        let made = std::sync::Mutex::new(Vec::with_capacity(batch));
        let base = keys.len();
        let work = (0..connections.max(1)).map(|_| async {
            let mut sender = connect(ctx).await?;
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= batch {
                    return Ok::<_, BoxError>(());
                }
                let v = request(ctx, &mut sender, "CreateKey", Bytes::from_static(b"{}")).await?;
                let id = v["KeyMetadata"]["KeyId"]
                    .as_str()
                    .ok_or("CreateKey answer has no KeyId")?
                    .to_owned();
                if (base + i).is_multiple_of(10) {
                    let body = serde_json::json!({
                        "AliasName": format!("alias/bench-{run}-{}", base + i), "TargetKeyId": id,
                    });
                    request(
                        ctx,
                        &mut sender,
                        "CreateAlias",
                        Bytes::from(serde_json::to_vec(&body)?),
                    )
                    .await?;
                }
                made.lock().map_err(|_| "poisoned")?.push(id);
            }
        });
        for r in futures_util::future::join_all(work).await {
            r?;
        }
        create_key_per_sec.push(batch as f64 / started.elapsed().as_secs_f64());
        keys.extend(made.into_inner().map_err(|_| "poisoned")?);
    }
    let mut sender = connect(ctx).await?;
    let list_keys_page_ms = pages(ctx, &mut sender, "ListKeys", 1000, |_| {}).await?;
    let list_aliases_page_ms = pages(ctx, &mut sender, "ListAliases", 100, |_| {}).await?;
    Ok((
        keys,
        SetupReport {
            create_key_per_sec,
            list_keys_page_ms,
            list_aliases_page_ms,
        },
    ))
}

/// Every key ListKeys shows (`--existing-keys`); an error when there is none.
async fn existing_keys(ctx: &Ctx) -> Result<Vec<String>, BoxError> {
    let mut sender = connect(ctx).await?;
    let mut keys = Vec::new();
    pages(ctx, &mut sender, "ListKeys", 1000, |page| {
        keys.extend(
            page["Keys"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|k| k["KeyId"].as_str().map(str::to_owned)),
        );
    })
    .await?;
    if keys.is_empty() {
        return Err("--existing-keys: ListKeys shows no key".into());
    }
    Ok(keys)
}

/// Pages through `operation` (ListKeys or ListAliases) with `limit`, handing each page to
/// `on_page`; the latency of each page.
async fn pages(
    ctx: &Ctx,
    sender: &mut SendRequest<Full<Bytes>>,
    operation: &str,
    limit: u32,
    mut on_page: impl FnMut(&serde_json::Value),
) -> Result<Vec<f64>, BoxError> {
    let mut marker: Option<String> = None;
    let mut ms = Vec::new();
    loop {
        let mut body = serde_json::json!({ "Limit": limit });
        if let Some(m) = &marker {
            body["Marker"] = serde_json::Value::from(m.as_str());
        }
        let started = Instant::now();
        let v = request(
            ctx,
            sender,
            operation,
            Bytes::from(serde_json::to_vec(&body)?),
        )
        .await?;
        ms.push(started.elapsed().as_secs_f64() * 1000.0);
        on_page(&v);
        match (v["Truncated"].as_bool(), v["NextMarker"].as_str()) {
            (Some(true), Some(m)) => marker = Some(m.to_owned()),
            _ => return Ok(ms),
        }
    }
}

/// Sends one signed `TrentService.<operation>` on an open connection; the parsed JSON answer
/// (an error unless 200).
async fn request(
    ctx: &Ctx,
    sender: &mut SendRequest<Full<Bytes>>,
    operation: &str,
    body: Bytes,
) -> Result<serde_json::Value, BoxError> {
    let req = signed(ctx, Some(&format!("TrentService.{operation}")), &body)?;
    let (status, answer) = send(sender, req).await?;
    if status != StatusCode::OK {
        return Err(format!(
            "{operation} failed: {status}: {}",
            String::from_utf8_lossy(&answer)
        )
        .into());
    }
    Ok(serde_json::from_slice(&answer)?)
}

/// Parses `http(s)://host:port`, resolves it and insists every address is loopback; returns
/// the address, the `host:port` authority and whether it is HTTPS.
async fn resolve_loopback(endpoint: &str) -> Result<(SocketAddr, String, bool), BoxError> {
    let uri: hyper::Uri = endpoint.parse()?;
    let https = match uri.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        _ => return Err(format!("endpoint must be http(s)://host:port, not {endpoint}").into()),
    };
    let authority = uri.authority().ok_or("endpoint has no host:port")?;
    let port = authority
        .port_u16()
        .ok_or("endpoint needs an explicit port")?;
    let addrs: Vec<SocketAddr> =
        tokio::net::lookup_host((authority.host().trim_matches(['[', ']']), port))
            .await?
            .collect();
    // Prefer IPv4 (servers here listen on 127.0.0.1; `localhost` may resolve to ::1 first).
    let first = *addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .ok_or("endpoint host did not resolve")?;
    if !addrs.iter().all(|a| a.ip().is_loopback()) {
        return Err(
            format!("kmsd-bench only sends to loopback addresses; {endpoint} is not").into(),
        );
    }
    Ok((first, authority.as_str().to_owned(), https))
}

/// A rustls client (TLS 1.3/1.2, aws-lc-rs) trusting the system roots plus `ca_file`.
fn tls_settings(authority: &str, ca_file: Option<&Path>) -> Result<Tls, BoxError> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(c);
    }
    if let Some(path) = ca_file {
        for c in rustls::pki_types::CertificateDer::pem_file_iter(path)
            .map_err(|e| format!("{}: {e}", path.display()))?
        {
            roots.add(c.map_err(|e| format!("{}: {e}", path.display()))?)?;
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let host = authority
        .rsplit_once(':')
        .map_or(authority, |(h, _)| h)
        .trim_matches(['[', ']']);
    Ok(Tls {
        connector: tokio_rustls::TlsConnector::from(Arc::new(cfg)),
        name: rustls::pki_types::ServerName::try_from(host.to_owned())?,
    })
}

/// Reads `aws_access_key_id` and `aws_secret_access_key` of `[default]` from a shared
/// credentials file.
fn read_credentials(path: &Path) -> Result<(String, String), BoxError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read credentials file {}: {e}", path.display()))?;
    let mut in_default = false;
    let (mut akid, mut secret) = (None, None);
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            in_default = line == "[default]";
        } else if let (true, Some((k, v))) = (in_default, line.split_once('=')) {
            match k.trim() {
                "aws_access_key_id" => akid = Some(v.trim().to_owned()),
                "aws_secret_access_key" => secret = Some(v.trim().to_owned()),
                _ => {}
            }
        }
    }
    match (akid, secret) {
        (Some(a), Some(s)) => Ok((a, s)),
        _ => Err(format!(
            "{}: [default] lacks aws_access_key_id/aws_secret_access_key",
            path.display()
        )
        .into()),
    }
}

/// Standard base64.
fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The JSON body sent for a kmsd `op` (the same for every request); `made_at_setup` is the
/// signature Verify checks or the ciphertext Decrypt opens.
fn request_body(
    op: Op,
    key_id: &str,
    message: &[u8],
    made_at_setup: Option<&str>,
) -> Result<Vec<u8>, BoxError> {
    let key = serde_json::Value::from(key_id);
    let body = match op {
        Op::Encrypt => serde_json::json!({ "KeyId": key, "Plaintext": b64(message) }),
        Op::GenerateDataKey => serde_json::json!({ "KeyId": key, "KeySpec": "AES_256" }),
        Op::Decrypt => serde_json::json!({
            "KeyId": key, "CiphertextBlob": made_at_setup.ok_or("Decrypt needs a ciphertext")?,
        }),
        Op::SignRsa | Op::SignEcc => serde_json::json!({
            "KeyId": key, "Message": b64(message), "MessageType": "RAW",
            "SigningAlgorithm": op.signing_algorithm(),
        }),
        Op::VerifyRsa | Op::VerifyEcc => serde_json::json!({
            "KeyId": key, "Message": b64(message), "MessageType": "RAW",
            "SigningAlgorithm": op.signing_algorithm(),
            "Signature": made_at_setup.ok_or("Verify needs a signature")?,
        }),
        Op::GenerateMac => serde_json::json!({
            "KeyId": key, "Message": b64(message), "MacAlgorithm": "HMAC_SHA_256",
        }),
        Op::XksEncrypt => return Err("xks-encrypt has no kmsd request body".into()),
    };
    Ok(serde_json::to_vec(&body)?)
}

/// The body of an XKS proxy Encrypt as kmsd sends it for a key in an external key store:
/// `plaintext_bytes` of inner ciphertext, the 33-byte envelope header as AAD, and the SHA_256
/// ciphertext data integrity value.
fn xks_encrypt_body(plaintext_bytes: usize) -> Result<Vec<u8>, BoxError> {
    let plaintext = kms_crypto::random_bytes(plaintext_bytes)?;
    let aad = kms_crypto::random_bytes(33)?;
    let body = serde_json::json!({
        "requestMetadata": {
            "kmsRequestId": "00000000-0000-4000-8000-000000000000",
            "kmsOperation": "Encrypt",
            "awsPrincipalArn": "arn:aws:iam::111122223333:user/admin",
            "kmsKeyArn": "arn:aws:kms:us-east-1:111122223333:key/00000000-0000-4000-8000-000000000000",
        },
        "plaintext": b64(&plaintext),
        "encryptionAlgorithm": "AES_GCM",
        "additionalAuthenticatedData": b64(&aad),
        "ciphertextDataIntegrityValueAlgorithm": "SHA_256",
    });
    Ok(serde_json::to_vec(&body)?)
}

/// Current Unix time in seconds.
fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Builds a freshly signed `POST` of `body` to `ctx.path`, with `target` as `X-Amz-Target`.
fn signed(ctx: &Ctx, target: Option<&str>, body: &Bytes) -> Result<Request<Full<Bytes>>, BoxError> {
    let mut headers = vec![
        ("host".to_owned(), ctx.host.clone()),
        ("content-type".to_owned(), ctx.content_type.to_owned()),
    ];
    if let Some(t) = target {
        headers.push(("x-amz-target".to_owned(), t.to_owned()));
    }
    let parts = RequestParts {
        method: "POST",
        path: &ctx.path,
        query: "",
        headers,
        body,
    };
    let added = sigv4::sign(
        &parts,
        &ctx.access_key_id,
        &ctx.secret,
        &ctx.region,
        ctx.service,
        now_secs(),
    )?;
    let mut builder = Request::builder().method("POST").uri(ctx.path.as_str());
    for (name, value) in parts.headers.iter().chain(added.iter()) {
        builder = builder.header(name.as_str(), value.as_str());
    }
    Ok(builder.body(Full::new(body.clone()))?)
}

/// Builds a freshly signed request of the operation under load, on the `pick`-th body (modulo
/// their number).
fn signed_request(ctx: &Ctx, pick: u64) -> Result<Request<Full<Bytes>>, BoxError> {
    let n = ctx.bodies.len().max(1) as u64;
    let body = ctx
        .bodies
        .get(usize::try_from(pick % n).unwrap_or(0))
        .ok_or("no request body")?;
    signed(ctx, ctx.target.as_deref(), body)
}

/// xorshift64*: a cheap, well-spread sequence to pick keys (not for anything secret).
fn next_pick(state: &mut u64) -> u64 {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    state.wrapping_mul(0x2545_F491_4F6C_DD1D)
}

/// Opens one keep-alive HTTP/1.1 connection (over TLS for `https://`); its driver runs on a
/// spawned task.
async fn connect(ctx: &Ctx) -> Result<SendRequest<Full<Bytes>>, BoxError> {
    let stream = TcpStream::connect(ctx.addr).await?;
    stream.set_nodelay(true)?;
    let sender = match &ctx.tls {
        None => {
            let (sender, conn) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
            tokio::spawn(async move {
                // The connection ends when the sender is dropped; errors surface on send_request.
                let _ = conn.await;
            });
            sender
        }
        Some(tls) => {
            let stream = tls.connector.connect(tls.name.clone(), stream).await?;
            let (sender, conn) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            sender
        }
    };
    Ok(sender)
}

/// Sends one request and reads the whole response.
async fn send(
    sender: &mut SendRequest<Full<Bytes>>,
    req: Request<Full<Bytes>>,
) -> Result<(StatusCode, Bytes), BoxError> {
    sender.ready().await?;
    let resp = sender.send_request(req).await?;
    let status = resp.status();
    let body = resp.into_body().collect().await?.to_bytes();
    Ok((status, body))
}

/// Remembers `msg` if it is the first error of the run.
fn note_first_error(msg: impl FnOnce() -> String) {
    if FIRST_ERROR.get().is_none() {
        let _ = FIRST_ERROR.set(msg());
    }
}

/// Sends one setup request `TrentService.<operation>` with `body` on a fresh connection;
/// returns the parsed JSON answer (an error unless 200).
async fn call(ctx: &Ctx, operation: &str, body: Bytes) -> Result<serde_json::Value, BoxError> {
    let mut sender = connect(ctx).await?;
    request(ctx, &mut sender, operation, body).await
}

/// Calls `operation` with `body` and returns the answer's string member `field`.
async fn call_for(
    ctx: &Ctx,
    operation: &str,
    body: &serde_json::Value,
    field: &str,
) -> Result<String, BoxError> {
    let v = call(ctx, operation, Bytes::from(serde_json::to_vec(body)?)).await?;
    v[field]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("{operation} answer has no {field}: {v}").into())
}

/// One connection's closed loop: send, wait for the answer, record, repeat until the deadline.
/// A broken connection is counted as an error and reopened.
async fn worker(ctx: Arc<Ctx>, timing: Timing) -> WorkerResult {
    let mut res = WorkerResult::default();
    let mut validated = false;
    let mut pick_state = kms_crypto::random_bytes(8)
        .ok()
        .and_then(|b| <[u8; 8]>::try_from(&b[..]).ok())
        .map_or(0x9E37_79B9_7F4A_7C15, u64::from_le_bytes)
        | 1;
    'connection: while Instant::now() < timing.deadline {
        let mut sender = match connect(&ctx).await {
            Ok(s) => s,
            Err(e) => {
                if Instant::now() >= timing.warm_end {
                    res.transport_errors += 1;
                }
                note_first_error(|| format!("connect: {e}"));
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        loop {
            let started = Instant::now();
            if started >= timing.deadline {
                break 'connection;
            }
            let outcome = match signed_request(&ctx, next_pick(&mut pick_state)) {
                Ok(req) => send(&mut sender, req).await,
                Err(e) => Err(e),
            };
            let ended = Instant::now();
            let recorded = started >= timing.warm_end && ended <= timing.deadline;
            match outcome {
                Ok((status, body)) => {
                    if recorded {
                        res.latencies_us.push((ended - started).as_micros() as u64);
                    }
                    if status == StatusCode::OK && !validated {
                        validated = true;
                        if !ctx.op.answer_ok(&body) {
                            res.http_errors += 1;
                            note_first_error(|| {
                                format!(
                                    "unexpected 200 answer to {}: {}",
                                    ctx.op.label(),
                                    String::from_utf8_lossy(&body)
                                )
                            });
                        }
                    }
                    if status != StatusCode::OK {
                        if recorded {
                            res.http_errors += 1;
                        }
                        note_first_error(|| {
                            format!("{status}: {}", String::from_utf8_lossy(&body))
                        });
                    }
                }
                Err(e) => {
                    if recorded {
                        res.transport_errors += 1;
                    }
                    note_first_error(|| format!("transport: {e}"));
                    continue 'connection;
                }
            }
        }
    }
    res
}

/// Clock ticks per second of `/proc` CPU times (`USER_HZ`, 100 on Linux).
const USER_HZ: f64 = 100.0;

/// Busy ticks (all but idle and iowait) of all CPUs, from `/proc/stat`.
fn machine_busy_ticks() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    let line = text.lines().next()?.strip_prefix("cpu ")?;
    let v: Vec<u64> = line
        .split_whitespace()
        .filter_map(|f| f.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is already in user).
    let total: u64 = v.iter().take(8).sum();
    Some(total - v.get(3)? - v.get(4)?)
}

/// User plus system ticks of process `pid` (`self` for this one), from `/proc/PID/stat`.
fn process_ticks(pid: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces: fields are counted after its closing parenthesis.
    let rest = &text[text.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest[0] is field 3 (state); utime and stime are fields 14 and 15.
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// One reading of the machine, this process and each server.
fn cpu_sample(pids: &[u32]) -> Option<(u64, u64, Vec<Option<u64>>)> {
    Some((
        machine_busy_ticks()?,
        process_ticks("self")?,
        pids.iter().map(|p| process_ticks(&p.to_string())).collect(),
    ))
}

/// Samples CPU times at the start and end of the measured window; `None` if `/proc` is not
/// readable.
async fn measure_cpu(timing: Timing, pids: Vec<u32>) -> Option<CpuUse> {
    tokio::time::sleep_until(timing.warm_end.into()).await;
    let t0 = Instant::now();
    let (m0, c0, s0) = cpu_sample(&pids)?;
    tokio::time::sleep_until(timing.deadline.into()).await;
    let (m1, c1, s1) = cpu_sample(&pids)?;
    let secs = t0.elapsed().as_secs_f64().max(1e-3);
    let cores = |a: u64, b: u64| b.saturating_sub(a) as f64 / USER_HZ / secs;
    let servers: Vec<(u32, f64)> = pids
        .iter()
        .zip(s0.iter().zip(s1.iter()))
        .filter_map(|(p, (a, b))| Some((*p, cores((*a)?, (*b)?))))
        .collect();
    let machine = cores(m0, m1);
    let client = cores(c0, c1);
    let other = (machine - client - servers.iter().map(|s| s.1).sum::<f64>()).max(0.0);
    Some(CpuUse {
        machine,
        client,
        servers,
        other,
    })
}

/// Nearest-rank percentile of sorted microsecond latencies, in milliseconds.
fn percentile_ms(sorted_us: &[u64], q: f64) -> f64 {
    if sorted_us.is_empty() {
        return 0.0;
    }
    let rank = ((q * sorted_us.len() as f64).ceil() as usize).clamp(1, sorted_us.len());
    sorted_us[rank - 1] as f64 / 1000.0
}

/// Rounds to 3 decimals (for JSON output).
fn r3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Prints the summary as text, or as one JSON line.
fn print_summary(s: &Summary, json: bool, key_id: &str, setup: Option<&SetupReport>) {
    if json {
        let cpu = s.cpu.as_ref().map(|c| {
            serde_json::json!({
                "machine_cores": r3(c.machine),
                "client_cores": r3(c.client),
                "server_cores": c.servers.iter().map(|(p, x)| serde_json::json!({"pid": p, "cores": r3(*x)})).collect::<Vec<_>>(),
                "other_cores": r3(c.other),
            })
        });
        let v = serde_json::json!({
            "op": s.op,
            "connections": s.connections,
            "duration_secs": s.duration_secs,
            "requests": s.requests,
            "errors": s.errors,
            "requests_per_sec": (s.rps * 10.0).round() / 10.0,
            "p50_ms": s.p50_ms,
            "p90_ms": s.p90_ms,
            "p99_ms": s.p99_ms,
            "p999_ms": s.p999_ms,
            "max_ms": s.max_ms,
            "mean_ms": r3(s.mean_ms),
            "cpu": cpu,
            "key_id": key_id,
            "setup": setup.map(SetupReport::json),
            "first_error": FIRST_ERROR.get(),
        });
        println!("{v}");
        return;
    }
    println!("op:          {}", s.op);
    println!("key:         {key_id}");
    println!("connections: {}", s.connections);
    println!("duration:    {:.1} s", s.duration_secs);
    println!("requests:    {}", s.requests);
    println!("errors:      {}", s.errors);
    println!("requests/s:  {:.1}", s.rps);
    println!(
        "latency ms:  p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}  mean {:.3}",
        s.p50_ms, s.p90_ms, s.p99_ms, s.p999_ms, s.max_ms, s.mean_ms
    );
    if let Some(c) = &s.cpu {
        let servers: Vec<String> = c
            .servers
            .iter()
            .map(|(p, x)| format!("pid {p} {x:.2}"))
            .collect();
        println!(
            "cpu cores:   machine {:.2}  client {:.2}  servers [{}]  other {:.2}",
            c.machine,
            c.client,
            servers.join(", "),
            c.other
        );
    }
    if let Some(setup) = setup {
        println!("setup:       {}", setup.json());
    }
    if let Some(e) = FIRST_ERROR.get() {
        println!("first error: {e}");
    }
}

/// Hidden mode: AES-256-GCM seals of `--plaintext-bytes` in a loop on this thread, through
/// `kms_crypto::AesGcmKey::seal` (random IV, fresh buffer) and, for comparison, its parts: the
/// 12-byte random IV alone and a bare aws-lc-rs in-place seal with a counter nonce.
fn raw_aes(args: &Args) -> Result<(), BoxError> {
    use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
    let secs = args.duration_secs.max(1);
    let buf = vec![0u8; args.plaintext_bytes];

    let key = kms_crypto::AesGcmKey::new(&[0u8; 32])?;
    let (n, elapsed) = time_loop(secs, 1024, || {
        std::hint::black_box(key.seal(b"", &buf)?);
        Ok(())
    })?;
    report_raw(args, "raw-aes-256-gcm-seal", n, elapsed, buf.len());

    let (n, elapsed) = time_loop(secs, 1024, || {
        std::hint::black_box(kms_crypto::random_array::<12>()?);
        Ok(())
    })?;
    report_raw(args, "raw-random-iv-12", n, elapsed, 12);

    let bare = LessSafeKey::new(
        UnboundKey::new(&AES_256_GCM, &[0u8; 32]).map_err(|_| "aws-lc-rs rejected the key")?,
    );
    let mut counter = 0u64;
    let mut in_out = Vec::with_capacity(buf.len() + 16);
    let (n, elapsed) = time_loop(secs, 1024, || {
        counter += 1;
        let mut iv = [0u8; 12];
        iv[..8].copy_from_slice(&counter.to_le_bytes());
        in_out.clear();
        in_out.extend_from_slice(&buf);
        bare.seal_in_place_append_tag(Nonce::assume_unique_for_key(iv), Aad::empty(), &mut in_out)
            .map_err(|_| "aws-lc-rs seal failed")?;
        std::hint::black_box(&in_out);
        Ok(())
    })?;
    report_raw(args, "raw-aws-lc-rs-seal-in-place", n, elapsed, buf.len());
    Ok(())
}

/// Hidden mode: SigV4 signing of a typical Encrypt request in a loop on this thread.
fn raw_sign(args: &Args) -> Result<(), BoxError> {
    let message = kms_crypto::random_bytes(args.plaintext_bytes)?;
    let ctx = Ctx {
        addr: SocketAddr::from(([127, 0, 0, 1], 1)),
        host: "127.0.0.1:1".to_owned(),
        tls: None,
        access_key_id: "bench".to_owned(),
        secret: "bench".to_owned(),
        region: args.region.clone(),
        service: "kms",
        path: "/".to_owned(),
        content_type: JSON_CT,
        target: Some("TrentService.Encrypt".to_owned()),
        bodies: vec![Bytes::from(request_body(
            Op::Encrypt,
            "00000000-0000-0000-0000-000000000000",
            &message,
            None,
        )?)],
        op: Op::Encrypt,
    };
    let (n, elapsed) = time_loop(args.duration_secs.max(1), 1024, || {
        std::hint::black_box(signed_request(&ctx, 0)?);
        Ok(())
    })?;
    report_raw(
        args,
        "raw-sigv4-sign-encrypt-request",
        n,
        elapsed,
        ctx.bodies.iter().map(Bytes::len).sum(),
    );
    Ok(())
}

/// One raw-figure series of `--raw-asym`.
struct RawAsym<'a> {
    args: &'a Args,
    secs: u64,
    msg: &'a [u8],
}

impl RawAsym<'_> {
    /// The `kms_crypto` calls kmsd makes per request: Sign with the private key parsed once (as
    /// kmsd keeps it with the cached key since acaaa75), Verify from the DER SPKI.
    fn kms_crypto(
        &self,
        spec: kms_crypto::asymmetric::AsymmetricSpec,
        alg: kms_crypto::asymmetric::SigningAlgorithm,
        name: &str,
        pkcs8: &[u8],
        spki: &[u8],
    ) -> Result<(), BoxError> {
        use kms_crypto::asymmetric::{self as asym, SignInput};
        let key = asym::SigningKey::from_pkcs8(spec, pkcs8)?;
        let mut sig = Vec::new();
        let (n, t) = time_loop(self.secs, 16, || {
            sig = key.sign(alg, SignInput::Raw(self.msg))?;
            Ok(())
        })?;
        let bytes = self.msg.len();
        report_raw(
            self.args,
            &format!("raw-kms-crypto-{name}-sign"),
            n,
            t,
            bytes,
        );
        let (n, t) = time_loop(self.secs, 64, || {
            if !asym::verify(spec, spki, alg, SignInput::Raw(self.msg), &sig)? {
                return Err(format!("{name} verify failed").into());
            }
            Ok(())
        })?;
        report_raw(
            self.args,
            &format!("raw-kms-crypto-{name}-verify"),
            n,
            t,
            bytes,
        );
        Ok(())
    }
}

/// Hidden mode: the primitives behind Sign, Verify and GenerateMac on one thread, each timed
/// twice: bare aws-lc-rs with the key parsed once ("raw-aws-lc-rs-..."), and the `kms_crypto`
/// call kmsd makes per request ("raw-kms-crypto-..."), which parses the PKCS#8 private key or the
/// SubjectPublicKeyInfo (or builds the HMAC key) every time.
fn raw_asym(args: &Args) -> Result<(), BoxError> {
    use aws_lc_rs::signature::{
        EcdsaKeyPair, ParsedPublicKey, ECDSA_P256_SHA256_ASN1, ECDSA_P256_SHA256_ASN1_SIGNING,
        RSA_PSS_2048_8192_SHA256, RSA_PSS_SHA256,
    };
    use aws_lc_rs::{hmac, rand::SystemRandom, rsa};
    use kms_crypto::asymmetric::{self as asym, AsymmetricSpec, HmacAlgorithm, SigningAlgorithm};
    let secs = args.duration_secs.max(1);
    let msg = kms_crypto::random_bytes(args.plaintext_bytes)?;
    let msg: &[u8] = &msg;
    let bytes = msg.len();
    let rng = SystemRandom::new();
    fn rejected<E>(what: &'static str) -> impl Fn(E) -> BoxError {
        move |_| what.into()
    }

    // RSA-2048, RSASSA-PSS with SHA-256.
    let spec = AsymmetricSpec::Rsa2048;
    let pkcs8 = asym::generate_private_key(spec)?;
    let spki = asym::public_key_spki(spec, &pkcs8)?;
    let key = rsa::KeyPair::from_pkcs8(&pkcs8).map_err(rejected("RSA key rejected"))?;
    let mut sig = vec![0u8; key.public_modulus_len()];
    let (n, t) = time_loop(secs, 16, || {
        key.sign(&RSA_PSS_SHA256, &rng, msg, &mut sig)
            .map_err(rejected("RSA sign failed"))?;
        std::hint::black_box(&sig);
        Ok(())
    })?;
    report_raw(args, "raw-aws-lc-rs-rsa2048-pss-sha256-sign", n, t, bytes);
    let public = ParsedPublicKey::new(&RSA_PSS_2048_8192_SHA256, &spki)
        .map_err(rejected("RSA public key rejected"))?;
    let (n, t) = time_loop(secs, 64, || {
        public
            .verify_sig(msg, &sig)
            .map_err(rejected("RSA verify failed"))?;
        Ok(())
    })?;
    report_raw(args, "raw-aws-lc-rs-rsa2048-pss-sha256-verify", n, t, bytes);
    let raw = RawAsym { args, secs, msg };
    raw.kms_crypto(
        spec,
        SigningAlgorithm::RsaPssSha256,
        "rsa2048-pss-sha256",
        &pkcs8,
        &spki,
    )?;

    // ECC_NIST_P256, ECDSA with SHA-256 (DER signatures).
    let spec = AsymmetricSpec::EccNistP256;
    let pkcs8 = asym::generate_private_key(spec)?;
    let spki = asym::public_key_spki(spec, &pkcs8)?;
    let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &pkcs8)
        .map_err(rejected("P-256 key rejected"))?;
    let mut last_sig = Vec::new();
    let (n, t) = time_loop(secs, 64, || {
        let s = key.sign(&rng, msg).map_err(rejected("ECDSA sign failed"))?;
        last_sig.clear();
        last_sig.extend_from_slice(s.as_ref());
        Ok(())
    })?;
    report_raw(args, "raw-aws-lc-rs-p256-ecdsa-sha256-sign", n, t, bytes);
    let public = ParsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, &spki)
        .map_err(rejected("P-256 public key rejected"))?;
    let (n, t) = time_loop(secs, 64, || {
        public
            .verify_sig(msg, &last_sig)
            .map_err(rejected("ECDSA verify failed"))?;
        Ok(())
    })?;
    report_raw(args, "raw-aws-lc-rs-p256-ecdsa-sha256-verify", n, t, bytes);
    raw.kms_crypto(
        spec,
        SigningAlgorithm::EcdsaSha256,
        "p256-ecdsa-sha256",
        &pkcs8,
        &spki,
    )?;

    // HMAC_256 key, HMAC-SHA-256.
    let secret = asym::hmac_generate_key(HmacAlgorithm::Sha256)?;
    let key = hmac::Key::new(hmac::HMAC_SHA256, &secret);
    let (n, t) = time_loop(secs, 1024, || {
        std::hint::black_box(hmac::sign(&key, msg));
        Ok(())
    })?;
    report_raw(args, "raw-aws-lc-rs-hmac-sha256", n, t, bytes);
    let (n, t) = time_loop(secs, 1024, || {
        std::hint::black_box(asym::hmac_sign(HmacAlgorithm::Sha256, &secret, msg));
        Ok(())
    })?;
    report_raw(args, "raw-kms-crypto-hmac-sha256", n, t, bytes);
    Ok(())
}

/// Calls `f` repeatedly, checking the clock every `batch` calls, for about `secs` seconds;
/// returns the count and elapsed time.
fn time_loop(
    secs: u64,
    batch: u64,
    mut f: impl FnMut() -> Result<(), BoxError>,
) -> Result<(u64, Duration), BoxError> {
    let start = Instant::now();
    let end = start + Duration::from_secs(secs);
    let mut n = 0u64;
    loop {
        for _ in 0..batch {
            f()?;
        }
        n += batch;
        if Instant::now() >= end {
            return Ok((n, start.elapsed()));
        }
    }
}

/// Prints the result of a raw timing loop.
fn report_raw(args: &Args, what: &str, n: u64, elapsed: Duration, bytes: usize) {
    let secs = elapsed.as_secs_f64();
    let ops = n as f64 / secs;
    let ns = secs * 1e9 / n as f64;
    let mib = ops * bytes as f64 / (1024.0 * 1024.0);
    if args.json {
        let v = serde_json::json!({
            "mode": what, "bytes": bytes, "ops": n, "secs": secs,
            "ops_per_sec": ops.round(), "ns_per_op": ns, "mib_per_sec": mib,
        });
        println!("{v}");
    } else {
        println!("{what}: {bytes} B, {n} ops in {secs:.2} s: {ops:.0} ops/s, {ns:.0} ns/op, {mib:.1} MiB/s (1 thread)");
    }
}
