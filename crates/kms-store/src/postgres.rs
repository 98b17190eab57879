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

/// Schema migrations, in order: (version, SQL). Append only.
const MIGRATIONS: &[(i32, &str)] = &[(1, include_str!("../migrations/postgres/0001_init.sql"))];

/// Advisory lock namespace of kmsd (`kmsd` in ASCII); the second key says what is locked.
const LOCK_NS: i32 = 0x6b6d_7364;
/// Held while migrations run.
const MIGRATION_LOCK: i32 = 1;
/// The cluster-wide write section.
const WRITE_LOCK: i32 = 2;
/// Held by each commit (transaction-scoped) so change log positions follow commit order.
const CHANGE_LOG_LOCK: i32 = 3;
/// Background job leases use `hashtext(job)` in this namespace.
const JOB_NS: i32 = 0x6b6d_7365;

type Param = Box<dyn ToSql + Sync + Send>;

fn err<E: std::fmt::Display>(e: E) -> StoreError {
    StoreError(format!("PostgreSQL: {e}"))
}

fn decode<T: serde::de::DeserializeOwned>(body: &str) -> Result<T, StoreError> {
    serde_json::from_str(body).map_err(err)
}

fn encode<T: serde::Serialize>(v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(err)
}

/// Connection settings: a `postgres://` URL plus kmsd's own query parameters
/// `pool_size` (default 16) and `statement_timeout_ms` (default 5000).
#[derive(Clone)]
pub struct PostgresSettings {
    config: tokio_postgres::Config,
    /// Most connections in the pool.
    pub pool_size: usize,
    /// Longest a statement may run (waiting for the write section: 12 times this).
    pub statement_timeout: Duration,
}

impl std::fmt::Debug for PostgresSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the password.
        f.debug_struct("PostgresSettings")
            .field("database", &self.describe())
            .field("pool_size", &self.pool_size)
            .field("statement_timeout", &self.statement_timeout)
            .finish()
    }
}

impl PostgresSettings {
    /// Parses `postgres://user[:password]@host[:port]/db[?params]`.
    pub fn parse(url: &str) -> Result<Self, StoreError> {
        let (base, query) = url.split_once('?').unwrap_or((url, ""));
        let mut pool_size = 16usize;
        let mut statement_timeout_ms = 5000u64;
        let mut rest = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            match k {
                "pool_size" => {
                    pool_size = v.parse().ok().filter(|n| *n >= 2).ok_or_else(|| {
                        StoreError(
                            "store URL: pool_size must be a whole number of at least 2".into(),
                        )
                    })?
                }
                "statement_timeout_ms" => {
                    statement_timeout_ms = v.parse().ok().filter(|n| *n >= 1).ok_or_else(|| {
                        StoreError(
                            "store URL: statement_timeout_ms must be a whole number of at least 1"
                                .into(),
                        )
                    })?
                }
                _ => rest.push(pair),
            }
        }
        let url = if rest.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", rest.join("&"))
        };
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| StoreError(format!("store URL: {e}")))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(3));
        }
        config.keepalives(true);
        config.keepalives_idle(Duration::from_secs(10));
        config.application_name("kmsd");
        let options = format!(
            "{} -c statement_timeout={statement_timeout_ms}",
            config.get_options().unwrap_or("")
        );
        config.options(options.trim());
        Ok(PostgresSettings {
            config,
            pool_size,
            statement_timeout: Duration::from_millis(statement_timeout_ms),
        })
    }

    /// `host:port/db as user`, for logs (no password).
    pub fn describe(&self) -> String {
        let host = self
            .config
            .get_hosts()
            .first()
            .map(|h| match h {
                tokio_postgres::config::Host::Tcp(h) => h.clone(),
                #[cfg(unix)]
                tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
            })
            .unwrap_or_default();
        let port = self.config.get_ports().first().copied().unwrap_or(5432);
        format!(
            "{host}:{port}/{} as {}",
            self.config.get_dbname().unwrap_or(""),
            self.config.get_user().unwrap_or("")
        )
    }
}

/// Stops the store's runtime thread when dropped.
struct RuntimeThread(Option<tokio::sync::oneshot::Sender<()>>);

impl Drop for RuntimeThread {
    fn drop(&mut self) {
        if let Some(stop) = self.0.take() {
            let _ = stop.send(());
        }
    }
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
    _runtime: RuntimeThread,
}

/// Coalesces reads of the change log head: each caller gets the answer of a query that started
/// after it asked (so it sees every write acknowledged before it asked), and callers arriving
/// while a query runs share the next one.
#[derive(Default)]
struct HeadReads {
    state: std::sync::Mutex<HeadState>,
    done: std::sync::Condvar,
}

#[derive(Default)]
struct HeadState {
    /// Generation of the newest query started.
    started: u64,
    /// Generation of the newest query finished, and its answer.
    finished: u64,
    answer: Option<Result<u64, String>>,
    running: bool,
}

impl PostgresStore {
    /// Connects and applies migrations, refusing a schema newer than this binary knows.
    pub fn connect(settings: &PostgresSettings) -> Result<Self, StoreError> {
        let (handle, runtime) = start_runtime()?;
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
            _runtime: runtime,
        };
        store.run(move |pool| async move {
            let mut c = pool.get().await.map_err(err)?;
            migrate(&mut c).await
        })?;
        Ok(store)
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

