//! One conformance suite for every `Store`: the in-memory store, SQLite and PostgreSQL (each
//! PostgreSQL test in a fresh database, dropped afterwards). PostgreSQL tests skip with a
//! message when the server is unreachable, unless `CI` or `KMSD_REQUIRE_PG` is set.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use kms_core::model::{
    AccessKeyRecord, AliasRecord, ImportedMaterial, KeyRecord, MaterialRecord, RotationSchedule,
};
use kms_core::{Change, MemStore, Store, WriteOp, CHANGE_LOG_RETAINED, KEY_LAST_USAGE_DOC};
use kms_store::{PostgresSettings, PostgresStore, ScratchDatabase, SqliteStore};

const ACCOUNT: &str = "111122223333";
const REGION: &str = "us-east-1";

fn key(id: &str, state: &str, deletion: Option<i64>) -> KeyRecord {
    kms_store::fixtures::sample_key(ACCOUNT, REGION, id, state, deletion)
}

fn alias(name: &str, target: &str) -> AliasRecord {
    AliasRecord {
        account: ACCOUNT.into(),
        region: REGION.into(),
        name: name.into(),
        target_key_id: target.into(),
        created_ms: 1,
        updated_ms: 1,
    }
}

fn access_key(id: &str) -> AccessKeyRecord {
    AccessKeyRecord {
        access_key_id: id.into(),
        account: ACCOUNT.into(),
        principal_arn: "arn:aws:iam::111122223333:user/admin".into(),
        user_id: "AIDA1".into(),
        sealed_secret_hex: "00".into(),
        created_ms: 1,
        expires_ms: None,
        session_token_sha256: None,
        role_arn: None,
    }
}

