//! The accept loop in-process on loopback: idle connections are closed after the idle
//! timeout, at the connection limit the longest-idle ones make room for new ones, and a
//! request that takes longer than the idle timeout is not cut off.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use kms_serve::ConnectionLimits;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn start(limits: ConnectionLimits) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let app = Router::new().route("/", get(|| async { "ok" })).route(
        "/slow",
        get(|| async {
            tokio::time::sleep(Duration::from_millis(2500)).await;
            "slow ok"
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let accept = |tcp: TcpStream, _peer: SocketAddr| async move { Some((tcp, None::<()>)) };
    tokio::spawn(kms_serve::serve(
        listener,
        accept,
        app,
        async {
            let _ = rx.await;
        },
        Duration::from_secs(1),
        limits,
    ));
    (addr, tx)
}

/// One request on a fresh connection; returns the response text.
async fn get_on(conn: &mut TcpStream, path: &str) -> String {
    conn.write_all(format!("GET {path} HTTP/1.1\r\nhost: t\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let mut got = Vec::new();
    while !String::from_utf8_lossy(&got).contains("ok") {
        let n = tokio::time::timeout(Duration::from_secs(10), conn.read(&mut buf))
            .await
            .expect("no response")
            .unwrap();
        assert!(
            n > 0,
            "closed before the response: {:?}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&got).into_owned()
}

/// Whether the server has closed `conn` (EOF or reset) within `wait`.
async fn closed_within(conn: &mut TcpStream, wait: Duration) -> bool {
    let mut b = [0u8; 1];
    matches!(
        tokio::time::timeout(wait, conn.read(&mut b)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed_and_the_longest_idle_make_room() {
    let limits = ConnectionLimits {
        idle_timeout: Duration::from_secs(2),
        max_connections: 50,
        max_connections_per_ip: 0,
        ..Default::default()
    };
    let (addr, _stop) = start(limits).await;
    let mut idle = Vec::new();
    for _ in 0..200 {
        idle.push(TcpStream::connect(addr).await.unwrap());
    }
    // A client with a request still gets in: an idle connection makes room.
    let mut fresh = TcpStream::connect(addr).await.unwrap();
    assert!(get_on(&mut fresh, "/").await.contains("200 OK"));
    // The first 150+ connections were shed as newer ones arrived.
    let mut shed = 0;
    for c in idle.iter_mut().take(150) {
        if closed_within(c, Duration::from_millis(500)).await {
            shed += 1;
        }
    }
    assert_eq!(shed, 150);
    // The rest (and the keep-alive connection) are closed by the idle timeout.
    for c in idle.iter_mut().skip(150) {
        assert!(closed_within(c, Duration::from_secs(10)).await);
    }
    assert!(closed_within(&mut fresh, Duration::from_secs(10)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_longer_than_the_idle_timeout_is_not_cut_off() {
    let limits = ConnectionLimits {
        idle_timeout: Duration::from_secs(1),
        ..Default::default()
    };
    let (addr, _stop) = start(limits).await;
    let mut conn = TcpStream::connect(addr).await.unwrap();
    assert!(get_on(&mut conn, "/slow").await.contains("slow ok"));
    // Keep-alive: the next request on the same connection within the idle timeout works.
    assert!(get_on(&mut conn, "/").await.contains("200 OK"));
}
