//! The embedded default store: one SQLite file in the data dir, WAL journal,
//! `synchronous=FULL` so every commit is on disk before `apply` returns.
//!
//! Records are stored as JSON documents keyed by their identity; sealed key material inside
//! them is already encrypted under the root key, so the database never holds it in clear.

use std::path::Path;
use std::sync::Mutex;

use kms_core::model::{AccessKeyRecord, AliasRecord, KeyRecord};
use kms_core::{Change, ChangeBatch, Store, StoreError, StoreGuard, WriteOp, CHANGE_LOG_RETAINED};
use rusqlite::{params, Connection, OptionalExtension};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS keys (
    region TEXT NOT NULL,
    key_id TEXT NOT NULL,
    account TEXT NOT NULL,
    state TEXT NOT NULL,
    deletion_ms INTEGER,
    body TEXT NOT NULL,
    PRIMARY KEY (region, key_id)
);
CREATE INDEX IF NOT EXISTS keys_by_account ON keys (account, region, key_id);
CREATE INDEX IF NOT EXISTS keys_by_deletion ON keys (state, deletion_ms);
CREATE TABLE IF NOT EXISTS aliases (
    account TEXT NOT NULL,
    region TEXT NOT NULL,
    name TEXT NOT NULL,
    target_key_id TEXT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (account, region, name)
);
CREATE INDEX IF NOT EXISTS aliases_by_target ON aliases (account, region, target_key_id, name);
CREATE TABLE IF NOT EXISTS access_keys (
    access_key_id TEXT PRIMARY KEY,
    body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS docs (
    kind TEXT NOT NULL,
    id TEXT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (kind, id)
);
CREATE TABLE IF NOT EXISTS meta (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS key_counts (
    account TEXT NOT NULL,
    region TEXT NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (account, region)
);
CREATE TABLE IF NOT EXISTS changes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    body TEXT NOT NULL
);
";

/// Page cache of the reader connection in KiB: a bound on its memory, filled as pages are
/// read.
const READER_CACHE_KIB: i64 = 64 * 1024;

/// SQLite-backed [`Store`]. One writer connection and one reader connection (WAL lets readers
/// run while a write commits).
pub struct SqliteStore {
    writer: Mutex<Connection>,
    reader: Mutex<Connection>,
}

fn err<E: std::fmt::Display>(e: E) -> StoreError {
    StoreError(e.to_string())
}

fn open(path: &Path) -> Result<Connection, StoreError> {
    let c = Connection::open(path).map_err(err)?;
    c.pragma_update(None, "journal_mode", "WAL").map_err(err)?;
    c.pragma_update(None, "synchronous", "FULL").map_err(err)?;
    c.pragma_update(None, "foreign_keys", "ON").map_err(err)?;
    c.busy_timeout(std::time::Duration::from_secs(10))
        .map_err(err)?;
    Ok(c)
}

fn decode<T: serde::de::DeserializeOwned>(body: String) -> Result<T, StoreError> {
    serde_json::from_str(&body).map_err(err)
}

fn encode<T: serde::Serialize>(v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(err)
}

/// Adds a column to `keys` (and its index) unless it is there already.
fn add_key_column(c: &Connection, column: &str, ddl: &str) -> Result<(), StoreError> {
    let present: bool = c
        .prepare("SELECT 1 FROM pragma_table_info('keys') WHERE name = ?1")
        .and_then(|mut s| s.exists([column]))
        .map_err(err)?;
    if !present {
        c.execute_batch(ddl).map_err(err)?;
    }
    Ok(())
}

/// Schema changes after the first release, applied idempotently.
fn migrate(c: &Connection) -> Result<(), StoreError> {
    // Keys per account and Region (kept by `apply`); counted once when the table is new.
    c.execute_batch(
        "BEGIN IMMEDIATE;
         INSERT INTO key_counts (account, region, n)
             SELECT account, region, COUNT(*) FROM keys
             WHERE NOT EXISTS (SELECT 1 FROM meta WHERE name = 'schema:key_counts')
             GROUP BY account, region;
         INSERT OR IGNORE INTO meta (name, value) VALUES ('schema:key_counts', '1');
         COMMIT;",
    )
    .map_err(err)?;
    add_key_column(
        c,
        "custom_key_store_id",
        "ALTER TABLE keys ADD COLUMN custom_key_store_id TEXT;
         CREATE INDEX IF NOT EXISTS keys_by_custom_key_store ON keys (custom_key_store_id);",
    )?;
    add_key_column(
        c,
        "rotation_ms",
        "ALTER TABLE keys ADD COLUMN rotation_ms INTEGER;
         CREATE INDEX IF NOT EXISTS keys_by_rotation ON keys (rotation_ms);",
    )?;
    add_key_column(
        c,
        "material_expiry_ms",
        "ALTER TABLE keys ADD COLUMN material_expiry_ms INTEGER;
         CREATE INDEX IF NOT EXISTS keys_by_material_expiry ON keys (material_expiry_ms);",
    )
}

impl SqliteStore {
    /// Opens (creating if needed) `kmsd.sqlite3` in `dir`.
    pub fn open_in(dir: &Path) -> Result<Self, StoreError> {
        let path = dir.join("kmsd.sqlite3");
        let writer = open(&path)?;
        writer.execute_batch(SCHEMA).map_err(err)?;
        migrate(&writer)?;
        let reader = open(&path)?;
        // Key records read on cache misses: SQLite's default page cache (2 MiB) holds a small
        // part of an account's keys (100,000 keys are ~200 MB of pages), so nearly every miss
        // read its pages from the OS again.
        reader
            .pragma_update(None, "cache_size", -READER_CACHE_KIB)
            .map_err(err)?;
        Ok(SqliteStore {
            writer: Mutex::new(writer),
            reader: Mutex::new(reader),
        })
    }

    fn reader(&self) -> Result<std::sync::MutexGuard<'_, Connection>, StoreError> {
        self.reader
            .lock()
            .map_err(|_| StoreError("reader lock poisoned".into()))
    }

    fn bodies<T: serde::de::DeserializeOwned>(
        &self,
        sql: &str,
        p: &[&dyn rusqlite::ToSql],
    ) -> Result<Vec<T>, StoreError> {
        let c = self.reader()?;
        let mut stmt = c.prepare_cached(sql).map_err(err)?;
        let rows = stmt.query_map(p, |r| r.get::<_, String>(0)).map_err(err)?;
        let mut out = Vec::new();
        for r in rows {
            out.push(decode(r.map_err(err)?)?);
        }
        Ok(out)
    }

    fn one<T: serde::de::DeserializeOwned>(
        &self,
        sql: &str,
        p: &[&dyn rusqlite::ToSql],
    ) -> Result<Option<T>, StoreError> {
        let body: Option<String> = {
            let c = self.reader()?;
            let mut stmt = c.prepare_cached(sql).map_err(err)?;
            stmt.query_row(p, |r| r.get(0)).optional().map_err(err)?
        };
        // Decoded after the reader is free for other requests.
        body.map(decode).transpose()
    }
}