/// What every store must do.
fn conformance(s: &dyn Store) {
    // Keys: put, get, replace, list (bytewise order, paging), count.
    let mut rotating = key("r", "Enabled", None);
    rotating.rotation = Some(RotationSchedule {
        period_days: 90,
        next_ms: 500,
    });
    let mut imported = key("i", "Enabled", None);
    imported.materials.push(MaterialRecord {
        material_id: "00".repeat(16),
        key_material_id: "m".into(),
        created_ms: 1,
        sealed_hex: "00".into(),
        rotation_type: None,
        imported: Some(ImportedMaterial {
            expiration_model: "KEY_MATERIAL_EXPIRES".into(),
            valid_to_ms: Some(700),
            description: None,
            present: true,
            pending_rotation: false,
        }),
    });
    let mut in_store = key("s", "Enabled", None);
    in_store.custom_key_store_id = Some("cks-1".into());
    s.apply(vec![
        WriteOp::PutKey(key("a", "Enabled", None)),
        WriteOp::PutKey(key("B", "PendingDeletion", Some(100))),
        WriteOp::PutKey(rotating),
        WriteOp::PutKey(imported),
        WriteOp::PutKey(in_store),
        WriteOp::PutAlias(alias("alias/x", "a")),
        WriteOp::PutAlias(alias("alias/Y", "a")),
        WriteOp::PutAlias(alias("alias/z", "B")),
    ])
    .unwrap();
    let mut a = key("a", "Disabled", None);
    a.tags.insert("k".into(), "v".into());
    s.apply(vec![WriteOp::PutKey(a.clone())]).unwrap();
    assert_eq!(s.get_key(REGION, "a").unwrap(), Some(a));
    assert_eq!(s.get_key("eu-west-1", "a").unwrap(), None);
    let ids = |v: Vec<KeyRecord>| v.into_iter().map(|k| k.key_id).collect::<Vec<_>>();
    assert_eq!(
        ids(s.list_keys(ACCOUNT, REGION, None, 100).unwrap()),
        ["B", "a", "i", "r", "s"],
        "bytewise order"
    );
    assert_eq!(
        ids(s.list_keys(ACCOUNT, REGION, Some("a"), 2).unwrap()),
        ["i", "r"]
    );
    assert!(s
        .list_keys("999999999999", REGION, None, 100)
        .unwrap()
        .is_empty());
    assert_eq!(s.count_keys(ACCOUNT, REGION).unwrap(), 5);
    assert_eq!(s.count_keys(ACCOUNT, "eu-west-1").unwrap(), 0);

    // The sweepers' queries.
    assert!(s.keys_due_for_deletion(99).unwrap().is_empty());
    assert_eq!(ids(s.keys_due_for_deletion(100).unwrap()), ["B"]);
    assert!(s.keys_due_for_rotation(499).unwrap().is_empty());
    assert_eq!(ids(s.keys_due_for_rotation(500).unwrap()), ["r"]);
    assert!(s.keys_with_expired_material(699).unwrap().is_empty());
    assert_eq!(ids(s.keys_with_expired_material(700).unwrap()), ["i"]);
    assert_eq!(ids(s.keys_in_custom_key_store("cks-1").unwrap()), ["s"]);
    assert!(s.keys_in_custom_key_store("cks-2").unwrap().is_empty());

    // Aliases: get, list by target and after, replace, delete.
    assert_eq!(
        s.get_alias(ACCOUNT, REGION, "alias/x").unwrap(),
        Some(alias("alias/x", "a"))
    );
    let names = |v: Vec<AliasRecord>| v.into_iter().map(|a| a.name).collect::<Vec<_>>();
    assert_eq!(
        names(s.list_aliases(ACCOUNT, REGION, None, None, 10).unwrap()),
        ["alias/Y", "alias/x", "alias/z"]
    );
    assert_eq!(
        names(
            s.list_aliases(ACCOUNT, REGION, Some("a"), Some("alias/Y"), 10)
                .unwrap()
        ),
        ["alias/x"]
    );
    assert_eq!(
        names(s.list_aliases(ACCOUNT, REGION, None, None, 1).unwrap()),
        ["alias/Y"]
    );
    s.apply(vec![
        WriteOp::PutAlias(alias("alias/x", "B")),
        WriteOp::DeleteAlias {
            account: ACCOUNT.into(),
            region: REGION.into(),
            name: "alias/z".into(),
        },
    ])
    .unwrap();
    assert_eq!(
        s.get_alias(ACCOUNT, REGION, "alias/x")
            .unwrap()
            .unwrap()
            .target_key_id,
        "B"
    );
    assert_eq!(s.get_alias(ACCOUNT, REGION, "alias/z").unwrap(), None);

    // Access keys: a duplicate fails and the whole batch with it.
    s.apply(vec![WriteOp::PutAccessKey(access_key("AKIA1"))])
        .unwrap();
    assert!(s
        .apply(vec![
            WriteOp::PutKey(key("c", "Enabled", None)),
            WriteOp::PutAccessKey(access_key("AKIA1")),
        ])
        .is_err());
    assert_eq!(s.get_key(REGION, "c").unwrap(), None, "batch rolled back");
    assert_eq!(
        s.get_access_key("AKIA1").unwrap(),
        Some(access_key("AKIA1"))
    );
    s.apply(vec![WriteOp::DeleteAccessKey {
        access_key_id: "AKIA1".into(),
    }])
    .unwrap();
    assert_eq!(s.get_access_key("AKIA1").unwrap(), None);

    // Documents and metadata.
    s.apply(vec![
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
        WriteOp::PutDoc {
            kind: "other".into(),
            id: "c0".into(),
            body: "{}".into(),
        },
        WriteOp::PutMeta {
            name: "m".into(),
            value: "1".into(),
        },
    ])
    .unwrap();
    s.apply(vec![WriteOp::PutMeta {
        name: "m".into(),
        value: "2".into(),
    }])
    .unwrap();
    assert_eq!(s.get_meta("m").unwrap().as_deref(), Some("2"));
    assert_eq!(s.get_meta("none").unwrap(), None);
    assert_eq!(
        s.list_docs("cluster").unwrap(),
        [
            ("c1".to_owned(), "{\"a\":1}".to_owned()),
            ("c2".to_owned(), "{}".to_owned())
        ]
    );
    s.apply(vec![WriteOp::DeleteDoc {
        kind: "cluster".into(),
        id: "c1".into(),
    }])
    .unwrap();
    assert_eq!(s.get_doc("cluster", "c1").unwrap(), None);
    assert_eq!(s.get_doc("cluster", "c2").unwrap().as_deref(), Some("{}"));

    // Deleting a key.
    s.apply(vec![WriteOp::DeleteKey {
        region: REGION.into(),
        key_id: "B".into(),
    }])
    .unwrap();
    assert_eq!(s.get_key(REGION, "B").unwrap(), None);
    assert_eq!(s.count_keys(ACCOUNT, REGION).unwrap(), 4);
    // The count follows additions and removals only: rewriting a key, deleting a key that is
    // not there, or a key of another account or Region leave it as it is.
    s.apply(vec![
        WriteOp::PutKey(key("a", "Enabled", None)),
        WriteOp::DeleteKey {
            region: REGION.into(),
            key_id: "B".into(),
        },
        WriteOp::DeleteKey {
            region: "eu-west-1".into(),
            key_id: "a".into(),
        },
    ])
    .unwrap();
    assert_eq!(s.count_keys(ACCOUNT, REGION).unwrap(), 4);
    let mut elsewhere = key("a", "Enabled", None);
    elsewhere.region = "eu-west-1".into();
    s.apply(vec![WriteOp::PutKey(elsewhere)]).unwrap();
    assert_eq!(s.count_keys(ACCOUNT, "eu-west-1").unwrap(), 1);
    assert_eq!(s.count_keys(ACCOUNT, REGION).unwrap(), 4);
    s.apply(vec![WriteOp::DeleteKey {
        region: "eu-west-1".into(),
        key_id: "a".into(),
    }])
    .unwrap();
    assert_eq!(s.count_keys(ACCOUNT, "eu-west-1").unwrap(), 0);
    s.ping().unwrap();
}

