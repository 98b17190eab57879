//! The service: shared state, key resolution, the key cache and the dispatch table.

mod aliases;
mod asymmetric;
mod authz;
mod crypto;
pub(crate) mod dispatch;
mod grants;
mod import;
mod kem;
mod keys;
mod last_usage;
mod multi_region;
pub(crate) mod paging;
mod policy;
mod principals;
pub mod quota;
mod root_check;
mod rotation;
mod seed;
mod sync;
mod tags;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use kms_crypto::RootKey;
use kms_types::{ErrorCode, KmsError};

use crate::context::{Caller, Clock};
use crate::ids::{parse_key_ref, KeyRef};
use crate::model::KeyRecord;
use crate::registry::{KeyRegistry, DEFAULT_KEY_CACHE_SIZE};
use crate::store::{Store, WriteOp};

pub use principals::{AccessKeySecret, AdminCredentials};

/// The HSM fleet declaration and the driver that opens its tokens.
#[derive(Clone)]
pub(crate) struct HsmEnv {
    /// The operator's declaration.
    pub(crate) fleet: Arc<dyn crate::hsm::FleetSource>,
    /// PKCS#11 (or test) driver.
    pub(crate) driver: Arc<dyn crate::hsm::HsmDriver>,
}

pub(crate) use crate::registry::CachedKey;

/// The KMS service. Cheap to share behind an `Arc`; every method takes `&self`.
pub struct Service {
    store: Arc<dyn Store>,
    root: Arc<RootKey>,
    clock: Arc<dyn Clock>,
    /// Keys and aliases, cached and kept exact by the store's change log.
    pub(crate) registry: KeyRegistry,
    /// Unsealed access-key secrets by access key id, with when they were read.
    secret_cache: RwLock<HashMap<String, (std::time::Instant, Arc<principals::AccessKeySecret>)>>,
    /// Decides authorisation (key policies, identity policies, grants, conditions).
    authorizer: crate::authz::Authorizer,
    /// Parsed identity policies by principal ARN, with when they were read.
    pub(crate) identity_cache:
        RwLock<HashMap<String, (std::time::Instant, Arc<crate::iam::IdentityView>)>>,
    /// Serialises read-modify-write operations in this process; [`Service::write_section`]
    /// adds the store's section shared with other processes and nodes.
    pub(crate) write_lock: tokio::sync::Mutex<()>,
    /// HSM fleet and driver, when kmsd runs with declared HSMs.
    hsm: RwLock<Option<HsmEnv>>,
    /// Live connections of CloudHSM key stores.
    connections: crate::hsm::Connections,
    /// The XKS proxy client, when external key stores are enabled.
    xks_client: RwLock<Option<crate::xks::XksClient>>,
    /// Targets of connected external key stores.
    pub(crate) xks_targets: RwLock<HashMap<String, Arc<crate::xks::XksTarget>>>,
    /// What the periodic health checks found about connected external key stores' proxies.
    pub(crate) xks_health: crate::xks::HealthBoard,
    /// Where HSM clusters' own audit events go.
    hsm_audit_sink: RwLock<Option<Arc<dyn crate::context::HsmAuditSink>>>,
    /// When the daily backup of a cluster last failed (ms), so the sweeper retries hourly.
    pub(crate) backup_failures: std::sync::Mutex<HashMap<String, i64>>,
    /// Where lifecycle events go (the audit trail).
    events: RwLock<Option<Arc<dyn crate::context::EventSink>>>,
    /// Keys an account may have per Region (AWS: 100,000).
    key_quota: std::sync::atomic::AtomicUsize,
    /// Last cryptographic use of keys, not yet written to the store.
    usage: last_usage::KeyUsageTracker,
}

/// AWS's quota of KMS keys per account and Region.
pub const DEFAULT_KEY_QUOTA: usize = 100_000;

pub(crate) use crate::error::internal;

impl Service {
    /// A service over a store, a root key and a clock.
    pub fn new(store: Arc<dyn Store>, root: Arc<RootKey>, clock: Arc<dyn Clock>) -> Self {
        Service {
            registry: KeyRegistry::new(store.clone(), root.clone(), DEFAULT_KEY_CACHE_SIZE),
            store,
            root,
            clock,
            secret_cache: RwLock::new(HashMap::new()),
            identity_cache: RwLock::new(HashMap::new()),
            authorizer: crate::authz::Authorizer::default(),
            write_lock: tokio::sync::Mutex::new(()),
            events: RwLock::new(None),
            hsm: RwLock::new(None),
            connections: crate::hsm::Connections::default(),
            hsm_audit_sink: RwLock::new(None),
            backup_failures: std::sync::Mutex::new(HashMap::new()),
            xks_client: RwLock::new(None),
            xks_targets: RwLock::new(HashMap::new()),
            xks_health: crate::xks::HealthBoard::default(),
            key_quota: std::sync::atomic::AtomicUsize::new(DEFAULT_KEY_QUOTA),
            usage: last_usage::KeyUsageTracker::default(),
        }
    }

