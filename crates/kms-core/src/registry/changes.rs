//! Reading the store's change log: what other processes or nodes wrote since the last look
//! is dropped from the registry's caches (and, through [`Forget`], from the service's).

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;

use kms_types::KmsError;

use super::KeyRegistry;
use crate::error::internal;
use crate::store::{Change, ChangeBatch};

/// How far a registry has read its store's change log.
#[derive(Default, Debug, Clone)]
pub(crate) struct ChangeCursor {
    /// The store's change hint when the log was last read.
    hint: Option<u64>,
    /// The newest change log position read.
    seen: u64,
    /// Whether the cursor was positioned (the first read only positions it).
    started: bool,
    /// Positions after `seen` that this registry's own commits wrote. Their keys and aliases
    /// were dropped from the caches when the commit returned (and what was cached since is
    /// current), so reading them drops nothing.
    own: BTreeSet<u64>,
}

impl ChangeCursor {
    /// Remembers the log positions of a commit this registry made, once it committed.
    pub(super) fn note_own(&mut self, positions: &[u64]) {
        // A read may already have passed them (and dropped what they name): nothing to skip.
        let seen = self.seen;
        self.own.extend(positions.iter().filter(|p| **p > seen));
    }
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
                    self.forget_changed(&batch, &mut cursor.own);
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
        let seen = cursor.seen;
        cursor.own.retain(|p| *p > seen);
        if hint.is_some() {
            cursor.hint = hint;
        }
        Ok(())
    }

    /// Drops the cached keys and aliases that `batch` names, but for entries at `own`
    /// positions (this registry's commits, already dropped when they returned).
    fn forget_changed(&self, batch: &ChangeBatch, own: &mut BTreeSet<u64>) {
        // A store that does not give positions: every entry counts.
        let positioned = batch.positions.len() == batch.changes.len();
        let foreign: Vec<&Change> = batch
            .changes
            .iter()
            .enumerate()
            .filter(|(i, _)| !(positioned && own.remove(&batch.positions[*i])))
            .map(|(_, c)| c)
            .collect();
        if foreign.is_empty() {
            return;
        }
        self.epoch.fetch_add(1, Ordering::AcqRel);
        for c in foreign {
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