/// The change log: every committed write is reported once, in commit order; the hint moves.
fn change_log(s: &dyn Store) {
    let start = s.changes_since(0).unwrap();
    assert!(start.complete);
    let hint = s.change_hint().unwrap();
    let mut written = s
        .apply_logged(vec![
            WriteOp::PutKey(key("k1", "Enabled", None)),
            WriteOp::PutAlias(alias("alias/k1", "k1")),
        ])
        .unwrap();
    written.extend(
        s.apply_logged(vec![
            WriteOp::DeleteAccessKey {
                access_key_id: "AKIAX".into(),
            },
            WriteOp::PutDoc {
                kind: "principal".into(),
                id: "p".into(),
                body: "{}".into(),
            },
            WriteOp::PutMeta {
                name: "n".into(),
                value: "v".into(),
            },
        ])
        .unwrap(),
    );
    written.extend(
        s.apply_logged(vec![WriteOp::PutAccessKey(access_key("AKIAD"))])
            .unwrap(),
    );
    let after_ok = s.changes_since(start.latest).unwrap();
    // A failed batch reports nothing.
    assert!(s
        .apply(vec![
            WriteOp::PutKey(key("k2", "Enabled", None)),
            WriteOp::PutAccessKey(access_key("AKIAD")),
        ])
        .is_err());
    let batch = s.changes_since(start.latest).unwrap();
    assert!(batch.complete);
    assert_eq!(batch.latest, after_ok.latest);
    assert_eq!(
        batch.changes,
        vec![
            Change::Key {
                region: REGION.into(),
                key_id: "k1".into()
            },
            Change::Alias {
                account: ACCOUNT.into(),
                region: REGION.into(),
                name: "alias/k1".into()
            },
            Change::AccessKey {
                access_key_id: "AKIAX".into()
            },
            Change::Doc {
                kind: "principal".into(),
                id: "p".into()
            },
            Change::Meta { name: "n".into() },
            Change::AccessKey {
                access_key_id: "AKIAD".into()
            },
        ]
    );
    // Each commit answered the positions its entries have in the log, in order.
    assert_eq!(batch.positions, written);
    assert!(written.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(written.last(), Some(&batch.latest));
    let tail = s.changes_since(batch.latest).unwrap();
    assert!(tail.changes.is_empty() && tail.complete);
    assert_eq!(tail.latest, batch.latest);
    // The hint moved.
    let deadline = Instant::now() + Duration::from_secs(5);
    while s.change_hint().unwrap() == hint {
        assert!(Instant::now() < deadline, "change hint never moved");
        std::thread::sleep(Duration::from_millis(10));
    }
    // Key last-usage documents are written but not logged: a batch of more of them than the
    // log retains leaves the log (and what it says of other writes) as it was.
    let usage = |i: usize| WriteOp::PutDoc {
        kind: KEY_LAST_USAGE_DOC.into(),
        id: format!("{REGION}/k{i}"),
        body: "{}".into(),
    };
    let many: Vec<WriteOp> = (0..CHANGE_LOG_RETAINED as usize + 10).map(usage).collect();
    assert_eq!(s.apply_logged(many).unwrap(), Vec::<u64>::new());
    let k3 = s
        .apply_logged(vec![
            usage(0),
            WriteOp::PutKey(key("k3", "Enabled", None)),
            usage(1),
        ])
        .unwrap();
    assert!(s
        .get_doc(KEY_LAST_USAGE_DOC, &format!("{REGION}/k7"))
        .unwrap()
        .is_some());
    let logged = s.changes_since(start.latest).unwrap();
    assert!(logged.complete, "the log still reaches back to the start");
    assert!(logged.latest > batch.latest);
    assert_eq!(&logged.changes[..batch.changes.len()], &batch.changes[..]);
    assert_eq!(
        logged.changes[batch.changes.len()..],
        [Change::Key {
            region: REGION.into(),
            key_id: "k3".into()
        }]
    );
    assert_eq!(logged.positions[batch.changes.len()..], k3[..]);
    // The write section and job leases are granted.
    drop(s.lock_writes().unwrap());
    assert!(s.try_job_lease("sweeper").unwrap().is_some());
}

#[test]
fn mem_store_conforms() {
    conformance(&MemStore::default());
    change_log(&MemStore::default());
}

#[test]
fn sqlite_store_conforms() {
    let dir = tempfile::tempdir().unwrap();
    conformance(&SqliteStore::open_in(dir.path()).unwrap());
    let dir = tempfile::tempdir().unwrap();
    change_log(&SqliteStore::open_in(dir.path()).unwrap());
}

/// A data dir written before keys were counted gets its count made once, at the next open.
#[test]
fn sqlite_store_counts_the_keys_of_an_older_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = SqliteStore::open_in(dir.path()).unwrap();
        s.apply(vec![
            WriteOp::PutKey(key("a", "Enabled", None)),
            WriteOp::PutKey(key("b", "Enabled", None)),
        ])
        .unwrap();
    }
    // What an older kmsd left: no count table, no marker.
    let c = rusqlite::Connection::open(dir.path().join("kmsd.sqlite3")).unwrap();
    c.execute_batch("DROP TABLE key_counts; DELETE FROM meta WHERE name = 'schema:key_counts';")
        .unwrap();
    drop(c);
    let s = SqliteStore::open_in(dir.path()).unwrap();
    assert_eq!(s.count_keys(ACCOUNT, REGION).unwrap(), 2);
    // Counted once: opening again does not count twice.
    drop(s);
    let s = SqliteStore::open_in(dir.path()).unwrap();
    assert_eq!(s.count_keys(ACCOUNT, REGION).unwrap(), 2);
}

