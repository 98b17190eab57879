//! Versioned schema migrations, applied at start under an advisory lock.

use kms_core::StoreError;

use super::{err, LOCK_NS, MIGRATION_LOCK};

/// Schema migrations, in order: (version, SQL). Append only.
const MIGRATIONS: &[(i32, &str)] = &[
    (1, include_str!("../../migrations/postgres/0001_init.sql")),
    (
        2,
        include_str!("../../migrations/postgres/0002_node_leases.sql"),
    ),
];

/// Applies the migrations this binary knows and the database lacks, under an advisory lock.
pub(super) async fn migrate(c: &mut deadpool_postgres::Object) -> Result<(), StoreError> {
    c.execute(
        "SELECT pg_advisory_lock($1, $2)",
        &[&LOCK_NS, &MIGRATION_LOCK],
    )
    .await
    .map_err(err)?;
    let result = apply_migrations(c).await;
    let unlocked = c
        .execute(
            "SELECT pg_advisory_unlock($1, $2)",
            &[&LOCK_NS, &MIGRATION_LOCK],
        )
        .await;
    result?;
    unlocked.map_err(err)?;
    Ok(())
}

async fn apply_migrations(c: &mut deadpool_postgres::Object) -> Result<(), StoreError> {
    c.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_version (
            version INTEGER PRIMARY KEY,
            applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
        )",
    )
    .await
    .map_err(err)?;
    let current: i32 = c
        .query_one("SELECT COALESCE(MAX(version), 0) FROM schema_version", &[])
        .await
        .and_then(|r| r.try_get(0))
        .map_err(err)?;
    let known = MIGRATIONS.last().map_or(0, |(v, _)| *v);
    if current > known {
        return Err(StoreError(format!(
            "the database schema is version {current}, newer than this kmsd knows (version {known}); run a kmsd release that knows schema {current}"
        )));
    }
    for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > current) {
        let tx = c.transaction().await.map_err(err)?;
        tx.batch_execute(sql).await.map_err(err)?;
        tx.execute(
            "INSERT INTO schema_version (version) VALUES ($1)",
            &[version],
        )
        .await
        .map_err(err)?;
        tx.commit().await.map_err(err)?;
        tracing::info!(version, "applied PostgreSQL schema migration");
    }
    Ok(())
}
