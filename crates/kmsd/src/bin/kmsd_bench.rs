//! `kmsd-bench`: a closed-loop load generator for kmsd.
//!
//! It opens `--connections` keep-alive HTTP/1.1 connections to a loopback kmsd endpoint and, on
//! each, sends SigV4-signed `Encrypt` or `GenerateDataKey` requests back to back (every request is
//! freshly signed, as a real SDK client would). After `--warmup-secs` it records the latency of
//! every response for `--duration-secs`, then prints a summary (or one JSON line with `--json`).
//!
//! The hidden `--raw-aes` mode instead times aws-lc-rs AES-256-GCM seals of
//! `--plaintext-bytes` bytes on one thread, and `--raw-sign` times SigV4 signing of an Encrypt
//! request, so kmsd's overhead over the primitives is visible.

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
    /// `TrentService.Encrypt` of `--plaintext-bytes` random bytes.
    Encrypt,
    /// `TrentService.GenerateDataKey` with `KeySpec` `AES_256`.
    GenerateDataKey,
}

impl Op {
    /// The operation name as used in `X-Amz-Target` and in reports.
    fn name(self) -> &'static str {
        match self {
            Op::Encrypt => "Encrypt",
            Op::GenerateDataKey => "GenerateDataKey",
        }
    }

    /// A field every successful answer carries, checked on each connection's first answer.
    fn answer_field(self) -> &'static str {
        match self {
            Op::Encrypt => "CiphertextBlob",
            Op::GenerateDataKey => "Plaintext",
        }
    }
}

/// Command-line arguments.
#[derive(Debug, Parser)]
#[command(
    name = "kmsd-bench",
    about = "Closed-loop load generator for a loopback kmsd"
)]
struct Args {
    /// kmsd endpoint, e.g. `http://127.0.0.1:8080` (loopback addresses only).
    #[arg(long, required_unless_present_any = ["raw_aes", "raw_sign"])]
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
    /// Plaintext size for Encrypt (and for `--raw-aes`).
    #[arg(long, default_value_t = 256)]
    plaintext_bytes: usize,
    /// AWS shared credentials file; the `[default]` profile is used. Without it the access key
    /// `bench` / secret `bench` is used, which a `--dev` server accepts.
    #[arg(long)]
    credentials_file: Option<PathBuf>,
    /// SigV4 signing region.
    #[arg(long, default_value = "us-east-1")]
    region: String,
    /// Key to use; if absent one is created with CreateKey.
    #[arg(long)]
    key_id: Option<String>,
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
}

