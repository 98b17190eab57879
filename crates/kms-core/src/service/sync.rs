//! Keeping this process's caches exact when other processes or nodes write the same store: the
//! store's change log, read before each request when the store's hint moved and always inside
//! the write section; and the write section itself, shared with every process on the store.
//!
//! A request that starts after a write was acknowledged (on any node) sees it: the server calls
//! [`Service::sync_changes_async`] before authenticating each request.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use kms_types::KmsError;

use super::{internal, Service};
use crate::store::{Change, StoreGuard};

/// How far a service has read its store's change log.
#[derive(Default, Debug, Clone, Copy)]
pub(crate) struct ChangeCursor {
    /// The store's change hint when the log was last read.
    hint: Option<u64>,
    /// The newest change log position read.
    seen: u64,
    /// Whether the cursor was positioned (the first read only positions it).
    started: bool,
}

/// The write section: this process's mutex and the store's section shared with other
/// processes and nodes, released together (the store's first).
pub(crate) struct WriteSection<'a> {
    _store: StoreGuard,
    _local: tokio::sync::MutexGuard<'a, ()>,
}

impl Service {
    /// Enters the write section: serialises read-modify-write operations across every kmsd
    /// sharing the store, then brings the caches up to date with what others wrote, so the
    /// section reads current records.
    pub(crate) async fn write_section(&self) -> Result<WriteSection<'_>, KmsError> {
        let local = self.write_lock.lock().await;
        let store = self.store.clone();
        let guard = tokio::task::spawn_blocking(move || store.lock_writes())
            .await
            .map_err(internal)?
            .map_err(internal)?;
        self.read_changes(None)?;
        Ok(WriteSection {
            _store: guard,
            _local: local,
        })
    }

    /// Drops cached entries that other processes or nodes changed since the last look. Cheap
    /// when nothing changed (SQLite: a pragma; PostgreSQL: one indexed round trip, shared by
    /// concurrent callers).
    pub fn sync_changes(&self) -> Result<(), KmsError> {
        let hint = self.store.change_hint().map_err(internal)?;
        self.sync_to(hint)
    }

    /// [`Service::sync_changes`] for async callers: the server calls it before authenticating
    /// each signed request. A store whose hint needs a round trip is asked off the async
    /// workers.
    pub async fn sync_changes_async(&self) -> Result<(), KmsError> {
        let hint = if self.store.change_hint_is_local() {
            self.store.change_hint()
        } else {
            let store = Arc::clone(&self.store);
            tokio::task::spawn_blocking(move || store.change_hint())
                .await
                .map_err(internal)?
        }
        .map_err(internal)?;
        self.sync_to(hint)?;
        // Key store connections made or dropped on other nodes take effect here.
        self.follow_key_stores().await;
        Ok(())
    }

    /// Reads the change log if the store's hint moved since the last look.
    fn sync_to(&self, hint: u64) -> Result<(), KmsError> {
        let unchanged = self
            .changes_seen
            .lock()
            .map(|c| c.hint == Some(hint))
            .unwrap_or(false);
        if unchanged {
            return Ok(());
        }
        self.read_changes(Some(hint))
    }

    /// Reads the change log after the cursor and drops what it names from the caches.
    fn read_changes(&self, hint: Option<u64>) -> Result<(), KmsError> {
        let mut cursor = self
            .changes_seen
            .lock()
            .map_err(|_| internal("change cursor lock poisoned"))?;
        let batch = self.store.changes_since(cursor.seen).map_err(internal)?;
        if cursor.started {
            if batch.complete {
                self.forget_changed(&batch.changes);
            } else {
                self.forget_all();
            }
        } else if batch.latest > 0 {
            // Nothing is cached from before the service first looked at the log, except what
            // it loaded meanwhile: drop that.
            self.forget_all();
        }
        cursor.started = true;
        cursor.seen = batch.latest.max(cursor.seen);
        if hint.is_some() {
            cursor.hint = hint;
        }
        Ok(())
    }

    /// Drops the cached entries that `changes` name.
    fn forget_changed(&self, changes: &[Change]) {
        if changes.is_empty() {
            return;
        }
        self.cache_epoch.fetch_add(1, Ordering::AcqRel);
        let mut principals_changed = false;
        if let Ok(mut keys) = self.key_cache.write() {
            for c in changes {
                if let Change::Key { region, key_id } = c {
                    keys.remove(&(region.clone(), key_id.clone()));
                }
            }
        }
        if let Ok(mut aliases) = self.alias_cache.write() {
            for c in changes {
                if let Change::Alias {
                    account,
                    region,
                    name,
                } = c
                {
                    aliases.remove(&(account.clone(), region.clone(), name.clone()));
                }
            }
        }
        for c in changes {
            match c {
                Change::AccessKey { access_key_id } => self.forget_access_key(access_key_id),
                Change::Doc { kind, .. } => {
                    principals_changed = true;
                    if kind == crate::hsm::KEY_STORE_DOC || kind == crate::hsm::CLUSTER_DOC {
                        self.connections().note_change();
                    }
                }
                _ => {}
            }
        }
        if principals_changed {
            // Identity policies, users and roles are documents; they are few and cheap to
            // re-read.
            if let Ok(mut c) = self.identity_cache.write() {
                c.clear();
            }
        }
    }

    /// Drops every cached record (the change log no longer reaches back far enough).
    fn forget_all(&self) {
        self.cache_epoch.fetch_add(1, Ordering::AcqRel);
        self.connections().note_change();
        if let Ok(mut c) = self.key_cache.write() {
            c.clear();
        }
        if let Ok(mut c) = self.alias_cache.write() {
            c.clear();
        }
        if let Ok(mut c) = self.secret_cache.write() {
            c.clear();
        }
        if let Ok(mut c) = self.identity_cache.write() {
            c.clear();
        }
    }

    /// Takes the lease of background job `job` for one run: `None` when another kmsd on the
    /// same store runs it now, so each job runs once across a cluster.
    pub async fn job_lease(&self, job: &str) -> Result<Option<StoreGuard>, KmsError> {
        let store = Arc::clone(&self.store);
        let job = job.to_owned();
        tokio::task::spawn_blocking(move || store.try_job_lease(&job))
            .await
            .map_err(internal)?
            .map_err(internal)
    }
}
