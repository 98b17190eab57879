//! The change feed: PostgreSQL pushes every committed change to every node (LISTEN/NOTIFY), so a
//! node answers "has anything changed?" without a round trip per request.
//!
//! Push alone would be racy (a notification can still be on the wire when a client, told by
//! node A that a key is disabled, asks node B), so writers wait for it to land:
//! - a node that serves from its caches holds a **lease** in `kmsd_nodes`, renewed every
//!   [`RENEW_EVERY`] for [`LEASE`]; it trusts its pushed head only until its last renewal was
//!   sent plus `LEASE - MARGIN` (its own monotonic clock), and asks the database (one coalesced
//!   query, [`super::head`]) otherwise;
//! - every node acknowledges each change it has applied (`NOTIFY kmsd_acks, 'node:seq'`);
//! - a writer, after its commit, waits until every node holding a lease has acknowledged the
//!   change or has let its lease lapse (by the database's clock), and only then answers.
//!
//! So once a write is acknowledged, every node either has its head past the write or asks the
//! database on its next request. A renewal is an update of the lease followed by a fresh read of
//! the head, so a node coming back from a lapsed lease has seen every write whose writer stopped
//! waiting for it.

use std::collections::HashMap;
use std::future::poll_fn;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use deadpool_postgres::Pool;
use kms_core::StoreError;
use tokio::runtime::Handle;
use tokio::sync::{mpsc, Notify};
use tokio_postgres::{AsyncMessage, NoTls};

use super::err;

/// Channel of committed changes (payload: the newest change log position of the transaction).
pub(super) const CHANGES_CHANNEL: &str = "kmsd_changes";
/// Channel of acknowledgements (payload: `node:seq`).
const ACKS_CHANNEL: &str = "kmsd_acks";
/// How long a lease lasts in the database.
const LEASE: Duration = Duration::from_secs(2);
/// How often a serving node renews its lease.
const RENEW_EVERY: Duration = Duration::from_millis(400);
/// How much sooner than the database a node stops trusting its lease.
const MARGIN: Duration = Duration::from_millis(500);
/// How long a writer waits for acknowledgements before it looks at the leases again.
const ACK_POLL: Duration = Duration::from_millis(250);
/// Pause before reconnecting a lost feed connection.
const RECONNECT_PAUSE: Duration = Duration::from_millis(500);

/// One process's end of the change feed.
#[derive(Clone)]
pub(super) struct ChangeFeed {
    shared: Arc<Shared>,
}

struct Shared {
    /// This process's name in `kmsd_nodes` and in acknowledgements.
    node: String,
    /// Start of this feed's monotonic clock.
    base: Instant,
    /// Newest change log position pushed to this node (or read at its last renewal).
    head: AtomicU64,
    /// Until when (nanoseconds on `base`) the pushed head may be trusted; 0: not at all.
    trusted_until: AtomicU64,
    /// Whether this process serves from caches and so wants a lease (set at the first ask).
    wants_lease: AtomicBool,
    /// Wakes the feed task when the lease is first wanted.
    lease_wanted: Notify,
    /// Whether the feed connection is listening now.
    listening: AtomicBool,
    /// Wakes writers waiting for the feed to listen.
    listening_changed: Notify,
    /// Newest position each node acknowledged.
    acks: Mutex<HashMap<String, u64>>,
    /// Wakes writers waiting for acknowledgements.
    acked: Notify,
}

/// Distinct node names for the stores of one process.
static STORES: AtomicU64 = AtomicU64::new(0);

fn node_name() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{}-{}-{:x}",
        std::process::id(),
        STORES.fetch_add(1, Ordering::Relaxed),
        nanos
    )
}

impl ChangeFeed {
    /// Starts the feed's task on `runtime`, connecting with `config`.
    pub(super) fn start(runtime: &Handle, config: tokio_postgres::Config) -> Self {
        let feed = ChangeFeed {
            shared: Arc::new(Shared {
                node: node_name(),
                base: Instant::now(),
                head: AtomicU64::new(0),
                trusted_until: AtomicU64::new(0),
                wants_lease: AtomicBool::new(false),
                lease_wanted: Notify::new(),
                listening: AtomicBool::new(false),
                listening_changed: Notify::new(),
                acks: Mutex::new(HashMap::new()),
                acked: Notify::new(),
            }),
        };
        runtime.spawn(run(Arc::clone(&feed.shared), config));
        feed
    }

    /// This process's name in the lease table.
    pub(super) fn node(&self) -> &str {
        &self.shared.node
    }

    /// Whether the pushed head may be trusted now (without asking for a lease).
    pub(super) fn is_trusted(&self) -> bool {
        nanos_since(self.shared.base) < self.shared.trusted_until.load(Ordering::Acquire)
    }