/// What every connection needs to build and sign requests.
struct Ctx {
    /// Resolved loopback address of the server.
    addr: SocketAddr,
    /// `Host` header value (`host:port` as given in the endpoint).
    host: String,
    /// Access key id.
    access_key_id: String,
    /// Secret access key.
    secret: String,
    /// Signing region.
    region: String,
    /// `X-Amz-Target` value.
    target: String,
    /// The JSON request body (identical for every request).
    body: Bytes,
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

/// The final numbers, printed as text or JSON.
struct Summary {
    /// Operation name.
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
    /// 99th percentile latency in ms.
    p99_ms: f64,
    /// 99.9th percentile latency in ms.
    p999_ms: f64,
    /// Largest latency in ms.
    max_ms: f64,
}

/// Entry point: parses arguments, builds the runtime, and runs the selected mode.
fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let result = if args.raw_aes {
        raw_aes(&args)
    } else if args.raw_sign {
        raw_sign(&args)
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
    let (addr, host) = resolve_loopback(endpoint).await?;
    let (access_key_id, secret) = match &args.credentials_file {
        Some(path) => read_credentials(path)?,
        None => ("bench".to_owned(), "bench".to_owned()),
    };
    if args.connections == 0 {
        return Err("--connections must be at least 1".into());
    }
    let mut ctx = Ctx {
        addr,
        host,
        access_key_id,
        secret,
        region: args.region.clone(),
        target: "TrentService.CreateKey".to_owned(),
        body: Bytes::from_static(b"{}"),
        op: args.op,
    };
    let key_id = match &args.key_id {
        Some(k) => k.clone(),
        None => create_key(&ctx).await?,
    };
    ctx.target = format!("TrentService.{}", args.op.name());
    ctx.body = Bytes::from(request_body(args.op, &key_id, args.plaintext_bytes)?);
    let ctx = Arc::new(ctx);

    let start = Instant::now();
    let warm_end = start + Duration::from_secs(args.warmup_secs);
    let timing = Timing {
        warm_end,
        deadline: warm_end + Duration::from_secs(args.duration_secs),
    };
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
    latencies.sort_unstable();
    let requests = latencies.len() as u64 + transport_errors;
    let errors = http_errors + transport_errors;
    let duration_secs = args.duration_secs as f64;
    let summary = Summary {
        op: args.op.name(),
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
        p99_ms: percentile_ms(&latencies, 0.99),
        p999_ms: percentile_ms(&latencies, 0.999),
        max_ms: latencies.last().map_or(0.0, |&us| us as f64 / 1000.0),
    };
    print_summary(&summary, args.json, &key_id);
    Ok(())
}

/// Parses `http://host:port`, resolves it and insists every address is loopback.
async fn resolve_loopback(endpoint: &str) -> Result<(SocketAddr, String), BoxError> {
    let uri: hyper::Uri = endpoint.parse()?;
    if uri.scheme_str() != Some("http") {
        return Err(format!("endpoint must be http://host:port, not {endpoint}").into());
    }
    let authority = uri.authority().ok_or("endpoint has no host:port")?;
    let port = authority
        .port_u16()
        .ok_or("endpoint needs an explicit port")?;
    let addrs: Vec<SocketAddr> =
        tokio::net::lookup_host((authority.host().trim_matches(['[', ']']), port))
            .await?
            .collect();
    let first = *addrs.first().ok_or("endpoint host did not resolve")?;
    if !addrs.iter().all(|a| a.ip().is_loopback()) {
        return Err(
            format!("kmsd-bench only sends to loopback addresses; {endpoint} is not").into(),
        );
    }
    Ok((first, authority.as_str().to_owned()))
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

/// The JSON body sent for `op` (the same for every request).
fn request_body(op: Op, key_id: &str, plaintext_bytes: usize) -> Result<Vec<u8>, BoxError> {
    let key = serde_json::Value::from(key_id);
    let body = match op {
        Op::Encrypt => {
            let plaintext = kms_crypto::random_bytes(plaintext_bytes)?;
            let b64 = base64::engine::general_purpose::STANDARD.encode(&plaintext[..]);
            serde_json::json!({ "KeyId": key, "Plaintext": b64 })
        }
        Op::GenerateDataKey => serde_json::json!({ "KeyId": key, "KeySpec": "AES_256" }),
    };
    Ok(serde_json::to_vec(&body)?)
}

/// Current Unix time in seconds.
fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Builds a freshly signed `POST /` for the current `ctx.target` and `ctx.body`.
fn signed_request(ctx: &Ctx) -> Result<Request<Full<Bytes>>, BoxError> {
    let headers = vec![
        ("host".to_owned(), ctx.host.clone()),
        ("content-type".to_owned(), JSON_CT.to_owned()),
        ("x-amz-target".to_owned(), ctx.target.clone()),
    ];
    let parts = RequestParts {
        method: "POST",
        path: "/",
        query: "",
        headers,
        body: &ctx.body,
    };
    let added = sigv4::sign(
        &parts,
        &ctx.access_key_id,
        &ctx.secret,
        &ctx.region,
        "kms",
        now_secs(),
    )?;
    let mut builder = Request::builder().method("POST").uri("/");
    for (name, value) in parts.headers.iter().chain(added.iter()) {
        builder = builder.header(name.as_str(), value.as_str());
    }
    Ok(builder.body(Full::new(ctx.body.clone()))?)
}

/// Opens one keep-alive HTTP/1.1 connection; its driver runs on a spawned task.
async fn connect(ctx: &Ctx) -> Result<SendRequest<Full<Bytes>>, BoxError> {
    let stream = TcpStream::connect(ctx.addr).await?;
    stream.set_nodelay(true)?;
    let io = hyper_util::rt::TokioIo::new(stream);
    let (sender, conn) = hyper::client::conn::http1::handshake(io).await?;
    tokio::spawn(async move {
        // The connection ends when the sender is dropped; errors surface on send_request.
        let _ = conn.await;
    });
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

/// Creates a symmetric key and returns its id.
async fn create_key(ctx: &Ctx) -> Result<String, BoxError> {
    let mut sender = connect(ctx).await?;
    let (status, body) = send(&mut sender, signed_request(ctx)?).await?;
    if status != StatusCode::OK {
        return Err(format!(
            "CreateKey failed: {status}: {}",
            String::from_utf8_lossy(&body)
        )
        .into());
    }
    let v: serde_json::Value = serde_json::from_slice(&body)?;
    v["KeyMetadata"]["KeyId"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("CreateKey answer has no KeyMetadata.KeyId: {v}").into())
}

/// One connection's closed loop: send, wait for the answer, record, repeat until the deadline.
/// A broken connection is counted as an error and reopened.
async fn worker(ctx: Arc<Ctx>, timing: Timing) -> WorkerResult {
    let mut res = WorkerResult::default();
    let mut validated = false;
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
            let outcome = match signed_request(&ctx) {
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
                        if !answer_has_field(&body, ctx.op.answer_field()) {
                            res.http_errors += 1;
                            note_first_error(|| {
                                format!(
                                    "200 without {}: {}",
                                    ctx.op.answer_field(),
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

/// Whether a JSON answer has a non-empty string `field` at the top level.
fn answer_has_field(body: &[u8], field: &str) -> bool {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get(field).and_then(|f| f.as_str()).map(|s| !s.is_empty()))
        .unwrap_or(false)
}

/// Nearest-rank percentile of sorted microsecond latencies, in milliseconds.
fn percentile_ms(sorted_us: &[u64], q: f64) -> f64 {
    if sorted_us.is_empty() {
        return 0.0;
    }
    let rank = ((q * sorted_us.len() as f64).ceil() as usize).clamp(1, sorted_us.len());
    sorted_us[rank - 1] as f64 / 1000.0
}

/// Prints the summary as text, or as one JSON line.
fn print_summary(s: &Summary, json: bool, key_id: &str) {
    if json {
        let v = serde_json::json!({
            "op": s.op,
            "connections": s.connections,
            "duration_secs": s.duration_secs,
            "requests": s.requests,
            "errors": s.errors,
            "requests_per_sec": (s.rps * 10.0).round() / 10.0,
            "p50_ms": s.p50_ms,
            "p99_ms": s.p99_ms,
            "p999_ms": s.p999_ms,
            "max_ms": s.max_ms,
            "key_id": key_id,
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
        "latency ms:  p50 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}",
        s.p50_ms, s.p99_ms, s.p999_ms, s.max_ms
    );
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
    let (n, elapsed) = time_loop(secs, || {
        std::hint::black_box(key.seal(b"", &buf)?);
        Ok(())
    })?;
    report_raw(args, "raw-aes-256-gcm-seal", n, elapsed, buf.len());

    let (n, elapsed) = time_loop(secs, || {
        std::hint::black_box(kms_crypto::random_array::<12>()?);
        Ok(())
    })?;
    report_raw(args, "raw-random-iv-12", n, elapsed, 12);

    let bare = LessSafeKey::new(
        UnboundKey::new(&AES_256_GCM, &[0u8; 32]).map_err(|_| "aws-lc-rs rejected the key")?,
    );
    let mut counter = 0u64;
    let mut in_out = Vec::with_capacity(buf.len() + 16);
    let (n, elapsed) = time_loop(secs, || {
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
    let ctx = Ctx {
        addr: SocketAddr::from(([127, 0, 0, 1], 1)),
        host: "127.0.0.1:1".to_owned(),
        access_key_id: "bench".to_owned(),
        secret: "bench".to_owned(),
        region: args.region.clone(),
        target: "TrentService.Encrypt".to_owned(),
        body: Bytes::from(request_body(
            Op::Encrypt,
            "00000000-0000-0000-0000-000000000000",
            args.plaintext_bytes,
        )?),
        op: Op::Encrypt,
    };
    let (n, elapsed) = time_loop(args.duration_secs.max(1), || {
        std::hint::black_box(signed_request(&ctx)?);
        Ok(())
    })?;
    report_raw(
        args,
        "raw-sigv4-sign-encrypt-request",
        n,
        elapsed,
        ctx.body.len(),
    );
    Ok(())
}

/// Calls `f` repeatedly for about `secs` seconds; returns the count and elapsed time.
fn time_loop(
    secs: u64,
    mut f: impl FnMut() -> Result<(), BoxError>,
) -> Result<(u64, Duration), BoxError> {
    let start = Instant::now();
    let end = start + Duration::from_secs(secs);
    let mut n = 0u64;
    loop {
        for _ in 0..1024 {
            f()?;
        }
        n += 1024;
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
