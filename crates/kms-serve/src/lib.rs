//! The accept loop kmsd and xks-proxy share. Each accepted TCP connection takes a place in the
//! listener's connection table (at the connection limit, in all or for its source address, the
//! connection idle the longest is closed to make room; if none is idle the new one is closed),
//! goes through the caller's `accept` step (a TLS handshake, or nothing for plain HTTP), which
//! also yields the connection's details (e.g. the negotiated TLS version) to hand every request
//! as an extension; then hyper serves HTTP/1.1 or h2 on it with a header-read timeout, and the
//! connection is closed once it has had no request in progress for the idle timeout. `accept()`
//! failures (e.g. out of file descriptors) close the longest-idle connection and back off
//! instead of spinning; established connections keep being served. On shutdown the listener
//! stops, every connection finishes its in-flight requests, and the loop waits for them at
//! most `drain`.
//!
//! Request bodies that are not yet authenticated are read with [`read_body`] (time limit and a
//! shared memory budget).

mod body;
mod connection;
mod limits;
mod table;

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use tokio::io::{AsyncRead, AsyncWrite};

pub use body::{
    read_body, BodyBudget, BodyError, BudgetCharge, DEFAULT_BODY_BUDGET_BYTES,
    DEFAULT_BODY_READ_TIMEOUT, UNCHARGED_BODY_BYTES,
};
pub use limits::{
    raise_open_file_limit, ConnectionLimits, DEFAULT_HEADER_READ_TIMEOUT, DEFAULT_IDLE_TIMEOUT,
    DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_CONNECTIONS_PER_IP,
};

/// A connection's byte stream (plain TCP, or TLS over it).
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Stream for T {}

/// Shortest and longest pause after a failed `accept()`.
const ACCEPT_BACKOFF: (Duration, Duration) = (Duration::from_millis(10), Duration::from_secs(1));

/// Serves `app` on `listener` until `shutdown` resolves. `accept` turns an accepted TCP
/// connection into its stream and the details to attach to its requests (`None` drops the
/// connection, e.g. after a failed handshake). Requests also carry `ConnectInfo<SocketAddr>`.
/// The process's open-file limit is raised to its hard limit first, and `limits.max_connections`
/// lowered if it would not leave file descriptors for the rest of the process.
pub async fn serve<A, Fut, S, D>(
    listener: tokio::net::TcpListener,
    accept: A,
    app: Router,
    shutdown: impl Future<Output = ()>,
    drain: Duration,
    limits: ConnectionLimits,
) where
    A: Fn(tokio::net::TcpStream, SocketAddr) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Option<(S, Option<D>)>> + Send + 'static,
    S: Stream,
    D: Clone + Send + Sync + 'static,
{
    let limits = limits.fitted_to(raise_open_file_limit());
    tracing::info!(
        max_connections = limits.max_connections,
        max_connections_per_ip = limits.max_connections_per_ip,
        idle_timeout_secs = limits.idle_timeout.as_secs_f64(),
        header_read_timeout_secs = limits.header_read_timeout.as_secs_f64(),
        "connection limits"
    );
    let table = table::ConnTable::new(limits.max_connections, limits.max_connections_per_ip);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    let mut backoff: Option<Duration> = None;
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => {
                    backoff = None;
                    a
                }
                Err(e) if per_connection_error(&e) => continue,
                Err(e) => {
                    // Typically out of file descriptors: free one if an idle connection can
                    // go, and pause so the loop does not spin; live connections go on.
                    let shed = table.shed_one();
                    let pause = match backoff {
                        None => {
                            tracing::warn!(error = %e, shed_idle_connection = shed, "accept failed; backing off");
                            ACCEPT_BACKOFF.0
                        }
                        Some(p) => (p * 2).min(ACCEPT_BACKOFF.1),
                    };
                    backoff = Some(pause);
                    tokio::select! {
                        _ = tokio::time::sleep(pause) => continue,
                        _ = &mut shutdown => break,
                    }
                }
            },
            _ = &mut shutdown => break,
        };
        let slot = match table.admit(peer.ip()) {
            Ok(slot) => slot,
            Err(why) => {
                tracing::debug!(%peer, reason = ?why, "connection refused: at the connection limit with no idle connection to close");
                continue;
            }
        };
        tasks.spawn(connection::run(
            tcp,
            peer,
            accept.clone(),
            app.clone(),
            stop_rx.clone(),
            slot,
            limits,
        ));
        // Reap finished connections so the set does not grow.
        while tasks.try_join_next().is_some() {}
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let wait = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(drain, wait).await.is_err() {
        tracing::warn!(
            seconds = drain.as_secs(),
            "some connections did not finish in time after shutdown"
        );
    }
}

/// `accept()` errors about one connection that went away before it was accepted: the next
/// `accept()` can follow at once.
fn per_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionAborted | ConnectionReset | ConnectionRefused | Interrupted | WouldBlock
    )
}