impl Store for SqliteStore {
    fn get_key(&self, region: &str, key_id: &str) -> Result<Option<KeyRecord>, StoreError> {
        self.one(
            "SELECT body FROM keys WHERE region = ?1 AND key_id = ?2",
            params![region, key_id],
        )
    }

    fn list_keys(
        &self,
        account: &str,
        region: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<KeyRecord>, StoreError> {
        self.bodies(
            "SELECT body FROM keys WHERE account = ?1 AND region = ?2 AND key_id > ?3 ORDER BY key_id LIMIT ?4",
            params![account, region, after.unwrap_or(""), limit.min(i64::MAX as usize) as i64],
        )
    }

    fn count_keys(&self, account: &str, region: &str) -> Result<usize, StoreError> {
        let c = self.reader()?;
        let n: i64 = c
            .prepare_cached("SELECT n FROM key_counts WHERE account = ?1 AND region = ?2")
            .and_then(|mut stmt| {
                stmt.query_row(params![account, region], |r| r.get(0))
                    .optional()
            })
            .map_err(err)?
            .unwrap_or(0);
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    fn keys_due_for_deletion(&self, now_ms: i64) -> Result<Vec<KeyRecord>, StoreError> {
        self.bodies(
            "SELECT body FROM keys WHERE state = 'PendingDeletion' AND deletion_ms <= ?1 ORDER BY deletion_ms",
            params![now_ms],
        )
    }

    fn keys_due_for_rotation(&self, now_ms: i64) -> Result<Vec<KeyRecord>, StoreError> {
        self.bodies(
            "SELECT body FROM keys WHERE rotation_ms <= ?1 AND state = 'Enabled' ORDER BY rotation_ms",
            params![now_ms],
        )
    }

    fn keys_with_expired_material(&self, now_ms: i64) -> Result<Vec<KeyRecord>, StoreError> {
        self.bodies(
            "SELECT body FROM keys WHERE material_expiry_ms <= ?1 ORDER BY material_expiry_ms",
            params![now_ms],
        )
    }

    fn get_alias(
        &self,
        account: &str,
        region: &str,
        name: &str,
    ) -> Result<Option<AliasRecord>, StoreError> {
        self.one(
            "SELECT body FROM aliases WHERE account = ?1 AND region = ?2 AND name = ?3",
            params![account, region, name],
        )
    }

    fn list_aliases(
        &self,
        account: &str,
        region: &str,
        target: Option<&str>,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<AliasRecord>, StoreError> {
        let limit = limit.min(i64::MAX as usize) as i64;
        let after = after.unwrap_or("");
        match target {
            Some(t) => self.bodies(
                "SELECT body FROM aliases WHERE account = ?1 AND region = ?2 AND target_key_id = ?3 AND name > ?4 ORDER BY name LIMIT ?5",
                params![account, region, t, after, limit],
            ),
            None => self.bodies(
                "SELECT body FROM aliases WHERE account = ?1 AND region = ?2 AND name > ?3 ORDER BY name LIMIT ?4",
                params![account, region, after, limit],
            ),
        }
    }

    fn get_access_key(&self, access_key_id: &str) -> Result<Option<AccessKeyRecord>, StoreError> {
        self.one(
            "SELECT body FROM access_keys WHERE access_key_id = ?1",
            params![access_key_id],
        )
    }

    fn get_meta(&self, name: &str) -> Result<Option<String>, StoreError> {
        let c = self.reader()?;
        c.query_row(
            "SELECT value FROM meta WHERE name = ?1",
            params![name],
            |r| r.get(0),
        )
        .optional()
        .map_err(err)
    }

    fn get_doc(&self, kind: &str, id: &str) -> Result<Option<String>, StoreError> {
        let c = self.reader()?;
        c.query_row(
            "SELECT body FROM docs WHERE kind = ?1 AND id = ?2",
            params![kind, id],
            |r| r.get(0),
        )
        .optional()
        .map_err(err)
    }

    fn list_docs(&self, kind: &str) -> Result<Vec<(String, String)>, StoreError> {
        let c = self.reader()?;
        let mut stmt = c
            .prepare_cached("SELECT id, body FROM docs WHERE kind = ?1 ORDER BY id")
            .map_err(err)?;
        let rows = stmt
            .query_map(params![kind], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(err)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(err)
    }

    fn keys_in_custom_key_store(
        &self,
        custom_key_store_id: &str,
    ) -> Result<Vec<KeyRecord>, StoreError> {
        self.bodies(
            "SELECT body FROM keys WHERE custom_key_store_id = ?1 ORDER BY key_id",
            params![custom_key_store_id],
        )
    }

    fn apply_logged(&self, ops: Vec<WriteOp>) -> Result<Vec<u64>, StoreError> {
        let mut c = self
            .writer
            .lock()
            .map_err(|_| StoreError("writer lock poisoned".into()))?;
        let tx = c.transaction().map_err(err)?;
        let mut positions = Vec::new();
        for op in &ops {
            match op {
                WriteOp::PutKey(k) => {
                    // A new key counts towards its account's quota.
                    tx.execute(
                        "INSERT INTO key_counts (account, region, n)
                         SELECT ?1, ?2, 1 WHERE NOT EXISTS (SELECT 1 FROM keys WHERE region = ?2 AND key_id = ?3)
                         ON CONFLICT (account, region) DO UPDATE SET n = n + 1",
                        params![k.account, k.region, k.key_id],
                    )
                    .map_err(err)?;
                    tx.execute(
                        "INSERT OR REPLACE INTO keys (region, key_id, account, state, deletion_ms, custom_key_store_id, rotation_ms, material_expiry_ms, body) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                        params![k.region, k.key_id, k.account, k.state, k.deletion_date_ms, k.custom_key_store_id, k.rotation.map(|r| r.next_ms), k.material_expiry_ms(), encode(k)?],
                    )
                    .map_err(err)?;
                }
                WriteOp::DeleteKey { region, key_id } => {
                    tx.execute(
                        "UPDATE key_counts SET n = n - 1
                         WHERE (account, region) IN (SELECT account, region FROM keys WHERE region = ?1 AND key_id = ?2)",
                        params![region, key_id],
                    )
                    .map_err(err)?;
                    tx.execute(
                        "DELETE FROM keys WHERE region = ?1 AND key_id = ?2",
                        params![region, key_id],
                    )
                    .map_err(err)?;
                }
                WriteOp::PutAlias(a) => {
                    tx.execute(
                        "INSERT OR REPLACE INTO aliases (account, region, name, target_key_id, body) VALUES (?1, ?2, ?3, ?4, ?5)",
                        params![a.account, a.region, a.name, a.target_key_id, encode(a)?],
                    )
                    .map_err(err)?;
                }
                WriteOp::DeleteAlias {
                    account,
                    region,
                    name,
                } => {
                    tx.execute(
                        "DELETE FROM aliases WHERE account = ?1 AND region = ?2 AND name = ?3",
                        params![account, region, name],
                    )
                    .map_err(err)?;
                }
                WriteOp::PutAccessKey(a) => {
                    tx.execute(
                        "INSERT INTO access_keys (access_key_id, body) VALUES (?1, ?2)",
                        params![a.access_key_id, encode(a)?],
                    )
                    .map_err(err)?;
                }
                WriteOp::DeleteAccessKey { access_key_id } => {
                    tx.execute(
                        "DELETE FROM access_keys WHERE access_key_id = ?1",
                        params![access_key_id],
                    )
                    .map_err(err)?;
                }
                WriteOp::PutDoc { kind, id, body } => {
                    tx.execute(
                        "INSERT OR REPLACE INTO docs (kind, id, body) VALUES (?1, ?2, ?3)",
                        params![kind, id, body],
                    )
                    .map_err(err)?;
                }
                WriteOp::DeleteDoc { kind, id } => {
                    tx.execute(
                        "DELETE FROM docs WHERE kind = ?1 AND id = ?2",
                        params![kind, id],
                    )
                    .map_err(err)?;
                }
                WriteOp::PutMeta { name, value } => {
                    tx.execute(
                        "INSERT OR REPLACE INTO meta (name, value) VALUES (?1, ?2)",
                        params![name, value],
                    )
                    .map_err(err)?;
                }
            }
            if let Some(change) = Change::of(op) {
                tx.execute(
                    "INSERT INTO changes (body) VALUES (?1)",
                    params![encode(&change)?],
                )
                .map_err(err)?;
                positions.push(tx.last_insert_rowid());
            }
        }
        // Pruned relative to this commit's own last entry, when it logged one.
        if let Some(latest) = positions.last() {
            tx.execute(
                "DELETE FROM changes WHERE seq <= ?1 - ?2",
                params![latest, CHANGE_LOG_RETAINED as i64],
            )
            .map_err(err)?;
        }
        tx.commit().map_err(err)?;
        positions
            .into_iter()
            .map(|p| u64::try_from(p).map_err(err))
            .collect()
    }

    fn changes_since(&self, after: u64) -> Result<ChangeBatch, StoreError> {
        let c = self.reader()?;
        let after = i64::try_from(after).map_err(err)?;
        // One read transaction, so the bounds and the rows agree.
        c.execute_batch("BEGIN").map_err(err)?;
        let result = (|| {
            let (oldest, latest): (Option<i64>, Option<i64>) = c
                .query_row("SELECT MIN(seq), MAX(seq) FROM changes", [], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .map_err(err)?;
            let latest = latest.unwrap_or(0).max(
                // AUTOINCREMENT keeps the highest position ever used even if rows are gone.
                c.query_row(
                    "SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'changes'), 0)",
                    [],
                    |r| r.get::<_, i64>(0),
                )
                .map_err(err)?,
            );
            let mut stmt = c
                .prepare_cached("SELECT seq, body FROM changes WHERE seq > ?1 ORDER BY seq")
                .map_err(err)?;
            let rows = stmt
                .query_map(params![after], |r| {
                    Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
                })
                .map_err(err)?;
            let mut changes = Vec::new();
            let mut positions = Vec::new();
            for r in rows {
                let (seq, body) = r.map_err(err)?;
                positions.push(u64::try_from(seq).map_err(err)?);
                changes.push(decode(body)?);
            }
            let complete = after >= latest || oldest.is_some_and(|o| after + 1 >= o);
            Ok(ChangeBatch {
                latest: u64::try_from(latest).unwrap_or(0),
                changes,
                positions,
                complete,
            })
        })();
        let _ = c.execute_batch("COMMIT");
        result
    }

    fn change_hint(&self) -> Result<u64, StoreError> {
        // Changes whenever another connection (this store's writer, another process) commits.
        let c = self.reader()?;
        // Asked before every signed request: the statement is prepared once per connection.
        let v: i64 = c
            .prepare_cached("PRAGMA data_version")
            .and_then(|mut st| st.query_row([], |r| r.get(0)))
            .map_err(err)?;
        Ok(u64::try_from(v).unwrap_or(0))
    }

    fn lock_writes(&self) -> Result<StoreGuard, StoreError> {
        // One server per data dir (its lock file); the service's mutex serialises its writers.
        Ok(StoreGuard::local())
    }

    fn try_job_lease(&self, _job: &str) -> Result<Option<StoreGuard>, StoreError> {
        Ok(Some(StoreGuard::local()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: &str, state: &str, deletion: Option<i64>) -> KeyRecord {
        crate::fixtures::sample_key("111122223333", "us-east-1", id, state, deletion)
    }

    #[test]
    fn writes_commit_together_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = SqliteStore::open_in(dir.path()).unwrap();
            s.apply(vec![
                WriteOp::PutKey(key("a", "Enabled", None)),
                WriteOp::PutKey(key("b", "PendingDeletion", Some(100))),
                WriteOp::PutAlias(AliasRecord {
                    account: "111122223333".into(),
                    region: "us-east-1".into(),
                    name: "alias/x".into(),
                    target_key_id: "a".into(),
                    created_ms: 1,
                    updated_ms: 1,
                }),
            ])
            .unwrap();
            // A batch with a failing op (duplicate access key) leaves nothing behind.
            let ak = AccessKeyRecord {
                access_key_id: "AKIA1".into(),
                account: "111122223333".into(),
                principal_arn: "arn".into(),
                user_id: "u".into(),
                sealed_secret_hex: "00".into(),
                created_ms: 1,
                expires_ms: None,
                session_token_sha256: None,
                role_arn: None,
            };
            s.apply(vec![WriteOp::PutAccessKey(ak.clone())]).unwrap();
            let r = s.apply(vec![
                WriteOp::PutKey(key("c", "Enabled", None)),
                WriteOp::PutAccessKey(ak),
            ]);
            assert!(r.is_err());
            assert!(s.get_key("us-east-1", "c").unwrap().is_none());
        }
        let s = SqliteStore::open_in(dir.path()).unwrap();
        assert_eq!(s.get_key("us-east-1", "a").unwrap().unwrap().key_id, "a");
        assert_eq!(
            s.list_keys("111122223333", "us-east-1", Some("a"), 10)
                .unwrap()
                .len(),
            1
        );
        assert_eq!(
            s.count_keys("111122223333", "us-east-1").unwrap(),
            s.list_keys("111122223333", "us-east-1", None, 1000)
                .unwrap()
                .len()
        );
        assert_eq!(s.count_keys("111122223333", "eu-west-1").unwrap(), 0);
        assert_eq!(s.keys_due_for_deletion(99).unwrap().len(), 0);
        assert_eq!(s.keys_due_for_deletion(100).unwrap().len(), 1);
        assert_eq!(
            s.list_aliases("111122223333", "us-east-1", Some("a"), None, 10)
                .unwrap()
                .len(),
            1
        );
        assert!(s.get_access_key("AKIA1").unwrap().is_some());

        let mut in_store = key("d", "Enabled", None);
        in_store.custom_key_store_id = Some("cks-1".into());
        s.apply(vec![
            WriteOp::PutKey(in_store),
            WriteOp::PutDoc {
                kind: "cluster".into(),
                id: "c2".into(),
                body: "{}".into(),
            },
            WriteOp::PutDoc {
                kind: "cluster".into(),
                id: "c1".into(),
                body: "{\"a\":1}".into(),
            },
        ])
        .unwrap();
        assert_eq!(s.keys_in_custom_key_store("cks-1").unwrap().len(), 1);
        assert_eq!(
            s.list_docs("cluster").unwrap()[0],
            ("c1".to_owned(), "{\"a\":1}".to_owned())
        );
        s.apply(vec![WriteOp::DeleteDoc {
            kind: "cluster".into(),
            id: "c1".into(),
        }])
        .unwrap();
        assert!(s.get_doc("cluster", "c1").unwrap().is_none());
        assert!(s.get_doc("cluster", "c2").unwrap().is_some());
    }
}
