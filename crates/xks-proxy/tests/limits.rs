//! The real `xks-proxy` binary keeps serving while anonymous clients hold connections: idle
//! connections are closed after `[limits] idle_timeout_secs`, at `max_connections` the
//! longest-idle ones make room for new ones, and a request without valid credentials is
//! answered before its body is read.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{metadata, parse_response, Client};
use serde_json::json;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use xks_proxy::testkit::{TestProxy, TestProxyOptions, TEST_URI_PATH};

const BIN: &str = env!("CARGO_BIN_EXE_xks-proxy");

/// Whether the proxy closes `conn` (EOF, reset or TLS close) within `wait`.
async fn closed_within<S: AsyncRead + Unpin>(conn: &mut S, wait: Duration) -> bool {
    let mut b = [0u8; 256];
    loop {
        match tokio::time::timeout(wait, conn.read(&mut b)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_anonymous_clients_do_not_lock_out_kms() {
    const IDLE: usize = 300;
    let mut opts = TestProxyOptions::new(&["foo"]);
    opts.limits_toml =
        "idle_timeout_secs = 2\nmax_connections = 50\nmax_connections_per_ip = 0".into();
    let proxy = TestProxy::start(Path::new(BIN), opts).unwrap();
    let c = Client::new(&proxy, None);

    let mut idle = Vec::new();
    for _ in 0..IDLE {
        idle.push(TcpStream::connect(proxy.addr()).await.unwrap());
    }
    // KMS still gets through: an idle connection makes room.
    let r = c
        .xks(
            &format!("{TEST_URI_PATH}/keys/foo/metadata"),
            &json!({ "requestMetadata": metadata("DescribeKey") }),
        )
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));

    // No credentials and a large Content-Length: answered at once, body never sent.
    let mut tls = c.connect().await.unwrap();
    let head = format!(
        "POST {TEST_URI_PATH}/keys/foo/encrypt HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\ncontent-length: 500000\r\n\r\n",
        c.host()
    );
    tls.write_all(head.as_bytes()).await.unwrap();
    tls.flush().await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let answer = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            if let Ok(r) = parse_response(&got) {
                let len: usize = r
                    .header("content-length")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                if r.body.len() >= len {
                    return r;
                }
            }
            let n = tls.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed without an answer");
            got.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .expect("no answer before the body was sent");
    assert_eq!(answer.status, 401);
    assert_eq!(answer.error_name(), "AuthenticationFailedException");

    // A TLS client that goes quiet after the handshake is closed after the idle timeout.
    let mut quiet = c.connect().await.unwrap();
    let since = Instant::now();
    assert!(closed_within(&mut quiet, Duration::from_secs(30)).await);
    assert!(
        since.elapsed() >= Duration::from_secs(1),
        "closed after {:?}, before the idle timeout",
        since.elapsed()
    );

    // Every idle TCP connection is closed: shed for newer ones or after the idle timeout.
    for (i, conn) in idle.iter_mut().enumerate() {
        assert!(
            closed_within(conn, Duration::from_secs(30)).await,
            "idle connection {i} still open"
        );
    }
}
