//! The storage trait kms-core sees, and an in-memory implementation for tests.
//!
//! Every mutating operation hands the store a list of [`WriteOp`]s that must commit together
//! (one transaction, durable before `apply` returns) or not at all. No transaction handle crosses
//! the trait.

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::model::{AccessKeyRecord, AliasRecord, KeyRecord};

/// A storage failure. Surfaces to clients as `KMSInternalException` (never with SQL details).
#[derive(Debug, thiserror::Error)]
#[error("storage error: {0}")]
pub struct StoreError(pub String);

/// One write in an atomic batch.
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)]
pub enum WriteOp {
    /// Insert or replace a key.
    PutKey(KeyRecord),
    /// Delete a key (by region and id).
    DeleteKey {
        /// Region.
        region: String,
        /// Key id.
        key_id: String,
    },
    /// Insert or replace an alias.
    PutAlias(AliasRecord),
    /// Delete an alias.
    DeleteAlias {
        /// Account.
        account: String,
        /// Region.
        region: String,
        /// `alias/...`
        name: String,
    },
    /// Insert an access key.
    PutAccessKey(AccessKeyRecord),
    /// Delete an access key.
    DeleteAccessKey {
        /// The access key id.
        access_key_id: String,
    },
    /// Insert or replace a document (clusters, custom key stores, ...).
    PutDoc {
        /// Kind of document.
        kind: String,
        /// Id within the kind.
        id: String,
        /// JSON body.
        body: String,
    },
    /// Delete a document.
    DeleteDoc {
        /// Kind of document.
        kind: String,
        /// Id within the kind.
        id: String,
    },
    /// Set a metadata value.
    PutMeta {
        /// Name.
        name: String,
        /// Value.
        value: String,
    },
}

/// One record a committed write changed, as the change log reports it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "t")]
pub enum Change {
    /// A key was written or deleted.
    Key {
        /// Region.
        region: String,
        /// Key id.
        key_id: String,
    },
    /// An alias was written or deleted.
    Alias {
        /// Account.
        account: String,
        /// Region.
        region: String,
        /// `alias/...`
        name: String,
    },
    /// An access key was created or deleted.
    AccessKey {
        /// The access key id.
        access_key_id: String,
    },
    /// A document was written or deleted.
    Doc {
        /// Kind of document.
        kind: String,
        /// Id within the kind.
        id: String,
    },
    /// A metadata value was set.
    Meta {
        /// Name.
        name: String,
    },
}

/// Document kind of a key's last use (GetKeyLastUsage). No cache holds these documents
/// (GetKeyLastUsage reads the store), so their writes are not logged as changes: a flush of
/// many keys' last uses would otherwise push everything else out of the change log and make
/// every node drop all its cached keys (see [`Change::of`]).
pub const KEY_LAST_USAGE_DOC: &str = "key-last-usage";

impl Change {
    /// The change a write makes, for the change log; `None` for writes that no cache depends
    /// on (documents of kind [`KEY_LAST_USAGE_DOC`]), which are not logged.
    pub fn of(op: &WriteOp) -> Option<Change> {
        Some(match op {
            WriteOp::PutKey(k) => Change::Key {
                region: k.region.clone(),
                key_id: k.key_id.clone(),
            },
            WriteOp::DeleteKey { region, key_id } => Change::Key {
                region: region.clone(),
                key_id: key_id.clone(),
            },
            WriteOp::PutAlias(a) => Change::Alias {
                account: a.account.clone(),
                region: a.region.clone(),
                name: a.name.clone(),
            },
            WriteOp::DeleteAlias {
                account,
                region,
                name,
            } => Change::Alias {
                account: account.clone(),
                region: region.clone(),
                name: name.clone(),
            },
            WriteOp::PutAccessKey(a) => Change::AccessKey {
                access_key_id: a.access_key_id.clone(),
            },
            WriteOp::DeleteAccessKey { access_key_id } => Change::AccessKey {
                access_key_id: access_key_id.clone(),
            },
            WriteOp::PutDoc { kind, .. } | WriteOp::DeleteDoc { kind, .. }
                if kind == KEY_LAST_USAGE_DOC =>
            {
                return None
            }
            WriteOp::PutDoc { kind, id, .. } | WriteOp::DeleteDoc { kind, id } => Change::Doc {
                kind: kind.clone(),
                id: id.clone(),
            },
            WriteOp::PutMeta { name, .. } => Change::Meta { name: name.clone() },
        })
    }
}

