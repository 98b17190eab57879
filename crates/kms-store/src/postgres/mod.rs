//! The PostgreSQL store: many kmsd nodes on one database.
//!
//! The same tables as the SQLite store, created by versioned migrations applied at start under
//! an advisory lock. The [`Store`] trait is synchronous; this store owns a small tokio runtime
//! on its own thread with a deadpool connection pool, and each call sends its work there and
//! waits on a channel, so it never blocks inside the caller's runtime.
//!
//! Cluster support: every commit appends to the `changes` log (in commit order, under a
//! transaction advisory lock); [`Store::change_hint`] reads its head, one indexed round trip,
//! so each request on any node sees every write acknowledged before it. The write section is
//! a session advisory lock; background jobs take `pg_try_advisory_lock` leases.

use std::future::Future;
use std::sync::mpsc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use kms_core::model::{AccessKeyRecord, AliasRecord, KeyRecord};
use kms_core::{Change, ChangeBatch, Store, StoreError, StoreGuard, WriteOp, CHANGE_LOG_RETAINED};
use tokio_postgres::types::ToSql;
use tokio_postgres::NoTls;

/// Advisory lock namespace of kmsd (`kmsd` in ASCII); the second key says what is locked.
const LOCK_NS: i32 = 0x6b6d_7364;
/// Held while migrations run.
const MIGRATION_LOCK: i32 = 1;
/// The cluster-wide write section.
const WRITE_LOCK: i32 = 2;
/// Held by each commit (transaction-scoped) so change log positions follow commit order.
const CHANGE_LOG_LOCK: i32 = 3;
/// Longest a write waits for the change feed to listen before it starts (normally it listens
/// long before; without it the write waits for other nodes' leases to lapse instead).
const FEED_READY_WAIT: Duration = Duration::from_secs(2);
/// Background job leases: in this namespace, keyed by a hash of the job name.
const JOB_NS: i32 = 0x6b6d_7365;

mod feed;
mod head;
mod locks;
mod migrate;
mod runtime;
mod settings;
mod write;

pub use settings::PostgresSettings;

use feed::ChangeFeed;
use head::HeadReads;
use locks::job_key;
use migrate::migrate;
use runtime::{start_runtime, RuntimeThread};
use write::write;

type Param = Box<dyn ToSql + Sync + Send>;

fn err<E: std::fmt::Display + 'static>(e: E) -> StoreError {
    // tokio-postgres shows a server error as "db error"; the server's message says what.
    let db = (&e as &dyn std::any::Any)
        .downcast_ref::<tokio_postgres::Error>()
        .and_then(tokio_postgres::Error::as_db_error);
    match db {
        Some(db) => StoreError(format!(
            "PostgreSQL: {} ({})",
            db.message(),
            db.code().code()
        )),
        None => StoreError(format!("PostgreSQL: {e}")),
    }
}

fn decode<T: serde::de::DeserializeOwned>(body: &str) -> Result<T, StoreError> {
    serde_json::from_str(body).map_err(err)
}

fn encode<T: serde::Serialize>(v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(err)
}

/// PostgreSQL-backed [`Store`], shared by every node of a cluster.
pub struct PostgresStore {
    handle: tokio::runtime::Handle,
    pool: Pool,
    /// Longest a call waits for its answer before failing.
    call_timeout: Duration,
    /// Longest the write section is waited for.
    lock_timeout: Duration,
    statement_timeout: Duration,
    /// Concurrent reads of the change log head share one query.
    head: HeadReads,
    /// Changes pushed by the database, and the wait of writers for other nodes.
    feed: ChangeFeed,
    _runtime: RuntimeThread,
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        // Give the node's lease back, so other nodes' writes do not wait for it to lapse.
        let feed = self.feed.clone();
        let _ = self.run_for(Duration::from_secs(1), move |pool| async move {
            feed.leave(&pool).await;
            Ok(())
        });
    }
}