    /// The pushed head, if it may be trusted now; else `None` (ask the database). The first
    /// call asks for a lease, so only processes that serve requests hold one.
    pub(super) fn trusted_head(&self) -> Option<u64> {
        let s = &self.shared;
        if !s.wants_lease.load(Ordering::Acquire) && !s.wants_lease.swap(true, Ordering::AcqRel) {
            s.lease_wanted.notify_one();
        }
        let now = nanos_since(s.base);
        if now < s.trusted_until.load(Ordering::Acquire) {
            Some(s.head.load(Ordering::Acquire))
        } else {
            None
        }
    }

    /// Waits (at most `limit`) until the feed listens, so the acknowledgements of a write about
    /// to be committed reach this process. Called before a writing transaction starts.
    pub(super) async fn ready(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let changed = self.shared.listening_changed.notified();
            if self.shared.listening.load(Ordering::Acquire) {
                return;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || tokio::time::timeout(left, changed).await.is_err() {
                return;
            }
        }
    }

    /// After a commit that wrote change `seq`: waits until every node holding a lease has
    /// acknowledged it or let its lease lapse, at most `limit`. The commit stands either way;
    /// waiting longer than `limit` is logged.
    ///
    /// The leases are read once after the commit (a node taking a lease later reads the head
    /// afresh after taking it, so it sees this write) and again only when an acknowledgement is
    /// slow, to drop lapsed leases and see renewed ones.
    pub(super) async fn wait_for_nodes(&self, pool: &Pool, seq: u64, limit: Duration) {
        let deadline = Instant::now() + limit;
        let mut leased = match leases(pool).await {
            Ok(l) => l,
            Err(e) => {
                // Without the lease table no node can trust a pushed head for longer than one
                // lease: wait that out.
                tracing::warn!(error = %e, "reading node leases failed; waiting one lease");
                tokio::time::sleep(LEASE.min(limit)).await;
                return;
            }
        };
        loop {
            let acked = self.shared.acked.notified();
            let Some(soonest) = self.unacknowledged(&leased, seq) else {
                return;
            };
            let now = Instant::now();
            if now >= deadline {
                tracing::warn!(seq, "change not acknowledged by every node in time");
                return;
            }
            let wait = soonest.min(ACK_POLL).min(deadline - now);
            if tokio::time::timeout(wait, acked).await.is_err() {
                match leases(pool).await {
                    Ok(l) => leased = l,
                    Err(e) => tracing::warn!(error = %e, "reading node leases failed"),
                }
            }
        }
    }

    /// `None` when every node of `leased` acknowledged `seq`; else the shortest lease left of
    /// the others.
    fn unacknowledged(&self, leased: &[(String, Duration)], seq: u64) -> Option<Duration> {
        let acks = self.shared.acks.lock().ok()?;
        leased
            .iter()
            .filter(|(node, _)| acks.get(node).is_none_or(|a| *a < seq))
            .map(|(_, left)| *left)
            .min()
    }

    /// Gives this node's lease back (a clean shutdown), so writers do not wait for it.
    pub(super) async fn leave(&self, pool: &Pool) {
        self.shared.trusted_until.store(0, Ordering::Release);
        if let Ok(c) = pool.get().await {
            let _ = c
                .execute(
                    "DELETE FROM kmsd_nodes WHERE node_id = $1",
                    &[&self.shared.node],
                )
                .await;
        }
    }
}

/// The nodes holding a lease now, with how long each lease has left (the database's clock).
async fn leases(pool: &Pool) -> Result<Vec<(String, Duration)>, StoreError> {
    let c = pool.get().await.map_err(err)?;
    let stmt = c
        .prepare_cached(
            "SELECT node_id, (EXTRACT(EPOCH FROM (lease_until - clock_timestamp())) * 1000)::BIGINT \
             FROM kmsd_nodes WHERE lease_until > clock_timestamp()",
        )
        .await
        .map_err(err)?;
    let rows = c.query(&stmt, &[]).await.map_err(err)?;
    rows.iter()
        .map(|r| {
            let node: String = r.try_get(0).map_err(err)?;
            let left_ms: i64 = r.try_get(1).map_err(err)?;
            Ok((
                node,
                Duration::from_millis(u64::try_from(left_ms.max(1)).unwrap_or(1)),
            ))
        })
        .collect()
}

