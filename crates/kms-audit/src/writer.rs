//! The audit writer: a dedicated thread that group-commits records (one write and one fsync
//! per batch) so auditing does not serialise the request path. After answering a batch it signs
//! the chain head (a checkpoint, at most once per checkpoint interval, only when records came
//! in), rolls files, and applies retention; an idle writer wakes up to sign records still
//! unsigned and to roll an old file.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;

use crate::chain::AuditFileSet;
use crate::line::AuditLine;
use crate::retention::Retention;
use crate::signed::SigningKey;

/// When a request may be acknowledged relative to its audit record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// The response waits until the record is fsynced (group commit). Nothing acknowledged is
    /// missing from the trail, even after a crash.
    Sync,
    /// The response does not wait; records are written and fsynced in batches, at most every
    /// [`BUFFERED_BATCH_MS`]. A crash can lose the records of the last few milliseconds of
    /// acknowledged requests.
    Buffered,
}

/// With [`Durability::Buffered`], the writer rests this long after each batch, so that records
/// arriving meanwhile neither wake it one by one nor cost an fsync each.
pub const BUFFERED_BATCH_MS: u64 = 10;

/// Default time between two checkpoints while records arrive.
pub const DEFAULT_CHECKPOINT_INTERVAL_MS: u64 = 1000;

/// How the writer writes.
#[derive(Debug, Clone)]
pub struct WriterConfig {
    /// When a request may be acknowledged.
    pub durability: Durability,
    /// Files roll at this size.
    pub max_file_bytes: u64,
    /// Files roll at this age.
    pub max_file_age_secs: u64,
    /// Records are signed (a checkpoint) at most this long after they are written.
    pub checkpoint_interval_ms: u64,
    /// Which old files are removed.
    pub retention: Retention,
    /// Written into every record as `kmsdNodeId` (which node of a cluster wrote it), if set.
    pub node_id: Option<String>,
}

impl WriterConfig {
    /// Default checkpoint interval, no retention.
    pub fn new(durability: Durability, max_file_bytes: u64, max_file_age_secs: u64) -> Self {
        WriterConfig {
            durability,
            max_file_bytes,
            max_file_age_secs,
            checkpoint_interval_ms: DEFAULT_CHECKPOINT_INTERVAL_MS,
            retention: Retention::default(),
            node_id: None,
        }
    }
}

enum Msg {
    Record(AuditLine, Option<oneshot::Sender<Result<(), String>>>),
    Close(oneshot::Sender<()>),
}

/// Handle to the writer thread. Cloneable; dropping every handle stops the thread after
/// writing what it has.
#[derive(Clone)]
pub struct AuditWriter {
    tx: mpsc::Sender<Msg>,
    durability: Durability,
    pending: Arc<AtomicU64>,
    running: Arc<AtomicBool>,
}

/// Marks the writer stopped when its thread ends, however it ends.
struct RunningGuard(Arc<AtomicBool>);

impl Drop for RunningGuard {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

/// The writer thread's state.
struct Worker {
    set: AuditFileSet,
    config: WriterConfig,
    clock: Arc<dyn Fn() -> i64 + Send + Sync>,
    /// After a failed checkpoint/roll, the next attempt waits until then (no busy loop).
    retry_at_ms: i64,
}

impl Worker {
    /// How long to wait for records before housekeeping is due (`None`: nothing due).
    fn wait(&self) -> Option<Duration> {
        let interval = i64::try_from(self.config.checkpoint_interval_ms).unwrap_or(i64::MAX);
        let checkpoint_due = (self.set.unsigned_records() > 0).then(|| {
            self.set
                .last_checkpoint_ms()
                .saturating_add(interval)
                .max(self.retry_at_ms)
        });
        let roll_due = self
            .set
            .open_since_ms()
            .map(|t| t.saturating_add(self.max_age_ms()).max(self.retry_at_ms));
        let due = match (checkpoint_due, roll_due) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => a.or(b)?,
        };
        let ms = due.saturating_sub((self.clock)()).max(1);
        Some(Duration::from_millis(u64::try_from(ms).unwrap_or(1)))
    }

    fn max_age_ms(&self) -> i64 {
        i64::try_from(self.config.max_file_age_secs)
            .unwrap_or(i64::MAX)
            .saturating_mul(1000)
    }

    /// Checkpoint, roll, retention: whatever is due now.
    fn housekeeping(&mut self) {
        let now = (self.clock)();
        if now < self.retry_at_ms {
            return;
        }
        let interval = i64::try_from(self.config.checkpoint_interval_ms).unwrap_or(i64::MAX);
        let result = self.set.maybe_checkpoint(interval, now).and_then(|()| {
            self.set
                .maybe_roll(self.config.max_file_bytes, self.max_age_ms(), now)
        });
        match result {
            Ok(true) => self.retention(now),
            Ok(false) => {}
            Err(e) => {
                tracing::error!(error = %e, "audit checkpoint or roll failed; retrying in a second");
                self.retry_at_ms = now.saturating_add(1000);
            }
        }
    }

    /// Removes what the retention policy selects, in as many removals as needed.
    fn retention(&mut self, now: i64) {
        for _ in 0..1000 {
            match self.set.apply_retention(&self.config.retention, now) {
                Ok(Some(removed)) => {
                    tracing::info!(removed = %removed["removedFiles"], "audit retention removed old files")
                }
                Ok(None) => return,
                Err(e) => {
                    tracing::error!(error = %e, "audit retention did not remove files");
                    return;
                }
            }
        }
    }

