//! The accept loop kmsd and xks-proxy share. Each accepted TCP connection goes through the
//! caller's `accept` step (a TLS handshake, or nothing for plain HTTP), which also yields the
//! connection's details (e.g. the negotiated TLS version) to hand every request as an
//! extension; then hyper serves HTTP/1.1 or h2 on it with a header-read timeout, so a slow
//! client cannot hold a connection forever. On shutdown the listener stops, every connection
//! finishes its in-flight requests, and the loop waits for them at most `drain`.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tower::Service as _;

/// How long a client may take to send a request's headers.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// A connection's byte stream (plain TCP, or TLS over it).
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Stream for T {}

/// Serves `app` on `listener` until `shutdown` resolves. `accept` turns an accepted TCP
/// connection into its stream and the details to attach to its requests (`None` drops the
/// connection, e.g. after a failed handshake). Requests also carry `ConnectInfo<SocketAddr>`.
pub async fn serve<A, Fut, S, D>(
    listener: tokio::net::TcpListener,
    accept: A,
    app: Router,
    shutdown: impl Future<Output = ()>,
    drain: Duration,
) where
    A: Fn(tokio::net::TcpStream, SocketAddr) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Option<(S, Option<D>)>> + Send + 'static,
    S: Stream,
    D: Clone + Send + Sync + 'static,
{
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let accept = accept.clone();
        let app = app.clone();
        let stop = stop_rx.clone();
        tasks.spawn(async move {
            let _ = tcp.set_nodelay(true);
            if let Some((stream, details)) = accept(tcp, peer).await {
                serve_connection(stream, peer, details, app, stop).await;
            }
        });
        // Reap finished connections so the set does not grow.
        while tasks.try_join_next().is_some() {}
    }
    let _ = stop_tx.send(true);
    let wait = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(drain, wait).await.is_err() {
        tracing::warn!(
            seconds = drain.as_secs(),
            "some connections did not finish in time after shutdown"
        );
    }
}

/// Serves one connection until it ends, or until `stop` fires: then it finishes its in-flight
/// requests and closes.
async fn serve_connection<S: Stream, D: Clone + Send + Sync + 'static>(
    stream: S,
    peer: SocketAddr,
    details: Option<D>,
    app: Router,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let service =
        hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            if let Some(d) = &details {
                req.extensions_mut().insert(d.clone());
            }
            let mut app = app.clone();
            async move { app.call(req.map(axum::body::Body::new)).await }
        });
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Duration::from_secs(30));
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        }
        _ = stop.changed() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}
