//! The audit writer: a dedicated thread that group-commits records (one write and one fsync
//! per batch) so auditing does not serialise the request path.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use crate::chain::{AuditFileSet, SigningKey};

/// When a request may be acknowledged relative to its audit record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// The response waits until the record is fsynced (group commit). Nothing acknowledged is
    /// missing from the trail, even after a crash.
    Sync,
    /// The response does not wait; records are fsynced per batch shortly after. A crash can lose
    /// the records of the last few milliseconds of acknowledged requests.
    Buffered,
}

enum Msg {
    Record(Value, Option<oneshot::Sender<Result<(), String>>>),
    Close(oneshot::Sender<()>),
}

/// Handle to the writer thread. Cloneable; dropping every handle stops the thread after
/// writing what it has.
#[derive(Clone)]
pub struct AuditWriter {
    tx: mpsc::UnboundedSender<Msg>,
    durability: Durability,
    pending: Arc<AtomicU64>,
}

impl AuditWriter {
    /// Starts the writer over `dir` (see [`AuditFileSet::open`]); files roll at `max_bytes` or
    /// `max_age_secs`.
    pub fn start(
        dir: &Path,
        key: SigningKey,
        durability: Durability,
        max_bytes: u64,
        max_age_secs: u64,
        clock: Arc<dyn Fn() -> i64 + Send + Sync>,
    ) -> Result<Self, String> {
        let mut set = AuditFileSet::open(dir, key, clock())?;
        let (tx, mut rx) = mpsc::unbounded_channel::<Msg>();
        let pending = Arc::new(AtomicU64::new(0));
        let pending_thread = pending.clone();
        let max_age_ms = (max_age_secs as i64).saturating_mul(1000);
        std::thread::Builder::new()
            .name("kmsd-audit".into())
            .spawn(move || {
                let mut batch = Vec::new();
                let mut acks = Vec::new();
                while let Some(first) = rx.blocking_recv() {
                    let mut close = None;
                    let mut next = Some(first);
                    while let Some(msg) = next.take() {
                        match msg {
                            Msg::Record(v, ack) => {
                                batch.push(v);
                                acks.extend(ack);
                            }
                            Msg::Close(done) => close = Some(done),
                        }
                        if batch.len() < 4096 && close.is_none() {
                            next = rx.try_recv().ok();
                        }
                    }
                    let now = clock();
                    let result = set
                        .append(&mut batch, now)
                        .and_then(|_| set.sync())
                        .and_then(|_| set.maybe_roll(max_bytes, max_age_ms, now));
                    if let Err(e) = &result {
                        tracing::error!(error = %e, records = batch.len(), "audit write failed");
                    }
                    pending_thread.fetch_sub(batch.len() as u64, Ordering::SeqCst);
                    batch.clear();
                    for ack in acks.drain(..) {
                        let _ = ack.send(result.clone());
                    }
                    if let Some(done) = close {
                        if let Err(e) = set.close_current(clock()) {
                            tracing::error!(error = %e, "closing the audit file failed");
                        }
                        let _ = done.send(());
                        return;
                    }
                }
                let _ = set.close_current(clock());
            })
            .map_err(|e| e.to_string())?;
        Ok(AuditWriter {
            tx,
            durability,
            pending,
        })
    }

    /// Records one event. With [`Durability::Sync`] this returns once the record is on disk;
    /// an error means it is not, and the request must not be acknowledged as a success.
    pub async fn record(&self, event: Value) -> Result<(), String> {
        self.pending.fetch_add(1, Ordering::SeqCst);
        match self.durability {
            Durability::Buffered => self
                .tx
                .send(Msg::Record(event, None))
                .map_err(|_| "audit writer stopped".to_owned()),
            Durability::Sync => {
                let (ack, done) = oneshot::channel();
                self.tx
                    .send(Msg::Record(event, Some(ack)))
                    .map_err(|_| "audit writer stopped".to_owned())?;
                done.await.map_err(|_| "audit writer stopped".to_owned())?
            }
        }
    }

    /// Queues a record without waiting for it to reach the disk (for secondary logs).
    pub fn record_nowait(&self, event: Value) {
        self.pending.fetch_add(1, Ordering::SeqCst);
        let _ = self.tx.send(Msg::Record(event, None));
    }

    /// Whether the writer thread is still running.
    pub fn is_running(&self) -> bool {
        !self.tx.is_closed()
    }

    /// Records not yet on disk (the audit lag).
    pub fn pending(&self) -> u64 {
        self.pending.load(Ordering::SeqCst)
    }

    /// Writes everything queued, closes the current file with its signed digest, stops.
    pub async fn close(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Msg::Close(done)).is_ok() {
            let _ = wait.await;
        }
    }
}