/// What the change log holds after a position.
#[derive(Debug, Clone, Default)]
pub struct ChangeBatch {
    /// The newest position (0 for an empty log).
    pub latest: u64,
    /// Changes after the asked position, oldest first.
    pub changes: Vec<Change>,
    /// The log position of each of `changes`, in the same order.
    pub positions: Vec<u64>,
    /// False when entries after the asked position were pruned: the reader must drop
    /// everything it caches.
    pub complete: bool,
}

/// How many change log entries stores keep; readers further behind get `complete: false`.
pub const CHANGE_LOG_RETAINED: u64 = 10_000;

/// Holds a section of the store (the cluster-wide write section, a background job's lease)
/// until dropped.
pub struct StoreGuard(#[allow(dead_code)] Option<Box<dyn Send + Sync>>);

impl StoreGuard {
    /// A guard that holds nothing beyond this process (stores one process owns alone).
    pub fn local() -> Self {
        StoreGuard(None)
    }

    /// A guard that releases its section when `inner` drops.
    pub fn holding<T: Send + Sync + 'static>(inner: T) -> Self {
        StoreGuard(Some(Box::new(inner)))
    }
}

/// A pending read of a store's change hint (see [`Store::change_hint_future`]).
pub type ChangeHintFuture =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<u64, StoreError>> + Send>>;

/// Transactional storage of kmsd's records.
///
/// Besides the records, a store keeps a change log: every `apply` appends what it changed,
/// in commit order, so every kmsd process sharing the store can drop cached copies.
pub trait Store: Send + Sync {
    /// A key by Region and key id.
    fn get_key(&self, region: &str, key_id: &str) -> Result<Option<KeyRecord>, StoreError>;
    /// Keys of an account in a Region with id > `after`, ordered by id, at most `limit`.
    fn list_keys(
        &self,
        account: &str,
        region: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<KeyRecord>, StoreError>;
    /// How many keys an account has in a Region (every state).
    fn count_keys(&self, account: &str, region: &str) -> Result<usize, StoreError>;
    /// Keys (any account, any Region) in PendingDeletion whose deletion date is <= `now_ms`.
    fn keys_due_for_deletion(&self, now_ms: i64) -> Result<Vec<KeyRecord>, StoreError>;
    /// Enabled keys (any account, any Region) whose automatic rotation is due at `now_ms`.
    fn keys_due_for_rotation(&self, now_ms: i64) -> Result<Vec<KeyRecord>, StoreError>;
    /// Keys holding imported material whose `ValidTo` is at or before `now_ms`.
    fn keys_with_expired_material(&self, now_ms: i64) -> Result<Vec<KeyRecord>, StoreError>;
    /// An alias by account, Region and name.
    fn get_alias(
        &self,
        account: &str,
        region: &str,
        name: &str,
    ) -> Result<Option<AliasRecord>, StoreError>;
    /// Aliases of an account in a Region with name > `after`, ordered by name, optionally only
    /// those pointing at `target`, at most `limit`.
    fn list_aliases(
        &self,
        account: &str,
        region: &str,
        target: Option<&str>,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<AliasRecord>, StoreError>;
    /// An access key by id.
    fn get_access_key(&self, access_key_id: &str) -> Result<Option<AccessKeyRecord>, StoreError>;
    /// A metadata value.
    fn get_meta(&self, name: &str) -> Result<Option<String>, StoreError>;
    /// A document by kind and id.
    fn get_doc(&self, kind: &str, id: &str) -> Result<Option<String>, StoreError>;
    /// All documents of a kind as (id, body), ordered by id.
    fn list_docs(&self, kind: &str) -> Result<Vec<(String, String)>, StoreError>;
    /// Keys (any state) in a custom key store.
    fn keys_in_custom_key_store(
        &self,
        custom_key_store_id: &str,
    ) -> Result<Vec<KeyRecord>, StoreError>;
    /// Commits all writes atomically and durably, with their change log entries.
    fn apply(&self, ops: Vec<WriteOp>) -> Result<(), StoreError> {
        self.apply_logged(ops).map(drop)
    }
    /// [`Store::apply`], answering the change log positions of the entries this commit wrote,
    /// in order (empty when it logged nothing), so the writer can tell its own entries from
    /// other processes' when it reads the log.
    fn apply_logged(&self, ops: Vec<WriteOp>) -> Result<Vec<u64>, StoreError>;
    /// Changes committed after position `after` of the change log.
    fn changes_since(&self, after: u64) -> Result<ChangeBatch, StoreError>;
    /// A cheap token that differs from its previous value whenever the change log may have
    /// grown (written by this or another process or node). Reading it costs no round trip in
    /// the common case.
    fn change_hint(&self) -> Result<u64, StoreError>;
    /// [`Store::change_hint`] for async callers, when it needs I/O: a future that waits without
    /// holding a thread. `None` (the default) when `change_hint` answers at once, so callers ask
    /// it inline.
    fn change_hint_future(&self) -> Option<ChangeHintFuture> {
        None
    }
    /// Enters the write section shared by every process on this store: blocks until no other
    /// holds it. Stores that one process owns return [`StoreGuard::local`] (the service's own
    /// mutex then serialises its writers).
    fn lock_writes(&self) -> Result<StoreGuard, StoreError>;
    /// Takes the lease of background job `job` for one run, or `None` when another process on
    /// this store runs it now.
    fn try_job_lease(&self, job: &str) -> Result<Option<StoreGuard>, StoreError>;
    /// Whether the store answers now (readiness).
    fn ping(&self) -> Result<(), StoreError> {
        self.get_meta("readiness-probe").map(|_| ())
    }
}

/// In-memory store for tests of the domain: same semantics, no durability.
#[derive(Default)]
pub struct MemStore {
    inner: Mutex<MemInner>,
}

#[derive(Default, Clone)]
struct MemInner {
    keys: BTreeMap<(String, String), KeyRecord>,
    aliases: BTreeMap<(String, String, String), AliasRecord>,
    access_keys: BTreeMap<String, AccessKeyRecord>,
    meta: BTreeMap<String, String>,
    docs: BTreeMap<(String, String), String>,
    /// The change log: (position, change), oldest first.
    changes: std::collections::VecDeque<(u64, Change)>,
    /// Position of the newest change.
    latest: u64,
}

impl MemStore {
    fn lock(&self) -> Result<std::sync::MutexGuard<'_, MemInner>, StoreError> {
        self.inner
            .lock()
            .map_err(|_| StoreError("memory store lock poisoned".into()))
    }
}

impl Store for MemStore {
    fn get_key(&self, region: &str, key_id: &str) -> Result<Option<KeyRecord>, StoreError> {
        Ok(self
            .lock()?
            .keys
            .get(&(region.to_owned(), key_id.to_owned()))
            .cloned())
    }

