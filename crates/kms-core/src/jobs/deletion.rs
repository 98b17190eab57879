//! Deletes keys whose scheduled deletion date has passed, with their aliases.

use crate::error::internal;
use crate::service::Service;
use crate::store::WriteOp;
use kms_types::KmsError;

impl Service {
    /// Deletes every key whose deletion date is at or before now; returns how many.
    ///
    /// The binary calls this periodically; tests call it after moving a [`crate::ManualClock`].
    pub async fn sweep_due_deletions(&self) -> Result<usize, KmsError> {
        let _guard = self.write_section().await?;
        let due = self
            .store()
            .keys_due_for_deletion(self.now_ms())
            .map_err(internal)?;
        let mut deleted = 0;
        for k in due {
            let aliases = self
                .store()
                .list_aliases(&k.account, &k.region, Some(&k.key_id), None, usize::MAX)
                .map_err(internal)?;
            let mut ops = vec![WriteOp::DeleteKey {
                region: k.region.clone(),
                key_id: k.key_id.clone(),
            }];
            ops.extend(self.delete_grants_of(&k)?);
            ops.push(self.forget_key_usage(&k.region, &k.key_id));
            if k.multi_region {
                ops.extend(self.forget_replica(&k)?);
            }
            ops.extend(aliases.into_iter().map(|a| WriteOp::DeleteAlias {
                account: a.account,
                region: a.region,
                name: a.name,
            }));
            self.commit(ops).await?;
            if let (Some(store), Some(cluster)) = (&k.custom_key_store_id, &k.cloud_hsm_cluster_id)
            {
                for m in &k.materials {
                    if let Some(id) = hex::decode(&m.material_id)
                        .ok()
                        .and_then(|v| <[u8; 16]>::try_from(v).ok())
                    {
                        self.destroy_hsm_key(store, cluster, &id);
                    }
                }
            }
            tracing::info!(key_arn = %k.arn(), "deleted key at the end of its waiting period");
            if let Some(sink) = self.event_sink() {
                sink.key_deleted(&k.arn(), &k.account, &k.region, self.now_ms());
            }
            deleted += 1;
        }
        Ok(deleted)
    }
}