    /// The same service keeping at most `keys` keys (and as many alias targets) in memory
    /// (default [`DEFAULT_KEY_CACHE_SIZE`]). Call before sharing the service.
    pub fn with_key_cache_size(mut self, keys: usize) -> Self {
        self.registry = KeyRegistry::new(self.store.clone(), self.root.clone(), keys);
        self
    }

    /// The most keys kept in memory with their unsealed material.
    pub fn key_cache_size(&self) -> usize {
        self.registry.key_cache_size()
    }

    /// Sets how many keys an account may have per Region (default 100,000, AWS's quota).
    pub fn set_key_quota(&self, keys: usize) {
        self.key_quota
            .store(keys, std::sync::atomic::Ordering::Relaxed);
    }

    /// Enables CloudHSM-style key stores over the operator's declared HSMs.
    pub fn enable_hsm(
        &self,
        fleet: Arc<dyn crate::hsm::FleetSource>,
        driver: Arc<dyn crate::hsm::HsmDriver>,
    ) {
        if let Ok(mut h) = self.hsm.write() {
            *h = Some(HsmEnv { fleet, driver });
        }
    }

    /// Enables external key stores, reaching proxies through `transport`.
    pub fn enable_xks(&self, transport: Arc<dyn crate::xks::XksTransport>) {
        if let Ok(mut c) = self.xks_client.write() {
            *c = Some(crate::xks::XksClient::new(transport));
        }
    }

    /// The XKS client, if enabled.
    pub(crate) fn xks_client(&self) -> Option<crate::xks::XksClient> {
        self.xks_client.read().ok().and_then(|c| c.clone())
    }

    /// Whether a custom key store is connected (its keys usable).
    pub(crate) fn key_store_connected(&self, store_id: &str) -> bool {
        self.connections.get(store_id).is_some()
            || self
                .xks_targets
                .read()
                .map(|m| m.contains_key(store_id))
                .unwrap_or(false)
    }

    /// The HSM environment, if enabled.
    pub(crate) fn hsm_env(&self) -> Option<HsmEnv> {
        self.hsm.read().ok().and_then(|h| h.clone())
    }

    /// Live key store connections.
    pub fn connections(&self) -> &crate::hsm::Connections {
        &self.connections
    }

    /// Sends each cluster's HSM events (logins, password rotations, key generation, use,
    /// deletion) to `sink`: the clusters' own audit path.
    pub fn set_hsm_audit_sink(&self, sink: Arc<dyn crate::context::HsmAuditSink>) {
        if let Ok(mut s) = self.hsm_audit_sink.write() {
            *s = Some(sink);
        }
    }

    /// Records an HSM event in the cluster's own audit log.
    pub(crate) fn hsm_audit(&self, cluster_id: &str, event: &str, details: serde_json::Value) {
        if let Some(sink) = self.hsm_audit_sink.read().ok().and_then(|s| s.clone()) {
            sink.hsm_event(cluster_id, event, details);
        }
    }

    /// Sends lifecycle events (scheduled deletions carried out, ...) to `sink`.
    pub fn set_event_sink(&self, sink: Arc<dyn crate::context::EventSink>) {
        if let Ok(mut e) = self.events.write() {
            *e = Some(sink);
        }
    }

    pub(crate) fn event_sink(&self) -> Option<Arc<dyn crate::context::EventSink>> {
        self.events.read().ok().and_then(|e| e.clone())
    }

    /// The store (for the binary's admin paths).
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The root key.
    pub fn root_key(&self) -> &RootKey {
        &self.root
    }

    pub(crate) fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// Commits writes durably off the async workers, then drops cached entries they touch.
    pub(crate) async fn commit(&self, ops: Vec<WriteOp>) -> Result<(), KmsError> {
        self.registry.commit(ops).await
    }

    /// Resolves a `KeyId` member to (region, key id) in the caller's Region, checking that the
    /// key belongs to the caller's account. Keys of other accounts are refused as their default
    /// key policy refuses them.
    fn resolve(
        &self,
        caller: &Caller,
        key_id: &str,
        allow_alias: bool,
    ) -> Result<String, KmsError> {
        let action = format!("kms:{}", caller.operation);
        self.resolve_as(caller, key_id, allow_alias, &action)
    }