impl PostgresStore {
    /// Connects and applies migrations, refusing a schema newer than this binary knows.
    pub fn connect(settings: &PostgresSettings) -> Result<Self, StoreError> {
        let (handle, runtime) = start_runtime()?;
        let handle_for_feed = handle.clone();
        let manager = Manager::from_config(
            settings.config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let connect_timeout = settings
            .config
            .get_connect_timeout()
            .copied()
            .unwrap_or(Duration::from_secs(3));
        let pool = Pool::builder(manager)
            .max_size(settings.pool_size)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(settings.statement_timeout + connect_timeout))
            .create_timeout(Some(connect_timeout))
            .recycle_timeout(Some(connect_timeout))
            .build()
            .map_err(err)?;
        let lock_timeout = settings.statement_timeout * 12;
        let store = PostgresStore {
            handle,
            pool,
            call_timeout: settings.statement_timeout * 2 + connect_timeout * 2,
            lock_timeout,
            statement_timeout: settings.statement_timeout,
            head: HeadReads::default(),
            feed: ChangeFeed::start(&handle_for_feed, settings.config.clone()),
            _runtime: runtime,
        };
        store.run(move |pool| async move {
            let mut c = pool.get().await.map_err(err)?;
            migrate(&mut c).await
        })?;
        Ok(store)
    }

    /// This process's name in the database's node leases (`kmsd_nodes`), and its change feed
    /// connection's `application_name` (`kmsd-feed-<name>`).
    pub fn feed_node(&self) -> &str {
        self.feed.node()
    }

    /// Whether this process now answers "has anything changed?" from the changes the database
    /// pushed (its lease is good), rather than with a query per request.
    pub fn pushed_changes_trusted(&self) -> bool {
        self.feed.is_trusted()
    }

    /// The head of the change log: one indexed round trip, shared by concurrent callers, that
    /// starts after the call, so a write acknowledged by any node is seen by the next request
    /// on every node.
    fn head_read(&self) -> impl Future<Output = Result<u64, StoreError>> + Send + 'static {
        self.head
            .read(&self.handle, &self.pool, self.statement_timeout * 2)
    }

    /// Runs `f` on the store's runtime and waits for its answer (at most the call timeout).
    fn run<T, F, Fut>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(Pool) -> Fut,
        Fut: Future<Output = Result<T, StoreError>> + Send + 'static,
    {
        self.run_for(self.call_timeout, f)
    }

    fn run_for<T, F, Fut>(&self, timeout: Duration, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(Pool) -> Fut,
        Fut: Future<Output = Result<T, StoreError>> + Send + 'static,
    {
        let (tx, rx) = mpsc::sync_channel(1);
        let fut = f(self.pool.clone());
        self.handle.spawn(async move {
            let _ = tx.send(fut.await);
        });
        match rx.recv_timeout(timeout) {
            Ok(r) => r,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                Err(StoreError("PostgreSQL did not answer in time".into()))
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                Err(StoreError("PostgreSQL store is shut down".into()))
            }
        }
    }

    /// Rows of a query.
    fn rows(
        &self,
        sql: &'static str,
        params: Vec<Param>,
    ) -> Result<Vec<tokio_postgres::Row>, StoreError> {
        self.run(move |pool| async move {
            let c = pool.get().await.map_err(err)?;
            let stmt = c.prepare_cached(sql).await.map_err(err)?;
            let refs: Vec<&(dyn ToSql + Sync)> = params
                .iter()
                .map(|p| p.as_ref() as &(dyn ToSql + Sync))
                .collect();
            c.query(&stmt, &refs).await.map_err(err)
        })
    }

    /// The decoded JSON bodies in the first column of a query's rows.
    fn bodies<T: serde::de::DeserializeOwned>(
        &self,
        sql: &'static str,
        params: Vec<Param>,
    ) -> Result<Vec<T>, StoreError> {
        self.rows(sql, params)?
            .iter()
            .map(|r| decode(&r.try_get::<_, String>(0).map_err(err)?))
            .collect()
    }

    /// The first column of the first row, if any.
    fn text(&self, sql: &'static str, params: Vec<Param>) -> Result<Option<String>, StoreError> {
        self.rows(sql, params)?
            .first()
            .map(|r| r.try_get::<_, String>(0).map_err(err))
            .transpose()
    }
}

