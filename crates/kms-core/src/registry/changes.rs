//! Reading the store's change log: what other processes or nodes wrote since the last look
//! is dropped from the registry's caches (and, through [`Forget`], from the service's).

use std::sync::atomic::Ordering;

use kms_types::KmsError;

use super::KeyRegistry;
use crate::error::internal;
use crate::store::Change;

/// How far a registry has read its store's change log.
#[derive(Default, Debug, Clone, Copy)]
pub(crate) struct ChangeCursor {
    /// The store's change hint when the log was last read.
    hint: Option<u64>,
    /// The newest change log position read.
    seen: u64,
    /// Whether the cursor was positioned (the first read only positions it).
    started: bool,
}

/// What a read of the change log means for caches outside the registry. Handed to them while
/// the cursor is held, so no request sees the log read and their caches not yet invalidated.
pub(crate) enum Forget<'a> {
    /// These records changed (never empty).
    Changed(&'a [Change]),
    /// Anything may have changed.
    All,
}

impl KeyRegistry {
    /// Reads the change log if the store's hint moved since the last look.
    pub(crate) fn sync_to(
        &self,
        hint: u64,
        others: impl FnOnce(Forget<'_>),
    ) -> Result<(), KmsError> {
        let unchanged = self
            .cursor
            .lock()
            .map(|c| c.hint == Some(hint))
            .unwrap_or(false);
        if unchanged {
            return Ok(());
        }
        self.read_changes(Some(hint), others)
    }

    /// Reads the change log after the cursor and drops what it names from the caches.
    pub(crate) fn read_changes(
        &self,
        hint: Option<u64>,
        others: impl FnOnce(Forget<'_>),
    ) -> Result<(), KmsError> {
        let mut cursor = self
            .cursor
            .lock()
            .map_err(|_| internal("change cursor lock poisoned"))?;
        let batch = self.store.changes_since(cursor.seen).map_err(internal)?;
        if cursor.started {
            if batch.complete {
                if !batch.changes.is_empty() {
                    self.forget_changed(&batch.changes);
                    others(Forget::Changed(&batch.changes));
                }
            } else {
                self.forget_all();
                others(Forget::All);
            }
        } else if batch.latest > 0 {
            // Nothing is cached from before the registry first looked at the log, except what
            // it loaded meanwhile: drop that.
            self.forget_all();
            others(Forget::All);
        }
        cursor.started = true;
        cursor.seen = batch.latest.max(cursor.seen);
        if hint.is_some() {
            cursor.hint = hint;
        }
        Ok(())
    }

    /// Drops the cached keys and aliases that `changes` name.
    fn forget_changed(&self, changes: &[Change]) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        for c in changes {
            match c {
                Change::Key { region, key_id } => {
                    self.keys.remove(&(region.clone(), key_id.clone()));
                }
                Change::Alias {
                    account,
                    region,
                    name,
                } => {
                    self.aliases
                        .remove(&(account.clone(), region.clone(), name.clone()));
                }
                _ => {}
            }
        }
    }

    /// Drops every cached key and alias (the change log no longer reaches back far enough).
    fn forget_all(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.keys.clear();
        self.aliases.clear();
    }
}