    /// Resolves a key reference and authorises `action` on the key.
    fn resolve_as(
        &self,
        caller: &Caller,
        key_id: &str,
        allow_alias: bool,
        action: &str,
    ) -> Result<String, KmsError> {
        let r = parse_key_ref(key_id, allow_alias)?;
        let (account, id) = match r {
            KeyRef::Id(id) => (caller.account.clone(), id),
            KeyRef::KeyArn {
                region,
                account,
                key_id: id,
            } => {
                if region != caller.region {
                    // AWS's recorded answer for an ARN of another Region.
                    return Err(KmsError::new(
                        ErrorCode::NotFoundException,
                        format!("Invalid arn {region}"),
                    ));
                }
                (account, id)
            }
            KeyRef::AliasName(name) => {
                let id = self
                    .registry
                    .alias_target(&caller.account, &caller.region, &name)?
                    .ok_or_else(|| {
                        KmsError::new(
                            ErrorCode::NotFoundException,
                            format!(
                                "Alias arn:aws:kms:{}:{}:{name} is not found.",
                                caller.region, caller.account
                            ),
                        )
                    })?;
                (caller.account.clone(), id)
            }
            KeyRef::AliasArn {
                region,
                account,
                name,
            } => {
                let missing = || {
                    KmsError::new(
                        ErrorCode::NotFoundException,
                        format!("Alias {key_id} is not found."),
                    )
                };
                if region != caller.region {
                    return Err(missing());
                }
                let id = self
                    .registry
                    .alias_target(&account, &region, &name)?
                    .ok_or_else(missing)?;
                (account, id)
            }
        };
        let not_found = || key_not_found(&caller.region, &account, &id);
        let entry = self
            .registry
            .key(&caller.region, &id)?
            .ok_or_else(not_found)?;
        if entry.record.account != account {
            return Err(not_found());
        }
        caller.touch(entry.record.arn());
        self.authorize(caller, action, Some(&entry.record), &entry.record.arn())?;
        Ok(id)
    }

    /// Resolves and returns the cached key.
    fn resolve_cached(
        &self,
        caller: &Caller,
        key_id: &str,
        allow_alias: bool,
    ) -> Result<Arc<CachedKey>, KmsError> {
        let id = self.resolve(caller, key_id, allow_alias)?;
        self.registry
            .key(&caller.region, &id)?
            .ok_or_else(|| key_not_found(&caller.region, &caller.account, &id))
    }

    /// Read-modify-write of one key under the write lock. `f` returns extra writes to commit
    /// in the same transaction.
    async fn update_key<F>(
        &self,
        caller: &Caller,
        key_id: &str,
        f: F,
    ) -> Result<KeyRecord, KmsError>
    where
        F: FnOnce(&mut KeyRecord) -> Result<Vec<WriteOp>, KmsError>,
    {
        let _guard = self.write_section().await?;
        let id = self.resolve(caller, key_id, false)?;
        let mut record = self
            .registry
            .load_key(&caller.region, &id)?
            .ok_or_else(|| key_not_found(&caller.region, &caller.account, &id))?;
        let mut ops = f(&mut record)?;
        ops.insert(0, WriteOp::PutKey(record.clone()));
        self.commit(ops).await?;
        Ok(record)
    }
}

use grants::check_grant_tokens;

/// AWS's NotFoundException for a well-formed key id that names no key: `Key '<key-arn>' does
/// not exist`, the ARN built from the Region and account the request is scoped to.
pub(crate) fn key_not_found(region: &str, account: &str, key_id: &str) -> KmsError {
    KmsError::new(
        ErrorCode::NotFoundException,
        format!("Key 'arn:aws:kms:{region}:{account}:key/{key_id}' does not exist"),
    )
}

/// AWS's InvalidKeyUsageException for an operation the key's KeyUsage does not allow:
/// `<key-arn> key usage is SIGN_VERIFY which is not valid for Encrypt.`
pub(crate) fn key_usage_not_valid(record: &crate::model::KeyRecord, op: &str) -> KmsError {
    KmsError::new(
        ErrorCode::InvalidKeyUsageException,
        format!(
            "{} key usage is {} which is not valid for {op}.",
            record.arn(),
            record.key_usage
        ),
    )
}

/// The success signal of a `DryRun` request.
fn dry_run_succeeded() -> KmsError {
    KmsError::new(
        ErrorCode::DryRunOperationException,
        "The request would have succeeded, but the DryRun option is set.",
    )
}

/// Millisecond timestamp to the wire type.
fn ts(ms: i64) -> kms_types::Timestamp {
    kms_types::Timestamp::from_millis(ms)
}

#[cfg(test)]
pub(crate) mod tests;
