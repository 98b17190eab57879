//! Keeping this process's caches exact when other processes or nodes write the same store: the
//! store's change log, read before each request when the store's hint moved and always inside
//! the write section; and the write section itself, shared with every process on the store.
//!
//! A request that starts after a write was acknowledged (on any node) sees it: the server calls
//! [`Service::sync_changes_async`] before authenticating each request.

use std::sync::Arc;

use kms_types::KmsError;

use super::{internal, Service};
use crate::registry::Forget;
use crate::store::{Change, StoreGuard};

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
        self.registry
            .read_changes(None, |f| self.forget_principals(f))?;
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
    /// each signed request. A store whose hint needs a round trip is awaited, not blocked on.
    pub async fn sync_changes_async(&self) -> Result<(), KmsError> {
        let hint = match self.store.change_hint_future() {
            Some(pending) => pending.await,
            None => self.store.change_hint(),
        }
        .map_err(internal)?;
        self.sync_to(hint)?;
        // Key store connections made or dropped on other nodes take effect here.
        self.follow_key_stores().await;
        Ok(())
    }

    /// Reads the change log if the store's hint moved since the last look.
    fn sync_to(&self, hint: u64) -> Result<(), KmsError> {
        self.registry.sync_to(hint, |f| self.forget_principals(f))
    }

    /// Drops the access-key secrets and identity policies a read of the change log names (the
    /// registry drops keys and aliases itself).
    fn forget_principals(&self, forget: Forget<'_>) {
        match forget {
            Forget::Changed(changes) => {
                let mut principals_changed = false;
                for c in changes {
                    match c {
                        Change::AccessKey { access_key_id } => {
                            self.forget_access_key(access_key_id)
                        }
                        Change::Doc { kind, .. } => {
                            principals_changed = true;
                            if kind == crate::hsm::KEY_STORE_DOC || kind == crate::hsm::CLUSTER_DOC
                            {
                                self.connections().note_change();
                            }
                        }
                        _ => {}
                    }
                }
                if principals_changed {
                    // Identity policies, users and roles are documents; they are few and
                    // cheap to re-read.
                    if let Ok(mut c) = self.identity_cache.write() {
                        c.clear();
                    }
                }
            }
            Forget::All => {
                self.connections().note_change();
                if let Ok(mut c) = self.secret_cache.write() {
                    c.clear();
                }
                if let Ok(mut c) = self.identity_cache.write() {
                    c.clear();
                }
            }
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