    fn list_keys(
        &self,
        account: &str,
        region: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<KeyRecord>, StoreError> {
        Ok(self
            .lock()?
            .keys
            .values()
            .filter(|k| k.account == account && k.region == region)
            .filter(|k| after.is_none_or(|a| k.key_id.as_str() > a))
            .take(limit)
            .cloned()
            .collect())
    }

    fn count_keys(&self, account: &str, region: &str) -> Result<usize, StoreError> {
        Ok(self
            .lock()?
            .keys
            .values()
            .filter(|k| k.account == account && k.region == region)
            .count())
    }

    fn keys_due_for_deletion(&self, now_ms: i64) -> Result<Vec<KeyRecord>, StoreError> {
        Ok(self
            .lock()?
            .keys
            .values()
            .filter(|k| {
                k.state == "PendingDeletion" && k.deletion_date_ms.is_some_and(|d| d <= now_ms)
            })
            .cloned()
            .collect())
    }

    fn keys_due_for_rotation(&self, now_ms: i64) -> Result<Vec<KeyRecord>, StoreError> {
        Ok(self
            .lock()?
            .keys
            .values()
            .filter(|k| k.state == "Enabled" && k.rotation.is_some_and(|r| r.next_ms <= now_ms))
            .cloned()
            .collect())
    }

    fn keys_with_expired_material(&self, now_ms: i64) -> Result<Vec<KeyRecord>, StoreError> {
        Ok(self
            .lock()?
            .keys
            .values()
            .filter(|k| k.material_expiry_ms().is_some_and(|t| t <= now_ms))
            .cloned()
            .collect())
    }

    fn get_alias(
        &self,
        account: &str,
        region: &str,
        name: &str,
    ) -> Result<Option<AliasRecord>, StoreError> {
        Ok(self
            .lock()?
            .aliases
            .get(&(account.to_owned(), region.to_owned(), name.to_owned()))
            .cloned())
    }

    fn list_aliases(
        &self,
        account: &str,
        region: &str,
        target: Option<&str>,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<AliasRecord>, StoreError> {
        Ok(self
            .lock()?
            .aliases
            .values()
            .filter(|a| a.account == account && a.region == region)
            .filter(|a| target.is_none_or(|t| a.target_key_id == t))
            .filter(|a| after.is_none_or(|x| a.name.as_str() > x))
            .take(limit)
            .cloned()
            .collect())
    }

    fn get_access_key(&self, access_key_id: &str) -> Result<Option<AccessKeyRecord>, StoreError> {
        Ok(self.lock()?.access_keys.get(access_key_id).cloned())
    }

    fn get_meta(&self, name: &str) -> Result<Option<String>, StoreError> {
        Ok(self.lock()?.meta.get(name).cloned())
    }

    fn get_doc(&self, kind: &str, id: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .lock()?
            .docs
            .get(&(kind.to_owned(), id.to_owned()))
            .cloned())
    }

    fn list_docs(&self, kind: &str) -> Result<Vec<(String, String)>, StoreError> {
        Ok(self
            .lock()?
            .docs
            .iter()
            .filter(|((k, _), _)| k == kind)
            .map(|((_, id), body)| (id.clone(), body.clone()))
            .collect())
    }

    fn keys_in_custom_key_store(
        &self,
        custom_key_store_id: &str,
    ) -> Result<Vec<KeyRecord>, StoreError> {
        Ok(self
            .lock()?
            .keys
            .values()
            .filter(|k| k.custom_key_store_id.as_deref() == Some(custom_key_store_id))
            .cloned()
            .collect())
    }

    fn apply_logged(&self, ops: Vec<WriteOp>) -> Result<Vec<u64>, StoreError> {
        // Works on a copy, swapped in only when every write succeeded.
        let mut guard = self.lock()?;
        let mut next = guard.clone();
        let mut positions = Vec::new();
        for change in ops.iter().filter_map(Change::of) {
            next.latest += 1;
            let seq = next.latest;
            next.changes.push_back((seq, change));
            positions.push(seq);
        }
        while next.changes.len() as u64 > CHANGE_LOG_RETAINED {
            next.changes.pop_front();
        }
        for op in ops {
            match op {
                WriteOp::PutKey(k) => {
                    next.keys.insert((k.region.clone(), k.key_id.clone()), k);
                }
                WriteOp::DeleteKey { region, key_id } => {
                    next.keys.remove(&(region, key_id));
                }
                WriteOp::PutAlias(a) => {
                    next.aliases
                        .insert((a.account.clone(), a.region.clone(), a.name.clone()), a);
                }
                WriteOp::DeleteAlias {
                    account,
                    region,
                    name,
                } => {
                    next.aliases.remove(&(account, region, name));
                }
                WriteOp::PutAccessKey(a) => {
                    // An insert, as in the durable stores: a second key with the id fails.
                    if next.access_keys.contains_key(&a.access_key_id) {
                        return Err(StoreError(format!("access key {} exists", a.access_key_id)));
                    }
                    next.access_keys.insert(a.access_key_id.clone(), a);
                }
                WriteOp::DeleteAccessKey { access_key_id } => {
                    next.access_keys.remove(&access_key_id);
                }
                WriteOp::PutMeta { name, value } => {
                    next.meta.insert(name, value);
                }
                WriteOp::PutDoc { kind, id, body } => {
                    next.docs.insert((kind, id), body);
                }
                WriteOp::DeleteDoc { kind, id } => {
                    next.docs.remove(&(kind, id));
                }
            }
        }
        *guard = next;
        Ok(positions)
    }

    fn changes_since(&self, after: u64) -> Result<ChangeBatch, StoreError> {
        let g = self.lock()?;
        let oldest = g.changes.front().map_or(g.latest + 1, |(s, _)| *s);
        let (positions, changes) = g
            .changes
            .iter()
            .filter(|(s, _)| *s > after)
            .map(|(s, c)| (*s, c.clone()))
            .unzip();
        Ok(ChangeBatch {
            latest: g.latest,
            changes,
            positions,
            complete: after + 1 >= oldest || after >= g.latest,
        })
    }

    fn change_hint(&self) -> Result<u64, StoreError> {
        Ok(self.lock()?.latest)
    }

    fn lock_writes(&self) -> Result<StoreGuard, StoreError> {
        Ok(StoreGuard::local())
    }

    fn try_job_lease(&self, _job: &str) -> Result<Option<StoreGuard>, StoreError> {
        Ok(Some(StoreGuard::local()))
    }
}
