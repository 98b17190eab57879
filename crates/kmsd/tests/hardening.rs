//! Anonymous clients cannot exhaust kmsd's memory or file descriptors (issue 12 §1, §2): slow
//! request bodies are bounded by a shared budget and a body timeout, a request without an
//! Authorization header is answered before its body arrives, idle connections are closed after
//! the idle timeout, and at the connection limit idle connections make room for new ones.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The server process's resident memory (VmRSS), in KiB.
fn rss_kib(server: &Server) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.child.id())).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Raises this test process's soft open-file limit to its hard limit; returns it.
fn raise_own_fd_limit() -> u64 {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let now = getrlimit(Resource::Nofile);
    let max = now.maximum.unwrap_or(1 << 20);
    let _ = setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(max),
            maximum: now.maximum,
        },
    );
    getrlimit(Resource::Nofile).current.unwrap_or(max)
}

/// A well-formed (but not valid) Authorization header: parsing it needs no credentials.
const FAKE_AUTHORIZATION: &str = "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20260101/us-east-1/kms/aws4_request, SignedHeaders=host;x-amz-date, Signature=0000000000000000000000000000000000000000000000000000000000000000";

fn head(addr: SocketAddr, authorization: Option<&str>, content_length: usize) -> String {
    let mut h = format!(
        "POST / HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/x-amz-json-1.1\r\nx-amz-target: TrentService.ListKeys\r\nx-amz-date: 20260101T000000Z\r\ncontent-length: {content_length}\r\n"
    );
    if let Some(a) = authorization {
        h.push_str(&format!("authorization: {a}\r\n"));
    }
    h.push_str("\r\n");
    h
}

/// Reads one response from `conn` (headers and a Content-Length body), within 20 s.
async fn read_response(conn: &mut TcpStream) -> RawResponse {
    let mut got = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            if let Some(r) = parse_response(&got) {
                let len: usize = r
                    .header("content-length")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                if r.body.len() >= len {
                    return;
                }
            }
            let n = conn.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed without a complete response");
            got.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .expect("no response within 20 s");
    parse_response(&got).unwrap()
}

/// Whether the server closes `conn` (EOF or reset) within `wait`.
async fn closed_within(conn: &mut TcpStream, wait: Duration) -> bool {
    let mut b = [0u8; 64];
    loop {
        match tokio::time::timeout(wait, conn.read(&mut b)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

async fn list_keys_succeeds(server: &Server) {
    let kms = server.client();
    let listed = tokio::time::timeout(Duration::from_secs(20), kms.list_keys().send())
        .await
        .expect("ListKeys did not answer within 20 s");
    assert!(listed.is_ok(), "{listed:?}");
}

/// (c) No Authorization header (or a malformed one) and a huge Content-Length: answered at
/// once with the usual error, without the body being sent, and the connection is closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_without_authorization_is_answered_before_its_body() {
    let server = Server::start(&[]);
    for (authorization, expected) in [
        (None, "MissingAuthenticationTokenException"),
        (Some("Bearer nothing"), "IncompleteSignatureException"),
        (
            Some("AWS4-HMAC-SHA256 Credential=AKID/20260101/us-east-1/kms/aws4_request"),
            "IncompleteSignatureException",
        ),
    ] {
        let mut conn = TcpStream::connect(server.addr).await.unwrap();
        conn.write_all(head(server.addr, authorization, 1_048_034).as_bytes())
            .await
            .unwrap();
        let r = read_response(&mut conn).await;
        assert_eq!(r.status, 400, "{authorization:?}");
        assert_eq!(r.error_type(), expected, "{authorization:?}");
        assert_eq!(r.header("connection"), Some("close"));
        assert!(closed_within(&mut conn, Duration::from_secs(10)).await);
    }
    // The same without a body is still answered the same way, and signed requests still work.
    let r = kms_request(server.addr, "TrentService.ListKeys", "{}", None, now_secs()).await;
    assert_eq!(r.error_type(), "MissingAuthenticationTokenException");
    list_keys_succeeds(&server).await;
}

/// A body that stops arriving is answered after the body timeout and its connection closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_stops_arriving_times_out() {
    let server = Server::start(&["--body-timeout-secs", "2"]);
    let mut conn = TcpStream::connect(server.addr).await.unwrap();
    conn.write_all(head(server.addr, Some(FAKE_AUTHORIZATION), 1000).as_bytes())
        .await
        .unwrap();
    conn.write_all(&[b'{'; 500]).await.unwrap();
    let r = read_response(&mut conn).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.error_type(), "SerializationException");
    assert!(
        r.json()["message"]
            .as_str()
            .unwrap()
            .contains("not received within 2 seconds"),
        "{:?}",
        r.json()
    );
    assert!(closed_within(&mut conn, Duration::from_secs(10)).await);
}