fn nanos_since(base: Instant) -> u64 {
    u64::try_from(base.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// What the connection driver hands the feed task.
enum Pushed {
    /// A change notification (already applied to the head).
    Change(u64),
    /// The connection ended.
    Closed,
}

/// The feed task: keeps a listening connection, applies and acknowledges pushed changes, and
/// renews the lease while one is wanted. Reconnects after a loss.
async fn run(shared: Arc<Shared>, config: tokio_postgres::Config) {
    loop {
        if let Err(e) = serve(&shared, &config).await {
            tracing::debug!(error = %e, "change feed connection lost; reconnecting");
        }
        shared.trusted_until.store(0, Ordering::Release);
        tokio::time::sleep(RECONNECT_PAUSE).await;
    }
}

/// One connection's life.
async fn serve(shared: &Arc<Shared>, config: &tokio_postgres::Config) -> Result<(), StoreError> {
    let mut config = config.clone();
    config.application_name(format!("kmsd-feed-{}", shared.node));
    let (client, mut connection) = config.connect(NoTls).await.map_err(err)?;
    let (tx, mut pushed) = mpsc::unbounded_channel();
    let driver_shared = Arc::clone(shared);
    // The connection is driven by its own task, which applies notifications in arrival order
    // (a change's head moves before anything behind it on the wire is looked at).
    let driver = tokio::spawn(async move {
        loop {
            match poll_fn(|cx| connection.poll_message(cx)).await {
                Some(Ok(AsyncMessage::Notification(n))) => {
                    if n.channel() == ACKS_CHANNEL {
                        record_ack(&driver_shared, n.payload());
                    } else if let Ok(seq) = n.payload().parse::<u64>() {
                        driver_shared.head.fetch_max(seq, Ordering::AcqRel);
                        let _ = tx.send(Pushed::Change(seq));
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => {
                    let _ = tx.send(Pushed::Closed);
                    return;
                }
            }
        }
    });
    let result = feed_loop(shared, &client, &mut pushed).await;
    shared.listening.store(false, Ordering::Release);
    driver.abort();
    result
}

/// Listens, then applies, acknowledges and renews until the connection fails.
async fn feed_loop(
    shared: &Arc<Shared>,
    client: &tokio_postgres::Client,
    pushed: &mut mpsc::UnboundedReceiver<Pushed>,
) -> Result<(), StoreError> {
    client
        .batch_execute(&format!("LISTEN {CHANGES_CHANNEL}; LISTEN {ACKS_CHANNEL}"))
        .await
        .map_err(err)?;
    shared.listening.store(true, Ordering::Release);
    shared.listening_changed.notify_waiters();
    let mut renew = tokio::time::interval(RENEW_EVERY);
    renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            p = pushed.recv() => {
                let mut newest = match p {
                    Some(Pushed::Change(seq)) => seq,
                    Some(Pushed::Closed) | None => return Err(StoreError("feed connection closed".into())),
                };
                // Acknowledge everything already here at once.
                while let Ok(p) = pushed.try_recv() {
                    match p {
                        Pushed::Change(seq) => newest = newest.max(seq),
                        Pushed::Closed => return Err(StoreError("feed connection closed".into())),
                    }
                }
                if shared.wants_lease.load(Ordering::Acquire) {
                    tokio::time::timeout(LEASE, client.execute(
                        "SELECT pg_notify($1, $2)",
                        &[&ACKS_CHANNEL, &format!("{}:{newest}", shared.node)],
                    ))
                    .await
                    .map_err(|_| StoreError("acknowledgement timed out".into()))?
                    .map_err(err)?;
                }
            }
            _ = renew.tick(), if shared.wants_lease.load(Ordering::Acquire) => {
                renew_lease(shared, client).await?;
            }
            _ = shared.lease_wanted.notified(), if !shared.wants_lease.load(Ordering::Acquire) => {
                renew_lease(shared, client).await?;
            }
        }
    }
}

/// Renews the lease, then reads the head afresh, then trusts the pushed head until the lease's
/// end as this node counts it (from before the renewal was sent, less the margin).
async fn renew_lease(shared: &Shared, client: &tokio_postgres::Client) -> Result<(), StoreError> {
    let sent = nanos_since(shared.base);
    let lease_ms = LEASE.as_secs_f64() * 1000.0;
    let renewal = async {
        client
            .execute(
                "INSERT INTO kmsd_nodes (node_id, lease_until) \
                 VALUES ($1, clock_timestamp() + ($2::float8) * interval '1 millisecond') \
                 ON CONFLICT (node_id) DO UPDATE SET lease_until = EXCLUDED.lease_until",
                &[&shared.node, &lease_ms],
            )
            .await
            .map_err(err)?;
        let head: i64 = client
            .query_one("SELECT COALESCE(MAX(seq), 0) FROM changes", &[])
            .await
            .and_then(|r| r.try_get(0))
            .map_err(err)?;
        Ok::<_, StoreError>(u64::try_from(head).unwrap_or(0))
    };
    let head = match tokio::time::timeout(LEASE - MARGIN, renewal).await {
        Ok(r) => r?,
        Err(_) => return Err(StoreError("lease renewal timed out".into())),
    };
    shared.head.fetch_max(head, Ordering::AcqRel);
    let until = sent + u64::try_from((LEASE - MARGIN).as_nanos()).unwrap_or(0);
    shared.trusted_until.store(until, Ordering::Release);
    Ok(())
}

/// Records `node:seq` from the acknowledgements channel and wakes waiting writers.
fn record_ack(shared: &Shared, payload: &str) {
    let Some((node, seq)) = payload.rsplit_once(':') else {
        return;
    };
    let Ok(seq) = seq.parse::<u64>() else {
        return;
    };
    if let Ok(mut acks) = shared.acks.lock() {
        let e = acks.entry(node.to_owned()).or_insert(0);
        *e = (*e).max(seq);
    }
    shared.acked.notify_waiters();
}
