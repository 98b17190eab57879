//! Live connections of CloudHSM key stores: logged-in sessions to each HSM of the cluster,
//! used round-robin with failover when an HSM stops answering.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use super::driver::{HsmFault, HsmSession};

/// One connected key store.
pub struct Connection {
    /// Cluster id.
    pub cluster_id: String,
    /// (hsm id, session) per HSM that logged in.
    pub sessions: RwLock<Vec<(String, Arc<dyn HsmSession>)>>,
    next: AtomicUsize,
}

impl Connection {
    /// A connection over logged-in sessions.
    pub fn new(cluster_id: String, sessions: Vec<(String, Arc<dyn HsmSession>)>) -> Self {
        Connection {
            cluster_id,
            sessions: RwLock::new(sessions),
            next: AtomicUsize::new(0),
        }
    }

    /// Runs `f` on one HSM after another (starting round-robin) until one answers without an
    /// availability fault (unreachable, or not holding the key). Returns the first other result,
    /// or the last fault.
    pub fn with_any<T>(
        &self,
        f: impl Fn(&dyn HsmSession) -> Result<T, HsmFault>,
    ) -> Result<T, HsmFault> {
        let sessions: Vec<(String, Arc<dyn HsmSession>)> =
            self.sessions.read().map(|s| s.clone()).unwrap_or_default();
        if sessions.is_empty() {
            return Err(HsmFault::Unreachable(format!(
                "no HSM of cluster {} is connected",
                self.cluster_id
            )));
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let mut last = HsmFault::Unreachable("no HSM answered".into());
        for i in 0..sessions.len() {
            let (hsm_id, s) = &sessions[(start + i) % sessions.len()];
            match f(s.as_ref()) {
                Err(HsmFault::Unreachable(why)) => {
                    tracing::warn!(cluster = %self.cluster_id, hsm = %hsm_id, why, "HSM did not answer; trying the next one");
                    last = HsmFault::Unreachable(why);
                }
                // An HSM that lost the key (replaced, restored from an older backup) is skipped
                // while another still holds it.
                Err(HsmFault::KeyNotFound) => {
                    tracing::warn!(cluster = %self.cluster_id, hsm = %hsm_id, "HSM does not hold the key; trying the next one");
                    last = HsmFault::KeyNotFound;
                }
                other => return other,
            }
        }
        Err(last)
    }

    /// Every session (key generation and deletion touch all HSMs).
    pub fn all(&self) -> Vec<(String, Arc<dyn HsmSession>)> {
        self.sessions.read().map(|s| s.clone()).unwrap_or_default()
    }

    /// Logs out of every HSM.
    pub fn close(&self) {
        for (_, s) in self.all() {
            s.logout();
        }
    }
}

/// How long a node waits before trying again to open the sessions of a store the cluster
/// shows CONNECTED when it could not (an HSM not reachable from this node, a password changed
/// meanwhile).
const FOLLOW_RETRY: Duration = Duration::from_secs(5);

/// Connections by key store id.
pub struct Connections {
    by_store: RwLock<HashMap<String, Arc<Connection>>>,
    /// Whether key store or cluster records may have changed since this node last brought its
    /// sessions and proxy targets in line with them (set by the store's change log).
    changed: AtomicBool,
    /// Whether [`Connections::retry_at`] is set (read without the lock on every request).
    retry_pending: AtomicBool,
    /// When this node tries again to follow a store it could not (see [`FOLLOW_RETRY`]).
    retry_at: Mutex<Option<Instant>>,
    /// Held while this node follows the records, so a request that finds the work taken by
    /// another task (the idle loop) waits for it instead of running without the sessions.
    follow_lock: tokio::sync::Mutex<()>,
    /// Whether a task holds [`Connections::follow_lock`] (read without the lock).
    following: AtomicBool,
}

/// This node following the records: [`Connections::following`] set while it lives.
pub(crate) struct Following<'a> {
    connections: &'a Connections,
    _lock: tokio::sync::MutexGuard<'a, ()>,
}

impl Drop for Following<'_> {
    fn drop(&mut self) {
        self.connections.following.store(false, Ordering::SeqCst);
    }
}

