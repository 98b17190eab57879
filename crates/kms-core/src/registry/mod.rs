//! The key registry: keys and aliases read through bounded caches that every write of this
//! process and the store's change log (writes of other processes and nodes) invalidate.
//!
//! The caches are exact: a write invalidates what it touched before its caller is answered,
//! and the change log read before each request ([`KeyRegistry::sync_to`]) drops what others
//! wrote. A load that raced an invalidation is not cached (the epoch check).

mod bounded;
mod cached;
mod changes;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use kms_crypto::RootKey;
use kms_types::KmsError;

use crate::error::internal;
use crate::model::KeyRecord;
use crate::store::{Store, WriteOp};

pub(crate) use bounded::BoundedCache;
pub(crate) use cached::CachedKey;
pub(crate) use changes::Forget;

/// How many keys the registry keeps unsealed in memory unless told otherwise.
pub const DEFAULT_KEY_CACHE_SIZE: usize = 10_000;

/// (Region, key id).
type KeyName = (String, String);
/// (account, Region, alias name).
type AliasName = (String, String, String);

/// Keys and aliases, read through the store and cached.
pub(crate) struct KeyRegistry {
    store: Arc<dyn Store>,
    root: Arc<RootKey>,
    /// Keys with their unsealed material, at most the key cache size.
    keys: BoundedCache<KeyName, Arc<CachedKey>>,
    /// Alias targets (`None`: no such alias), as many as keys.
    aliases: BoundedCache<AliasName, Option<String>>,
    /// Bumped on every invalidation, so a load that raced a write does not cache what it read
    /// before the write.
    epoch: AtomicU64,
    /// How far the registry has read the store's change log.
    cursor: Mutex<changes::ChangeCursor>,
}

impl KeyRegistry {
    /// A registry over `store`, unsealing with `root`, caching at most `key_cache_size` keys.
    pub(crate) fn new(store: Arc<dyn Store>, root: Arc<RootKey>, key_cache_size: usize) -> Self {
        KeyRegistry {
            store,
            root,
            keys: BoundedCache::new(key_cache_size),
            aliases: BoundedCache::new(key_cache_size),
            epoch: AtomicU64::new(0),
            cursor: Mutex::new(changes::ChangeCursor::default()),
        }
    }

    /// The most keys kept in memory.
    pub(crate) fn key_cache_size(&self) -> usize {
        self.keys.capacity()
    }

    /// A key record fresh from the store (for read-modify-write paths).
    pub(crate) fn load_key(
        &self,
        region: &str,
        key_id: &str,
    ) -> Result<Option<KeyRecord>, KmsError> {
        self.store.get_key(region, key_id).map_err(internal)
    }

    /// A key with its unsealed material, from the cache or the store.
    pub(crate) fn key(
        &self,
        region: &str,
        key_id: &str,
    ) -> Result<Option<Arc<CachedKey>>, KmsError> {
        let name = (region.to_owned(), key_id.to_owned());
        if let Some(hit) = self.keys.get(&name) {
            return Ok(Some(hit));
        }
        let epoch = self.epoch.load(Ordering::Acquire);
        let Some(record) = self.load_key(region, key_id)? else {
            return Ok(None);
        };
        let entry = Arc::new(CachedKey::load(record, &self.root)?);
        self.keys
            .insert_if(name, entry.clone(), || self.is_current(epoch));
        Ok(Some(entry))
    }

    /// The target key id of an alias (cached, absence too).
    pub(crate) fn alias_target(
        &self,
        account: &str,
        region: &str,
        name: &str,
    ) -> Result<Option<String>, KmsError> {
        let k = (account.to_owned(), region.to_owned(), name.to_owned());
        if let Some(hit) = self.aliases.get(&k) {
            return Ok(hit);
        }
        let epoch = self.epoch.load(Ordering::Acquire);
        let target = self
            .store
            .get_alias(account, region, name)
            .map_err(internal)?
            .map(|a| a.target_key_id);
        self.aliases
            .insert_if(k, target.clone(), || self.is_current(epoch));
        Ok(target)
    }

    /// Whether no invalidation happened since `epoch` was read. Asked under the cache shard's
    /// lock: an invalidation bumps the epoch before it takes that lock to remove, so either the
    /// load sees the new epoch or the removal follows its insert.
    fn is_current(&self, epoch: u64) -> bool {
        self.epoch.load(Ordering::Acquire) == epoch
    }

    /// Commits writes durably off the async workers, then drops cached entries they touch.
    pub(crate) async fn commit(&self, ops: Vec<WriteOp>) -> Result<(), KmsError> {
        self.commit_at_epoch(ops).await.map(drop)
    }

    /// [`KeyRegistry::commit`] of writes that include the new `record`, which is then cached
    /// (unsealed) as written, so a key is not read back from the store at its first use. Not
    /// cached when anything was invalidated after the commit (the record may be outdated then).
    pub(crate) async fn commit_and_cache(
        &self,
        ops: Vec<WriteOp>,
        record: &KeyRecord,
    ) -> Result<(), KmsError> {
        let epoch = self.commit_at_epoch(ops).await?;
        match CachedKey::load(record.clone(), &self.root) {
            Ok(entry) => self.keys.insert_if(
                (record.region.clone(), record.key_id.clone()),
                Arc::new(entry),
                || self.is_current(epoch),
            ),
            // Committed all the same: the key loads from the store at its first use instead.
            Err(e) => tracing::warn!(key = %record.arn(), error = %e.message, "new key not cached"),
        }
        Ok(())
    }

    /// Commits, drops what the writes touch, and answers the epoch after that invalidation.
    async fn commit_at_epoch(&self, ops: Vec<WriteOp>) -> Result<u64, KmsError> {
        let mut keys = Vec::new();
        let mut aliases = Vec::new();
        for op in &ops {
            match op {
                WriteOp::PutKey(k) => keys.push((k.region.clone(), k.key_id.clone())),
                WriteOp::DeleteKey { region, key_id } => {
                    keys.push((region.clone(), key_id.clone()))
                }
                WriteOp::PutAlias(a) => {
                    aliases.push((a.account.clone(), a.region.clone(), a.name.clone()))
                }
                WriteOp::DeleteAlias {
                    account,
                    region,
                    name,
                } => aliases.push((account.clone(), region.clone(), name.clone())),
                WriteOp::PutAccessKey(_)
                | WriteOp::PutMeta { .. }
                | WriteOp::DeleteAccessKey { .. }
                | WriteOp::PutDoc { .. }
                | WriteOp::DeleteDoc { .. } => {}
            }
        }
        let store = self.store.clone();
        let positions = tokio::task::spawn_blocking(move || store.apply_logged(ops))
            .await
            .map_err(internal)?
            .map_err(internal)?;
        let epoch = self.epoch.fetch_add(1, Ordering::AcqRel) + 1;
        for k in &keys {
            self.keys.remove(k);
        }
        for a in &aliases {
            self.aliases.remove(a);
        }
        // Its own entries need not drop anything when the log is read: the removals above did.
        if let Ok(mut cursor) = self.cursor.lock() {
            cursor.note_own(&positions);
        }
        Ok(epoch)
    }
}

#[cfg(test)]
mod tests;