    fn run(mut self, rx: mpsc::Receiver<Msg>, pending: Arc<AtomicU64>) {
        self.retention((self.clock)());
        let mut batch = Vec::new();
        let mut acks = Vec::new();
        loop {
            let first = match self.wait() {
                Some(wait) => match rx.recv_timeout(wait) {
                    Ok(m) => Some(m),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => break,
                },
                None => match rx.recv() {
                    Ok(m) => Some(m),
                    Err(_) => break,
                },
            };
            let mut close = None;
            let mut next = first;
            while let Some(msg) = next.take() {
                match msg {
                    Msg::Record(line, ack) => {
                        batch.push(line);
                        acks.extend(ack);
                    }
                    Msg::Close(done) => close = Some(done),
                }
                if batch.len() < 4096 && close.is_none() {
                    next = rx.try_recv().ok();
                }
            }
            if !batch.is_empty() {
                let now = (self.clock)();
                let result = self.set.append(&batch, now).and_then(|_| self.set.sync());
                if let Err(e) = &result {
                    tracing::error!(error = %e, records = batch.len(), "audit write failed");
                }
                pending.fetch_sub(batch.len() as u64, Ordering::SeqCst);
                batch.clear();
                for ack in acks.drain(..) {
                    let _ = ack.send(result.clone());
                }
                if self.config.durability == Durability::Buffered && close.is_none() {
                    std::thread::sleep(Duration::from_millis(BUFFERED_BATCH_MS));
                }
            }
            if let Some(done) = close {
                if let Err(e) = self.set.close_current((self.clock)()) {
                    tracing::error!(error = %e, "closing the audit file failed");
                }
                let _ = done.send(());
                return;
            }
            self.housekeeping();
        }
        let _ = self.set.close_current((self.clock)());
    }
}

impl AuditWriter {
    /// Starts the writer over `dir` (see [`AuditFileSet::open`]) with the default checkpoint
    /// interval and no retention; files roll at `max_bytes` or `max_age_secs`.
    pub fn start(
        dir: &Path,
        key: SigningKey,
        durability: Durability,
        max_bytes: u64,
        max_age_secs: u64,
        clock: Arc<dyn Fn() -> i64 + Send + Sync>,
    ) -> Result<Self, String> {
        Self::start_with(
            dir,
            key,
            WriterConfig::new(durability, max_bytes, max_age_secs),
            clock,
        )
    }

    /// Starts the writer over `dir` with `config`.
    pub fn start_with(
        dir: &Path,
        key: SigningKey,
        config: WriterConfig,
        clock: Arc<dyn Fn() -> i64 + Send + Sync>,
    ) -> Result<Self, String> {
        let mut set = AuditFileSet::open(dir, key, clock())?;
        set.set_node_id(config.node_id.as_deref());
        let (tx, rx) = mpsc::channel::<Msg>();
        let pending = Arc::new(AtomicU64::new(0));
        let running = Arc::new(AtomicBool::new(true));
        let durability = config.durability;
        let worker = Worker {
            set,
            config,
            clock,
            retry_at_ms: i64::MIN,
        };
        let pending_thread = pending.clone();
        let guard = RunningGuard(running.clone());
        std::thread::Builder::new()
            .name("kmsd-audit".into())
            .spawn(move || {
                let _guard = guard;
                worker.run(rx, pending_thread);
            })
            .map_err(|e| e.to_string())?;
        Ok(AuditWriter {
            tx,
            durability,
            pending,
            running,
        })
    }

    /// Records one event (an [`AuditLine`], or a `serde_json::Value` made into one). With
    /// [`Durability::Sync`] this returns once the record is on disk; an error means it is not,
    /// and the request must not be acknowledged as a success.
    pub async fn record(&self, event: impl Into<AuditLine>) -> Result<(), String> {
        let event = event.into();
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
    pub fn record_nowait(&self, event: impl Into<AuditLine>) {
        self.pending.fetch_add(1, Ordering::SeqCst);
        let _ = self.tx.send(Msg::Record(event.into(), None));
    }

    /// Whether the writer thread is still running.
    pub fn is_running(&self) -> bool {
        self.running.load(Ordering::SeqCst)
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicI64;

    const T0: i64 = 1_767_225_600_000;

    #[tokio::test]
    async fn records_are_signed_within_the_interval_even_when_no_more_arrive() {
        let dir = tempfile::tempdir().unwrap();
        let key = SigningKey::generate().unwrap();
        let spki = key.spki.clone();
        let now = Arc::new(AtomicI64::new(T0));
        let clock_now = now.clone();
        let clock: Arc<dyn Fn() -> i64 + Send + Sync> =
            Arc::new(move || clock_now.load(Ordering::SeqCst));
        let config = WriterConfig::new(Durability::Sync, 1 << 30, 3600);
        let w = AuditWriter::start_with(dir.path(), key, config, clock).unwrap();
        let record =
            || serde_json::json!({"eventName": "ListKeys", "eventTime": crate::event_time(T0)});
        let unprotected = || {
            crate::verify_dir(dir.path(), Some(&spki))
                .unwrap()
                .unprotected_records
        };
        // The first record is signed at once (no checkpoint yet), the next one waits for the
        // interval to pass.
        w.record(record()).await.unwrap();
        w.record(record()).await.unwrap();
        let mut waited = 0;
        while unprotected() != 1 && waited < 100 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            waited += 1;
        }
        assert_eq!(unprotected(), 1);
        now.fetch_add(1000, Ordering::SeqCst);
        let mut waited = 0;
        while unprotected() != 0 && waited < 200 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            waited += 1;
        }
        assert_eq!(unprotected(), 0, "the idle writer signed the last record");
        w.close().await;
        let r = crate::verify_dir(dir.path(), Some(&spki)).unwrap();
        assert_eq!((r.records, r.open_file), (2, None));
    }
}