#[test]
fn sqlite_store_sees_another_process_writes_through_the_hint() {
    let dir = tempfile::tempdir().unwrap();
    let server = SqliteStore::open_in(dir.path()).unwrap();
    let seen = server.changes_since(0).unwrap().latest;
    let hint = server.change_hint().unwrap();
    // `kmsd admin` opens the same file with its own connections.
    let admin = SqliteStore::open_in(dir.path()).unwrap();
    admin
        .apply(vec![WriteOp::DeleteAccessKey {
            access_key_id: "AKIA1".into(),
        }])
        .unwrap();
    assert_ne!(server.change_hint().unwrap(), hint);
    assert_eq!(
        server.changes_since(seen).unwrap().changes,
        [Change::AccessKey {
            access_key_id: "AKIA1".into()
        }]
    );
}

fn pg(db: &ScratchDatabase) -> PostgresStore {
    PostgresStore::connect(&PostgresSettings::parse(db.url()).unwrap()).unwrap()
}

#[test]
fn postgres_store_conforms() {
    let Some(db) = ScratchDatabase::create_or_skip("postgres_store_conforms") else {
        return;
    };
    conformance(&pg(&db));
    let Some(db) = ScratchDatabase::create_or_skip("postgres_store_conforms") else {
        return;
    };
    change_log(&pg(&db));
}

/// The awaited change hint (what each signed request asks): it sees every write committed
/// before it was asked, concurrent callers share queries, and callers that give up mid-query
/// (a client hanging up) leave the others unharmed.
#[test]
fn postgres_change_hint_future_sees_prior_writes_and_survives_abandoned_callers() {
    let Some(db) = ScratchDatabase::create_or_skip("postgres_hint_future") else {
        return;
    };
    let node_a = std::sync::Arc::new(pg(&db));
    let node_b = pg(&db);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        for round in 0..20 {
            // Callers that poll once and go away.
            for _ in 0..5 {
                let pending = node_a
                    .change_hint_future()
                    .expect("PostgreSQL hints are awaited");
                let _ = tokio::time::timeout(Duration::ZERO, pending).await;
            }
            node_b
                .apply(vec![WriteOp::PutKey(key(
                    &format!("k{round}"),
                    "Enabled",
                    None,
                ))])
                .unwrap();
            let head = node_b.changes_since(0).unwrap().latest;
            let mut waiting = Vec::new();
            for _ in 0..8 {
                let pending = node_a.change_hint_future().unwrap();
                waiting.push(tokio::spawn(pending));
            }
            for w in waiting {
                let seen = tokio::time::timeout(Duration::from_secs(10), w)
                    .await
                    .expect("a head read never answered")
                    .unwrap()
                    .unwrap();
                assert!(
                    seen >= head,
                    "round {round}: hint {seen} before the write at {head}"
                );
            }
            assert!(node_a.change_hint().unwrap() >= head);
        }
    });
}