/// The newest change log position.
async fn latest_change(c: &deadpool_postgres::Object) -> Result<u64, StoreError> {
    let stmt = c
        .prepare_cached("SELECT COALESCE(MAX(seq), 0) FROM changes")
        .await
        .map_err(err)?;
    let n: i64 = c
        .query_one(&stmt, &[])
        .await
        .and_then(|r| r.try_get(0))
        .map_err(err)?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// A boxed query parameter.
fn p<T: ToSql + Sync + Send + 'static>(v: T) -> Param {
    Box::new(v)
}

fn limit(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl Store for PostgresStore {
    fn get_key(&self, region: &str, key_id: &str) -> Result<Option<KeyRecord>, StoreError> {
        Ok(self
            .bodies(
                "SELECT body FROM keys WHERE region = $1 AND key_id = $2",
                vec![p(region.to_owned()), p(key_id.to_owned())],
            )?
            .pop())
    }

    fn list_keys(
        &self,
        account: &str,
        region: &str,
        after: Option<&str>,
        n: usize,
    ) -> Result<Vec<KeyRecord>, StoreError> {
        self.bodies(
            "SELECT body FROM keys WHERE account = $1 AND region = $2 AND key_id > $3 ORDER BY key_id LIMIT $4",
            vec![
                p(account.to_owned()),
                p(region.to_owned()),
                p(after.unwrap_or("").to_owned()),
                p(limit(n)),
            ],
        )
    }

    fn count_keys(&self, account: &str, region: &str) -> Result<usize, StoreError> {
        let rows = self.rows(
            "SELECT n FROM key_counts WHERE account = $1 AND region = $2",
            vec![p(account.to_owned()), p(region.to_owned())],
        )?;
        let n: i64 = rows
            .first()
            .map(|r| r.try_get(0))
            .transpose()
            .map_err(err)?
            .unwrap_or(0);
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    fn keys_due_for_deletion(&self, now_ms: i64) -> Result<Vec<KeyRecord>, StoreError> {
        self.bodies(
            "SELECT body FROM keys WHERE state = 'PendingDeletion' AND deletion_ms <= $1 ORDER BY deletion_ms",
            vec![p(now_ms)],
        )
    }

    fn keys_due_for_rotation(&self, now_ms: i64) -> Result<Vec<KeyRecord>, StoreError> {
        self.bodies(
            "SELECT body FROM keys WHERE rotation_ms <= $1 AND state = 'Enabled' ORDER BY rotation_ms",
            vec![p(now_ms)],
        )
    }

    fn keys_with_expired_material(&self, now_ms: i64) -> Result<Vec<KeyRecord>, StoreError> {
        self.bodies(
            "SELECT body FROM keys WHERE material_expiry_ms <= $1 ORDER BY material_expiry_ms",
            vec![p(now_ms)],
        )
    }

    fn get_alias(
        &self,
        account: &str,
        region: &str,
        name: &str,
    ) -> Result<Option<AliasRecord>, StoreError> {
        Ok(self
            .bodies(
                "SELECT body FROM aliases WHERE account = $1 AND region = $2 AND name = $3",
                vec![
                    p(account.to_owned()),
                    p(region.to_owned()),
                    p(name.to_owned()),
                ],
            )?
            .pop())
    }

    fn list_aliases(
        &self,
        account: &str,
        region: &str,
        target: Option<&str>,
        after: Option<&str>,
        n: usize,
    ) -> Result<Vec<AliasRecord>, StoreError> {
        let after = after.unwrap_or("").to_owned();
        match target {
            Some(t) => self.bodies(
                "SELECT body FROM aliases WHERE account = $1 AND region = $2 AND target_key_id = $3 AND name > $4 ORDER BY name LIMIT $5",
                vec![
                    p(account.to_owned()),
                    p(region.to_owned()),
                    p(t.to_owned()),
                    p(after),
                    p(limit(n)),
                ],
            ),
            None => self.bodies(
                "SELECT body FROM aliases WHERE account = $1 AND region = $2 AND name > $3 ORDER BY name LIMIT $4",
                vec![p(account.to_owned()), p(region.to_owned()), p(after), p(limit(n))],
            ),
        }
    }

    fn get_access_key(&self, access_key_id: &str) -> Result<Option<AccessKeyRecord>, StoreError> {
        Ok(self
            .bodies(
                "SELECT body FROM access_keys WHERE access_key_id = $1",
                vec![p(access_key_id.to_owned())],
            )?
            .pop())
    }

    fn get_meta(&self, name: &str) -> Result<Option<String>, StoreError> {
        self.text(
            "SELECT value FROM meta WHERE name = $1",
            vec![p(name.to_owned())],
        )
    }

    fn get_doc(&self, kind: &str, id: &str) -> Result<Option<String>, StoreError> {
        self.text(
            "SELECT body FROM docs WHERE kind = $1 AND id = $2",
            vec![p(kind.to_owned()), p(id.to_owned())],
        )
    }

    fn list_docs(&self, kind: &str) -> Result<Vec<(String, String)>, StoreError> {
        self.rows(
            "SELECT id, body FROM docs WHERE kind = $1 ORDER BY id",
            vec![p(kind.to_owned())],
        )?
        .iter()
        .map(|r| Ok((r.try_get(0).map_err(err)?, r.try_get(1).map_err(err)?)))
        .collect()
    }

    fn keys_in_custom_key_store(
        &self,
        custom_key_store_id: &str,
    ) -> Result<Vec<KeyRecord>, StoreError> {
        self.bodies(
            "SELECT body FROM keys WHERE custom_key_store_id = $1 ORDER BY key_id",
            vec![p(custom_key_store_id.to_owned())],
        )
    }

    fn apply_logged(&self, ops: Vec<WriteOp>) -> Result<Vec<u64>, StoreError> {
        // Encode before leaving the caller's thread.
        let mut work = Vec::with_capacity(ops.len());
        for op in ops {
            let body = match &op {
                WriteOp::PutKey(k) => Some(encode(k)?),
                WriteOp::PutAlias(a) => Some(encode(a)?),
                WriteOp::PutAccessKey(a) => Some(encode(a)?),
                _ => None,
            };
            let change = Change::of(&op).map(|c| encode(&c)).transpose()?;
            work.push((op, body, change));
        }
        let feed = self.feed.clone();
        let wait_limit = self.statement_timeout;
        self.run(move |pool| async move {
            feed.ready(FEED_READY_WAIT).await;
            let mut c = pool.get().await.map_err(err)?;
            let tx = c.transaction().await.map_err(err)?;
            tx.execute(
                "SELECT pg_advisory_xact_lock($1, $2)",
                &[&LOCK_NS, &CHANGE_LOG_LOCK],
            )
            .await
            .map_err(err)?;
            let mut positions: Vec<u64> = Vec::new();
            for (op, body, change) in &work {
                write(&tx, op, body.as_deref()).await?;
                let Some(change) = change else { continue };
                let seq: i64 = tx
                    .query_one(
                        "INSERT INTO changes (body) VALUES ($1) RETURNING seq",
                        &[change],
                    )
                    .await
                    .and_then(|r| r.try_get(0))
                    .map_err(err)?;
                positions.push(u64::try_from(seq).map_err(err)?);
            }
            // This commit's last entry, when it logged one.
            let latest = positions.last().copied();
            if let Some(latest) = latest {
                let latest = i64::try_from(latest).map_err(err)?;
                let retained = i64::try_from(CHANGE_LOG_RETAINED).unwrap_or(i64::MAX);
                tx.execute(
                    "DELETE FROM changes WHERE seq <= $1",
                    &[&(latest - retained)],
                )
                .await
                .map_err(err)?;
                // Delivered to every listening node when the transaction commits.
                tx.execute(
                    "SELECT pg_notify($1, $2)",
                    &[&feed::CHANGES_CHANNEL, &latest.to_string()],
                )
                .await
                .map_err(err)?;
            }
            tx.commit().await.map_err(err)?;
            drop(c);
            if let Some(seq) = latest {
                feed.wait_for_nodes(&pool, seq, wait_limit).await;
            }
            Ok(positions)
        })
    }

    fn changes_since(&self, after: u64) -> Result<ChangeBatch, StoreError> {
        let after = i64::try_from(after).map_err(err)?;
        self.run(move |pool| async move {
            let mut c = pool.get().await.map_err(err)?;
            let tx = c
                .build_transaction()
                .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()
                .await
                .map_err(err)?;
            let bounds = tx
                .query_one(
                    "SELECT COALESCE(MIN(seq), 0), COALESCE(MAX(seq), 0) FROM changes",
                    &[],
                )
                .await
                .map_err(err)?;
            let oldest: i64 = bounds.try_get(0).map_err(err)?;
            let latest: i64 = bounds.try_get(1).map_err(err)?;
            let rows = tx
                .query(
                    "SELECT seq, body FROM changes WHERE seq > $1 ORDER BY seq",
                    &[&after],
                )
                .await
                .map_err(err)?;
            tx.commit().await.map_err(err)?;
            let mut changes = Vec::with_capacity(rows.len());
            let mut positions = Vec::with_capacity(rows.len());
            for r in &rows {
                let seq: i64 = r.try_get(0).map_err(err)?;
                positions.push(u64::try_from(seq).map_err(err)?);
                changes.push(decode(&r.try_get::<_, String>(1).map_err(err)?)?);
            }
            Ok(ChangeBatch {
                latest: u64::try_from(latest.max(after)).unwrap_or(0),
                changes,
                positions,
                complete: after >= latest || after + 1 >= oldest,
            })
        })
    }

    fn change_hint(&self) -> Result<u64, StoreError> {
        let read = self.head_read();
        self.run(move |_| read)
    }

    fn change_hint_future(&self) -> Option<kms_core::store::ChangeHintFuture> {
        // Pushed changes, while this node's lease is good; else one coalesced query.
        Some(match self.feed.trusted_head() {
            Some(head) => Box::pin(std::future::ready(Ok(head))),
            None => Box::pin(self.head_read()),
        })
    }

    fn lock_writes(&self) -> Result<StoreGuard, StoreError> {
        self.session_lock(
            "SELECT true FROM pg_advisory_lock($1, $2)",
            "SELECT pg_advisory_unlock($1, $2)",
            (LOCK_NS, WRITE_LOCK),
            self.lock_timeout,
        )?
        .ok_or_else(|| StoreError("PostgreSQL: the write section was not granted".into()))
    }

    fn try_job_lease(&self, job: &str) -> Result<Option<StoreGuard>, StoreError> {
        self.session_lock(
            "SELECT pg_try_advisory_lock($1, $2)",
            "SELECT pg_advisory_unlock($1, $2)",
            (JOB_NS, job_key(job)),
            self.statement_timeout,
        )
    }

    fn ping(&self) -> Result<(), StoreError> {
        self.run(|pool| async move {
            let c = pool.get().await.map_err(err)?;
            c.simple_query("SELECT 1").await.map_err(err)?;
            Ok(())
        })
    }
}