/// (a) Hundreds of connections send almost all of a ~1 MiB body with a well-formed (unverified)
/// Authorization header, then stop. kmsd's memory stays bounded by the body budget (here
/// 16 MiB) plus a small per-connection amount, and a signed ListKeys is served meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_unauthenticated_bodies_do_not_exhaust_memory() {
    const CONNECTIONS: usize = 300;
    const CONTENT_LENGTH: usize = 1_048_034;
    raise_own_fd_limit();
    let server = Server::start(&[
        "--max-unauthenticated-body-mib",
        "16",
        "--body-timeout-secs",
        "120",
    ]);
    list_keys_succeeds(&server).await;
    let before = rss_kib(&server);

    let written = Arc::new(AtomicU64::new(0));
    let mut clients = Vec::new();
    for _ in 0..CONNECTIONS {
        let addr = server.addr;
        let written = written.clone();
        clients.push(tokio::spawn(async move {
            let mut conn = TcpStream::connect(addr).await.unwrap();
            conn.write_all(head(addr, Some(FAKE_AUTHORIZATION), CONTENT_LENGTH).as_bytes())
                .await
                .unwrap();
            let chunk = vec![b' '; 16 * 1024];
            let mut left = CONTENT_LENGTH - 34;
            while left > 0 {
                let n = left.min(chunk.len());
                if conn.write_all(&chunk[..n]).await.is_err() {
                    break;
                }
                written.fetch_add(n as u64, Ordering::Relaxed);
                left -= n;
            }
            // Hold the connection without finishing the body.
            tokio::time::sleep(Duration::from_secs(600)).await;
            drop(conn);
        }));
    }
    // Wait until the clients can write no more (kmsd stopped reading, or everything is sent).
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut last = u64::MAX;
    loop {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let now = written.load(Ordering::Relaxed);
        if now == last || Instant::now() > deadline {
            break;
        }
        last = now;
    }
    let sent_mib = written.load(Ordering::Relaxed) / (1024 * 1024);
    let during = rss_kib(&server);
    let grown_mib = during.saturating_sub(before) / 1024;
    eprintln!("clients sent {sent_mib} MiB; kmsd RSS {before} KiB -> {during} KiB");
    assert!(
        sent_mib > 32,
        "the attack did not get going: only {sent_mib} MiB sent"
    );
    // Budget 16 MiB + per connection at most 16 KiB uncharged + a 64 KiB read buffer + TLS-less
    // connection state; without the bounds this is ~1.7 MiB per connection (> 500 MiB).
    assert!(
        grown_mib < 120,
        "kmsd grew by {grown_mib} MiB holding {CONNECTIONS} incomplete bodies"
    );
    list_keys_succeeds(&server).await;
    for c in clients {
        c.abort();
    }
}

/// Signs a ListKeys for a raw keep-alive request.
fn signed_list_keys(server: &Server) -> Vec<u8> {
    let (akid, secret) = server.admin_credentials();
    let headers = vec![
        ("host".to_owned(), server.addr.to_string()),
        (
            "content-type".to_owned(),
            "application/x-amz-json-1.1".to_owned(),
        ),
        (
            "x-amz-target".to_owned(),
            "TrentService.ListKeys".to_owned(),
        ),
    ];
    let parts = kmsd::sigv4::RequestParts {
        method: "POST",
        path: "/",
        query: "",
        headers: headers.clone(),
        body: b"{}",
    };
    let mut all = headers;
    all.extend(kmsd::sigv4::sign(&parts, &akid, &secret, "us-east-1", "kms", now_secs()).unwrap());
    let mut req = String::from("POST / HTTP/1.1\r\n");
    for (n, v) in all {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    req.push_str("content-length: 2\r\n\r\n{}");
    req.into_bytes()
}

/// (b) Thousands of idle connections against a kmsd whose open-file limit is 1024: at the
/// connection limit (lowered to fit that limit) the longest-idle connections make room, a
/// signed ListKeys succeeds, and every idle connection is closed after the 2 s idle timeout,
/// also a keep-alive connection after its request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_idle_connections_do_not_lock_out_signed_requests() {
    const IDLE: usize = 2500;
    let own_limit = raise_own_fd_limit();
    assert!(
        own_limit > IDLE as u64 + 200,
        "this test needs {} file descriptors; the hard limit is {own_limit}",
        IDLE + 200
    );
    let server = Server::start_with_open_file_limit(
        1024,
        &[
            "--idle-timeout-secs",
            "2",
            "--max-connections",
            "100000",
            "--max-connections-per-ip",
            "0",
        ],
    );
    let mut idle = Vec::with_capacity(IDLE);
    for _ in 0..IDLE {
        idle.push(TcpStream::connect(server.addr).await.unwrap());
    }
    list_keys_succeeds(&server).await;
    assert!(
        server
            .log
            .lock()
            .unwrap()
            .contains("max connections lowered to fit the open-file limit"),
        "kmsd did not fit its connection limit to 1024 file descriptors"
    );

    // A keep-alive client: answered, then closed once idle (not before ~the idle timeout).
    let mut keep_alive = TcpStream::connect(server.addr).await.unwrap();
    keep_alive
        .write_all(&signed_list_keys(&server))
        .await
        .unwrap();
    let r = read_response(&mut keep_alive).await;
    assert_eq!(r.status, 200, "{:?}", String::from_utf8_lossy(&r.body));
    let answered = Instant::now();
    assert!(closed_within(&mut keep_alive, Duration::from_secs(30)).await);
    assert!(
        answered.elapsed() >= Duration::from_secs(1),
        "closed after {:?}, before the idle timeout",
        answered.elapsed()
    );

    // Every idle connection is closed: shed for newer ones or after the idle timeout.
    for (i, conn) in idle.iter_mut().enumerate() {
        assert!(
            closed_within(conn, Duration::from_secs(30)).await,
            "idle connection {i} still open"
        );
    }
    list_keys_succeeds(&server).await;
}