/// Polls `node`'s change hint (as a serving node does per request) until it trusts the changes
/// the database pushes, at most 10 s.
fn until_pushed(rt: &tokio::runtime::Runtime, node: &PostgresStore) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !node.pushed_changes_trusted() {
        assert!(
            Instant::now() < deadline,
            "the change feed never took a lease"
        );
        rt.block_on(node.change_hint_future().unwrap()).unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Writes key `id` on `writer`, then asserts `reader`'s next hint is at or past that write.
fn write_then_hint(
    rt: &tokio::runtime::Runtime,
    writer: &PostgresStore,
    reader: &PostgresStore,
    id: &str,
) {
    writer
        .apply(vec![WriteOp::PutKey(key(id, "Enabled", None))])
        .unwrap();
    let head = writer.changes_since(0).unwrap().latest;
    let seen = rt.block_on(reader.change_hint_future().unwrap()).unwrap();
    assert!(
        seen >= head,
        "{id}: the reader's hint {seen} is behind {head}"
    );
}

/// The change feed: once a write on node A returns, node B's next hint is past it, without a
/// query (B trusts the pushed head), also when B's feed connection was just cut (B stops
/// trusting it, or A waits for B's lease to lapse) and when a leased node never acknowledges
/// (A waits for its lease to lapse).
#[test]
fn postgres_change_feed_is_seen_by_every_node_before_a_write_returns() {
    let Some(db) = ScratchDatabase::create_or_skip("postgres_change_feed") else {
        return;
    };
    let node_a = pg(&db);
    let node_b = pg(&db);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    until_pushed(&rt, &node_a);
    until_pushed(&rt, &node_b);
    for round in 0..30 {
        write_then_hint(&rt, &node_a, &node_b, &format!("p{round}"));
    }
    assert!(
        node_b.pushed_changes_trusted(),
        "node B fell back to queries"
    );

    // Node B's feed connection is cut just before a write: the write still holds on B.
    for round in 0..5 {
        until_pushed(&rt, &node_b);
        run_sql(
            db.url(),
            &format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE application_name = 'kmsd-feed-{}'",
                node_b.feed_node()
            ),
        );
        write_then_hint(&rt, &node_a, &node_b, &format!("c{round}"));
    }

    // A leased node that never acknowledges: the writer waits for its lease to lapse.
    run_sql(
        db.url(),
        "INSERT INTO kmsd_nodes (node_id, lease_until) \
         VALUES ('silent', clock_timestamp() + interval '1500 milliseconds')",
    );
    let started = Instant::now();
    node_a
        .apply(vec![WriteOp::PutKey(key("after-silent", "Enabled", None))])
        .unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(1000),
        "the write did not wait for the silent node's lease ({:?})",
        started.elapsed()
    );
    // Once it lapsed, writes are quick again.
    let started = Instant::now();
    node_a
        .apply(vec![WriteOp::PutKey(key("quick", "Enabled", None))])
        .unwrap();
    assert!(started.elapsed() < Duration::from_millis(1000));
}

