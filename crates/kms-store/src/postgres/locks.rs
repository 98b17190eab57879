//! Advisory locks held across calls: the cluster-wide write section and background job leases,
//! each a session lock on a pooled connection released when its guard drops.

use std::time::Duration;

use kms_core::{StoreError, StoreGuard};

use super::{err, PostgresStore};

impl PostgresStore {
    /// Takes a session advisory lock (`take` returns whether it was granted) on a pooled
    /// connection, held until the guard drops.
    pub(super) fn session_lock(
        &self,
        take: &'static str,
        release: &'static str,
        key: (i32, i32),
        timeout: Duration,
    ) -> Result<Option<StoreGuard>, StoreError> {
        let statement_ms = self.statement_timeout.as_millis();
        let wait_ms = timeout.as_millis();
        let conn = self.run_for(timeout + self.call_timeout, move |pool| async move {
            let c = pool.get().await.map_err(err)?;
            c.batch_execute(&format!("SET statement_timeout = {wait_ms}"))
                .await
                .map_err(err)?;
            let taken = c.query_one(take, &[&key.0, &key.1]).await;
            let reset = c
                .batch_execute(&format!("SET statement_timeout = {statement_ms}"))
                .await;
            let taken: bool = match taken.and_then(|row| row.try_get(0)) {
                Ok(t) => t,
                Err(e) => {
                    // The connection's state is unknown: close it (releasing anything it holds).
                    let _ = deadpool_postgres::Object::take(c);
                    return Err(err(e));
                }
            };
            if reset.is_err() {
                let _ = deadpool_postgres::Object::take(c);
                return Err(StoreError(
                    "PostgreSQL: resetting the statement timeout failed".into(),
                ));
            }
            Ok(taken.then_some(c))
        })?;
        Ok(conn.map(|c| {
            StoreGuard::holding(SessionLock {
                conn: Some(c),
                release,
                key,
                handle: self.handle.clone(),
            })
        }))
    }
}

/// The advisory lock key of background job `job` (FNV-1a of its name).
pub(super) fn job_key(job: &str) -> i32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in job.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    i32::from_ne_bytes(h.to_ne_bytes())
}

/// A session advisory lock on a pooled connection; released (or, failing that, the connection
/// closed) when dropped.
struct SessionLock {
    conn: Option<deadpool_postgres::Object>,
    release: &'static str,
    key: (i32, i32),
    handle: tokio::runtime::Handle,
}

impl Drop for SessionLock {
    fn drop(&mut self) {
        let Some(c) = self.conn.take() else {
            return;
        };
        let release = self.release;
        let key = self.key;
        self.handle.spawn(async move {
            if c.execute(release, &[&key.0, &key.1]).await.is_err() {
                // Closing the session releases its locks.
                let _ = deadpool_postgres::Object::take(c);
            }
        });
    }
}