    /// Takes a session advisory lock (`take` returns whether it was granted) on a pooled
    /// connection, held until the guard drops.
    fn session_lock(
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
fn job_key(job: &str) -> i32 {
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

/// Starts the store's runtime on its own thread.
fn start_runtime() -> Result<(tokio::runtime::Handle, RuntimeThread), StoreError> {
    let (tx, rx) = mpsc::sync_channel(1);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    std::thread::Builder::new()
        .name("kmsd-postgres".into())
        .spawn(move || {
            match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => {
                    let _ = tx.send(Ok(rt.handle().clone()));
                    rt.block_on(async move {
                        let _ = stop_rx.await;
                    });
                    rt.shutdown_background();
                }
                Err(e) => {
                    let _ = tx.send(Err(err(e)));
                }
            }
        })
        .map_err(err)?;
    let handle = rx
        .recv()
        .map_err(|_| StoreError("PostgreSQL runtime did not start".into()))??;
    Ok((handle, RuntimeThread(Some(stop_tx))))
}

/// Applies the migrations this binary knows and the database lacks, under an advisory lock.
async fn migrate(c: &mut deadpool_postgres::Object) -> Result<(), StoreError> {
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
            "SELECT COUNT(*) FROM keys WHERE account = $1 AND region = $2",
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

    fn apply(&self, ops: Vec<WriteOp>) -> Result<(), StoreError> {
        // Encode before leaving the caller's thread.
        let mut work = Vec::with_capacity(ops.len());
        for op in ops {
            let body = match &op {
                WriteOp::PutKey(k) => Some(encode(k)?),
                WriteOp::PutAlias(a) => Some(encode(a)?),
                WriteOp::PutAccessKey(a) => Some(encode(a)?),
                _ => None,
            };
            let change = encode(&Change::of(&op))?;
            work.push((op, body, change));
        }
        self.run(move |pool| async move {
            let mut c = pool.get().await.map_err(err)?;
            let tx = c.transaction().await.map_err(err)?;
            tx.execute(
                "SELECT pg_advisory_xact_lock($1, $2)",
                &[&LOCK_NS, &CHANGE_LOG_LOCK],
            )
            .await
            .map_err(err)?;
            let mut latest: i64 = 0;
            for (op, body, change) in &work {
                write(&tx, op, body.as_deref()).await?;
                latest = tx
                    .query_one(
                        "INSERT INTO changes (body) VALUES ($1) RETURNING seq",
                        &[change],
                    )
                    .await
                    .and_then(|r| r.try_get(0))
                    .map_err(err)?;
            }
            if latest > 0 {
                let retained = i64::try_from(CHANGE_LOG_RETAINED).unwrap_or(i64::MAX);
                tx.execute(
                    "DELETE FROM changes WHERE seq <= $1",
                    &[&(latest - retained)],
                )
                .await
                .map_err(err)?;
            }
            tx.commit().await.map_err(err)
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
                    "SELECT body FROM changes WHERE seq > $1 ORDER BY seq",
                    &[&after],
                )
                .await
                .map_err(err)?;
            tx.commit().await.map_err(err)?;
            let mut changes = Vec::with_capacity(rows.len());
            for r in &rows {
                changes.push(decode(&r.try_get::<_, String>(0).map_err(err)?)?);
            }
            Ok(ChangeBatch {
                latest: u64::try_from(latest.max(after)).unwrap_or(0),
                changes,
                complete: after >= latest || after + 1 >= oldest,
            })
        })
    }

    fn change_hint(&self) -> Result<u64, StoreError> {
        // The head of the change log: one indexed round trip, so a write acknowledged by any
        // node is seen by the next request on every node.
        let poisoned = || StoreError("change log head lock poisoned".into());
        let mut st = self.head.state.lock().map_err(|_| poisoned())?;
        let need = st.started + 1;
        loop {
            if st.finished >= need {
                return match &st.answer {
                    Some(Ok(n)) => Ok(*n),
                    Some(Err(e)) => Err(StoreError(e.clone())),
                    None => Err(poisoned()),
                };
            }
            if st.running {
                st = self.head.done.wait(st).map_err(|_| poisoned())?;
                continue;
            }
            st.running = true;
            st.started += 1;
            let generation = st.started;
            drop(st);
            let answer = self
                .run(|pool| async move {
                    let c = pool.get().await.map_err(err)?;
                    latest_change(&c).await
                })
                .map_err(|e| e.0);
            st = self.head.state.lock().map_err(|_| poisoned())?;
            st.running = false;
            st.finished = generation;
            st.answer = Some(answer);
            self.head.done.notify_all();
        }
    }

    fn change_hint_is_local(&self) -> bool {
        false
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

/// One write of a batch inside `tx`.
async fn write(
    tx: &deadpool_postgres::Transaction<'_>,
    op: &WriteOp,
    body: Option<&str>,
) -> Result<(), StoreError> {
    let body = body.unwrap_or("");
    let r = match op {
        WriteOp::PutKey(k) => {
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
                "DELETE FROM keys WHERE region = $1 AND key_id = $2",
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