#[test]
fn postgres_nodes_share_the_write_section_and_job_leases() {
    let Some(db) = ScratchDatabase::create_or_skip("postgres_write_section") else {
        return;
    };
    let a = pg(&db);
    let b = std::sync::Arc::new(pg(&db));
    // Another node's change reaches this node's hint and log.
    let seen = a.changes_since(0).unwrap().latest;
    b.apply(vec![WriteOp::PutKey(key("k", "Enabled", None))])
        .unwrap();
    assert!(
        a.change_hint().unwrap() > seen,
        "another node's write moves the hint"
    );
    assert_eq!(a.changes_since(seen).unwrap().changes.len(), 1);

    // Concurrent readers of the head share queries, and each sees every write acknowledged
    // before it asked.
    let a = std::sync::Arc::new(a);
    for round in 0..10 {
        b.apply(vec![WriteOp::PutMeta {
            name: "round".into(),
            value: round.to_string(),
        }])
        .unwrap();
        let written = b.changes_since(0).unwrap().latest;
        let readers: Vec<_> = (0..4)
            .map(|_| {
                let a = a.clone();
                std::thread::spawn(move || a.change_hint().unwrap())
            })
            .collect();
        for r in readers {
            assert!(r.join().unwrap() >= written);
        }
    }

    // Only one node is in the write section at a time.
    let held = a.lock_writes().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let b2 = b.clone();
    let waiter = std::thread::spawn(move || {
        let g = b2.lock_writes().unwrap();
        tx.send(Instant::now()).unwrap();
        drop(g);
    });
    assert!(
        rx.recv_timeout(Duration::from_millis(300)).is_err(),
        "the second node entered while the first held the section"
    );
    let released = Instant::now();
    drop(held);
    let entered = rx.recv_timeout(Duration::from_secs(5)).unwrap();
    assert!(entered >= released);
    waiter.join().unwrap();

    // A job lease is held by one node; the other gets it once released.
    let lease = a.try_job_lease("sweeper").unwrap().expect("first lease");
    assert!(b.try_job_lease("sweeper").unwrap().is_none());
    assert!(b.try_job_lease("rotation").unwrap().is_some());
    drop(lease);
    let deadline = Instant::now() + Duration::from_secs(5);
    while b.try_job_lease("sweeper").unwrap().is_none() {
        assert!(Instant::now() < deadline, "lease never released");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn postgres_refuses_a_newer_schema_and_migrates_once() {
    let Some(db) = ScratchDatabase::create_or_skip("postgres_schema") else {
        return;
    };
    // Two stores starting at once: the schema is applied once, both start.
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let url = db.url().to_owned();
            std::thread::spawn(move || {
                PostgresStore::connect(&PostgresSettings::parse(&url).unwrap()).map(|_| ())
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap().unwrap();
    }
    let s = pg(&db);
    s.apply(vec![WriteOp::PutMeta {
        name: "x".into(),
        value: "y".into(),
    }])
    .unwrap();
    drop(s);
    run_sql(
        db.url(),
        "INSERT INTO schema_version (version) VALUES (999)",
    );
    let e = PostgresStore::connect(&PostgresSettings::parse(db.url()).unwrap())
        .err()
        .expect("a newer schema is refused");
    assert!(
        e.0.contains("schema is version 999, newer than this kmsd knows"),
        "{e}"
    );
}

#[test]
fn postgres_unreachable_fails_clearly_without_hanging() {
    // A port nobody listens on: connecting fails quickly with a clear error.
    let settings =
        PostgresSettings::parse("postgres://postgres@127.0.0.1:1/none?statement_timeout_ms=500")
            .unwrap();
    let started = Instant::now();
    let e = PostgresStore::connect(&settings)
        .err()
        .expect("unreachable");
    assert!(e.0.contains("PostgreSQL"), "{e}");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(format!("{settings:?}").contains("127.0.0.1:1/none"));
    assert!(PostgresSettings::parse("postgres://u:secret@h/db?pool_size=2").is_err());
    let s = PostgresSettings::parse("postgres://u:secret@h/db?pool_size=4").unwrap();
    assert!(!format!("{s:?}").contains("secret"));
    assert_eq!(s.pool_size, 4);
    // `kmsd config check` describes the store without its password, and refuses other schemes.
    let dir = std::path::Path::new("/var/lib/kmsd");
    assert_eq!(
        kms_store::describe_store(Some("postgres://u:secret@h/db"), dir).unwrap(),
        "postgres h:5432/db as u"
    );
    assert_eq!(
        kms_store::describe_store(None, dir).unwrap(),
        "sqlite /var/lib/kmsd/kmsd.sqlite3"
    );
    assert!(kms_store::describe_store(Some("mysql://h/db"), dir).is_err());
    // A Unix socket directory, as the README shows it.
    let unix = PostgresSettings::parse("postgres://kmsd@%2Fvar%2Frun%2Fpostgresql/kmsd").unwrap();
    assert_eq!(unix.describe(), "/var/run/postgresql:5432/kmsd as kmsd");
}

/// Runs SQL on a database through a connection of its own.
fn run_sql(url: &str, sql: &str) {
    let url = url.to_owned();
    let sql = sql.to_owned();
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async move {
                let (c, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                    .await
                    .unwrap();
                tokio::spawn(conn);
                c.batch_execute(&sql).await.unwrap();
            })
    })
    .join()
    .unwrap();
}
