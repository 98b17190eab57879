//! One connection, from the caller's accept step (e.g. a TLS handshake) to its close: hyper
//! serves HTTP/1.1 or h2 on it, and the connection is closed when it has had no request in
//! progress for the idle timeout, when the table sheds it, or, after its in-flight requests,
//! on shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::sync::watch;
use tokio::time::Instant;
use tower::Service as _;

use crate::limits::ConnectionLimits;
use crate::table::Slot;
use crate::Stream;

/// Largest HTTP/1 read buffer per connection (it also bounds the size of request headers).
const H1_MAX_BUF_SIZE: usize = 64 * 1024;

/// Runs one accepted TCP connection until it ends; `slot` is its place in the table.
pub(crate) async fn run<A, Fut, S, D>(
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
    accept: A,
    app: Router,
    stop: watch::Receiver<bool>,
    slot: Slot,
    limits: ConnectionLimits,
) where
    A: Fn(tokio::net::TcpStream, SocketAddr) -> Fut,
    Fut: Future<Output = Option<(S, Option<D>)>>,
    S: Stream,
    D: Clone + Send + Sync + 'static,
{
    let _ = tcp.set_nodelay(true);
    // The accept step (TLS handshake) counts as idle time, and a shed connection stops it.
    let accepted = tokio::select! {
        a = accept(tcp, peer) => a,
        _ = tokio::time::sleep(limits.idle_timeout) => {
            tracing::debug!(%peer, "connection closed: idle before its first request");
            None
        }
        _ = slot.activity.close_requested() => None,
    };
    if let Some((stream, details)) = accepted {
        serve(stream, peer, details, app, stop, &slot, limits).await;
    }
}

/// Why the connection loop stopped polling the connection.
enum End {
    /// hyper finished (client closed, error, or graceful close done).
    Done,
    /// Idle for the idle timeout with nothing in flight.
    Idle,
    /// Shed by the table with nothing in flight.
    Shed,
}

async fn serve<S: Stream, D: Clone + Send + Sync + 'static>(
    stream: S,
    peer: SocketAddr,
    details: Option<D>,
    app: Router,
    mut stop: watch::Receiver<bool>,
    slot: &Slot,
    limits: ConnectionLimits,
) {
    let activity = slot.activity.clone();
    let service =
        hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
            let in_progress = activity.request_started();
            req.extensions_mut().insert(ConnectInfo(peer));
            if let Some(d) = &details {
                req.extensions_mut().insert(d.clone());
            }
            let mut app = app.clone();
            async move {
                let response = app.call(req.map(axum::body::Body::new)).await;
                drop(in_progress);
                response
            }
        });
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(H1_MAX_BUF_SIZE);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Duration::from_secs(30));
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let activity = &slot.activity;
    // One timer per connection, moved only when it fires: requests do not touch it.
    let idle = tokio::time::sleep(limits.idle_timeout);
    tokio::pin!(idle);
    let mut stopping = false;
    let mut closing = false;
    let end = loop {
        tokio::select! {
            biased;
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
                break End::Done;
            }
            changed = stop.changed(), if !stopping => {
                // Shutdown (or the server gone): finish in-flight requests, then close.
                let _ = changed;
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
            _ = activity.close_requested(), if !closing => {
                if !activity.busy() {
                    break End::Shed;
                }
                // A request started just before the table chose this connection: let it
                // finish, then close.
                closing = true;
                conn.as_mut().graceful_shutdown();
            }
            _ = idle.as_mut() => {
                match activity.idle_deadline(limits.idle_timeout) {
                    Some(deadline) if deadline <= std::time::Instant::now() => break End::Idle,
                    Some(deadline) => idle.as_mut().reset(Instant::from_std(deadline)),
                    None => idle.as_mut().reset(Instant::now() + limits.idle_timeout),
                }
            }
        }
    };
    match end {
        End::Done => {}
        End::Idle => tracing::debug!(%peer, "connection closed: idle"),
        End::Shed => tracing::debug!(%peer, "connection closed: shed for a new connection"),
    }
}