impl Default for Connections {
    fn default() -> Self {
        Connections {
            by_store: RwLock::default(),
            // A new service has not looked at the records yet.
            changed: AtomicBool::new(true),
            retry_pending: AtomicBool::new(false),
            retry_at: Mutex::new(None),
            follow_lock: tokio::sync::Mutex::new(()),
            following: AtomicBool::new(false),
        }
    }
}

impl Connections {
    /// The connection of a key store, if connected.
    pub fn get(&self, store_id: &str) -> Option<Arc<Connection>> {
        self.by_store
            .read()
            .ok()
            .and_then(|m| m.get(store_id).cloned())
    }

    /// Registers a connection.
    pub fn insert(&self, store_id: &str, c: Arc<Connection>) {
        if let Ok(mut m) = self.by_store.write() {
            if let Some(old) = m.insert(store_id.to_owned(), c) {
                old.close();
            }
        }
    }

    /// Removes and closes a connection.
    pub fn remove(&self, store_id: &str) {
        let old = self
            .by_store
            .write()
            .ok()
            .and_then(|mut m| m.remove(store_id));
        if let Some(c) = old {
            c.close();
        }
    }

    /// Drops an HSM deleted from its cluster from every connection to that cluster, logging
    /// its sessions out (its token is erased next).
    pub fn drop_hsm(&self, cluster_id: &str, hsm_id: &str) {
        let mut dropped = Vec::new();
        if let Ok(m) = self.by_store.read() {
            for c in m.values().filter(|c| c.cluster_id == cluster_id) {
                if let Ok(mut s) = c.sessions.write() {
                    let (gone, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut *s)
                        .into_iter()
                        .partition(|(id, _)| id == hsm_id);
                    *s = kept;
                    dropped.extend(gone);
                }
            }
        }
        for (_, s) in dropped {
            s.logout();
        }
    }

    /// Ids of the key stores connected on this node.
    pub(crate) fn store_ids(&self) -> Vec<String> {
        self.by_store
            .read()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Notes that key store or cluster records changed (another node connected or
    /// disconnected a store, changed a cluster's HSMs, ...).
    pub(crate) fn note_change(&self) {
        self.changed.store(true, Ordering::Release);
    }

    /// Asks for another look after [`FOLLOW_RETRY`].
    pub(crate) fn retry_later(&self) {
        if let Ok(mut r) = self.retry_at.lock() {
            *r = Some(Instant::now() + FOLLOW_RETRY);
            self.retry_pending.store(true, Ordering::Release);
        }
    }

    /// Whether nothing is to follow and nobody is following: the common case, read without
    /// writing anything shared.
    pub(crate) fn follow_idle(&self) -> bool {
        !self.changed.load(Ordering::SeqCst)
            && !self.retry_pending.load(Ordering::SeqCst)
            && !self.following.load(Ordering::SeqCst)
    }

    /// Waits until no other task follows the records, then holds the right to.
    pub(crate) async fn start_following(&self) -> Following<'_> {
        let lock = self.follow_lock.lock().await;
        // Set before the reason is cleared (in `follow_due`), so whoever sees no reason left
        // sees this and waits.
        self.following.store(true, Ordering::SeqCst);
        Following {
            connections: self,
            _lock: lock,
        }
    }

    /// Whether the records must be looked at now (a change was noted, or a retry is due);
    /// clears the reason. Call holding [`Connections::start_following`].
    pub(crate) fn follow_due(&self) -> bool {
        if self.changed.swap(false, Ordering::SeqCst) {
            return true;
        }
        if !self.retry_pending.load(Ordering::Acquire) {
            return false;
        }
        let Ok(mut r) = self.retry_at.lock() else {
            return false;
        };
        match *r {
            Some(at) if at <= Instant::now() => {
                *r = None;
                self.retry_pending.store(false, Ordering::Release);
                true
            }
            _ => false,
        }
    }

    /// (store id, number of HSM sessions) of every connection, for metrics.
    pub fn summary(&self) -> Vec<(String, usize)> {
        self.by_store
            .read()
            .map(|m| m.iter().map(|(k, c)| (k.clone(), c.all().len())).collect())
            .unwrap_or_default()
    }
}
