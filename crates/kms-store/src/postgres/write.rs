//! One write of an `apply` batch as SQL.

use kms_core::{StoreError, WriteOp};

use super::err;

/// One write of a batch inside `tx`.
pub(super) async fn write(
    tx: &deadpool_postgres::Transaction<'_>,
    op: &WriteOp,
    body: Option<&str>,
) -> Result<(), StoreError> {
    let body = body.unwrap_or("");
    let r = match op {
        WriteOp::PutKey(k) => {
            // A new key counts towards its account's quota.
            tx.execute(
                    "INSERT INTO key_counts (account, region, n)
                     SELECT $1::text, $2::text, 1 WHERE NOT EXISTS (SELECT 1 FROM keys WHERE region = $2::text AND key_id = $3::text)
                     ON CONFLICT (account, region) DO UPDATE SET n = key_counts.n + 1",
                    &[&k.account, &k.region, &k.key_id],
                )
                .await
                .map_err(err)?;
            tx.execute(
                "INSERT INTO keys (region, key_id, account, state, deletion_ms, custom_key_store_id, rotation_ms, material_expiry_ms, body)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                 ON CONFLICT (region, key_id) DO UPDATE SET account = EXCLUDED.account, state = EXCLUDED.state,
                   deletion_ms = EXCLUDED.deletion_ms, custom_key_store_id = EXCLUDED.custom_key_store_id,
                   rotation_ms = EXCLUDED.rotation_ms, material_expiry_ms = EXCLUDED.material_expiry_ms, body = EXCLUDED.body",
                &[
                    &k.region,
                    &k.key_id,
                    &k.account,
                    &k.state,
                    &k.deletion_date_ms,
                    &k.custom_key_store_id,
                    &k.rotation.map(|r| r.next_ms),
                    &k.material_expiry_ms(),
                    &body,
                ],
            )
            .await
        }
        WriteOp::DeleteKey { region, key_id } => {
            tx.execute(
                "WITH gone AS (DELETE FROM keys WHERE region = $1 AND key_id = $2 RETURNING account, region)
                 UPDATE key_counts SET n = key_counts.n - 1
                 FROM gone WHERE key_counts.account = gone.account AND key_counts.region = gone.region",
                &[region, key_id],
            )
            .await
        }
        WriteOp::PutAlias(a) => {
            tx.execute(
                "INSERT INTO aliases (account, region, name, target_key_id, body) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (account, region, name) DO UPDATE SET target_key_id = EXCLUDED.target_key_id, body = EXCLUDED.body",
                &[&a.account, &a.region, &a.name, &a.target_key_id, &body],
            )
            .await
        }
        WriteOp::DeleteAlias {
            account,
            region,
            name,
        } => {
            tx.execute(
                "DELETE FROM aliases WHERE account = $1 AND region = $2 AND name = $3",
                &[account, region, name],
            )
            .await
        }
        WriteOp::PutAccessKey(a) => {
            tx.execute(
                "INSERT INTO access_keys (access_key_id, body) VALUES ($1, $2)",
                &[&a.access_key_id, &body],
            )
            .await
        }
        WriteOp::DeleteAccessKey { access_key_id } => {
            tx.execute(
                "DELETE FROM access_keys WHERE access_key_id = $1",
                &[access_key_id],
            )
            .await
        }
        WriteOp::PutDoc { kind, id, body } => {
            tx.execute(
                "INSERT INTO docs (kind, id, body) VALUES ($1, $2, $3)
                 ON CONFLICT (kind, id) DO UPDATE SET body = EXCLUDED.body",
                &[kind, id, body],
            )
            .await
        }
        WriteOp::DeleteDoc { kind, id } => {
            tx.execute(
                "DELETE FROM docs WHERE kind = $1 AND id = $2",
                &[kind, id],
            )
            .await
        }
        WriteOp::PutMeta { name, value } => {
            tx.execute(
                "INSERT INTO meta (name, value) VALUES ($1, $2)
                 ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value",
                &[name, value],
            )
            .await
        }
    };
    r.map(|_| ()).map_err(err)
}
