//! Three kmsd nodes on one PostgreSQL database behave as one KMS: keys created on one are used
//! on the others; disable, alias deletion, key policies and access key revocation are seen by
//! the others' next request; concurrent writers on different nodes lose no update; sweepers
//! act once; a node SIGKILLed under round-robin load loses no acknowledged write; CloudHSM and
//! external key stores connected on one node serve on the others at once (one `kmsuser`
//! password rotation) and a disconnect on one holds on the others.
//!
//! Each test gets its own fresh database (`KMSD_TEST_POSTGRES`, default
//! `postgres://postgres@127.0.0.1:5432/test`); without a server the tests skip, saying so,
//! unless `CI` or `KMSD_REQUIRE_PG` is set.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "common/hsm_lab.rs"]
mod hsm_lab;
#[path = "common/xks_lab.rs"]
mod xks_lab;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use aws_sdk_kms::primitives::Blob;
use common::Server;
use kms_store::ScratchDatabase;

/// Nodes sharing one database, each with its own data dir and the first node's root key.
struct Cluster {
    nodes: Vec<Server>,
    db: ScratchDatabase,
    _tmp: Option<tempfile::TempDir>,
}

impl Cluster {
    fn start(test: &str, n: usize, extra: &[&str]) -> Option<Cluster> {
        let tmp = tempfile::tempdir().unwrap();
        let dirs: Vec<PathBuf> = (0..n)
            .map(|i| tmp.path().join(format!("node{i}")))
            .collect();
        let mut cluster = Cluster::start_on(test, &dirs, extra, &[])?;
        cluster._tmp = Some(tmp);
        Some(cluster)
    }

    /// A node on each of `dirs` (extra flags and environment variables for each).
    fn start_on(
        test: &str,
        dirs: &[PathBuf],
        extra: &[&str],
        vars: &[(&str, &Path)],
    ) -> Option<Cluster> {
        let db = ScratchDatabase::create_or_skip(test)?;
        let mut nodes: Vec<Server> = Vec::new();
        for dir in dirs {
            if let Some(first) = nodes.first() {
                std::fs::create_dir_all(dir).unwrap();
                std::fs::copy(first.data_dir.join("root.key"), dir.join("root.key")).unwrap();
            }
            let mut args = vec!["--store", db.url()];
            args.extend_from_slice(extra);
            nodes.push(Server::start_in_env(dir, &args, vars));
        }
        Some(Cluster {
            nodes,
            db,
            _tmp: None,
        })
    }

    /// Clients of every node, signed with the admin credentials the first node wrote.
    fn clients(&self) -> Vec<aws_sdk_kms::Client> {
        let (a, s) = self.nodes[0].admin_credentials();
        self.nodes
            .iter()
            .map(|n| n.client_with(&a, &s, "us-east-1"))
            .collect()
    }

    fn dir(&self, i: usize) -> PathBuf {
        self.nodes[i].data_dir.clone()
    }
}

fn kmsd_admin(data_dir: &Path, store: &str, args: &[&str]) -> String {
    common::kmsd_admin(data_dir, &["--store".to_owned(), store.to_owned()], args)
}

fn error_code<E: aws_sdk_kms::error::ProvideErrorMetadata>(e: &E) -> String {
    e.code().unwrap_or("").to_owned()
}

async fn encrypt(kms: &aws_sdk_kms::Client, key: &str) -> Result<Vec<u8>, String> {
    kms.encrypt()
        .key_id(key)
        .plaintext(Blob::new(b"hello".to_vec()))
        .send()
        .await
        .map(|o| o.ciphertext_blob().unwrap().as_ref().to_vec())
        .map_err(|e| {
            let e = e.into_service_error();
            format!("{}: {}", error_code(&e), e)
        })
}

#[tokio::test(flavor = "multi_thread")]
async fn three_nodes_act_as_one_kms() {
    let Some(cluster) = Cluster::start("three_nodes_act_as_one_kms", 3, &[]) else {
        return;
    };
    let kms = cluster.clients();
    // Only the first node created the admin; the others found the account initialised.
    assert!(cluster.dir(0).join("admin-credentials").exists());
    assert!(!cluster.dir(1).join("admin-credentials").exists());

    // A key created on one node is used on the others at once.
    let key = common::new_key_id(&kms[0]).await;
    let ct = encrypt(&kms[1], &key).await.unwrap();
    let pt = kms[2]
        .decrypt()
        .ciphertext_blob(Blob::new(ct))
        .send()
        .await
        .unwrap();
    assert_eq!(pt.plaintext().unwrap().as_ref(), b"hello");

    // Aliases: created on A, used on B, deleted on A: B refuses at once.
    kms[0]
        .create_alias()
        .alias_name("alias/shared")
        .target_key_id(&key)
        .send()
        .await
        .unwrap();
    encrypt(&kms[1], "alias/shared").await.unwrap();
    kms[0]
        .delete_alias()
        .alias_name("alias/shared")
        .send()
        .await
        .unwrap();
    let e = encrypt(&kms[1], "alias/shared").await.unwrap_err();
    assert!(e.starts_with("NotFoundException"), "{e}");

    // DisableKey on A: B refuses at once; EnableKey on C: A serves at once.
    kms[0].disable_key().key_id(&key).send().await.unwrap();
    let e = encrypt(&kms[1], &key).await.unwrap_err();
    assert!(e.starts_with("DisabledException"), "{e}");
    kms[2].enable_key().key_id(&key).send().await.unwrap();
    encrypt(&kms[0], &key).await.unwrap();

    // PutKeyPolicy on A denying Encrypt: B refuses at once.
    let policy = serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "root", "Effect": "Allow",
             "Principal": {"AWS": "arn:aws:iam::111122223333:root"},
             "Action": "kms:*", "Resource": "*"},
            {"Sid": "no-encrypt", "Effect": "Deny",
             "Principal": {"AWS": "*"}, "Action": "kms:Encrypt", "Resource": "*"}
        ]
    });
    encrypt(&kms[1], &key).await.unwrap();
    kms[0]
        .put_key_policy()
        .key_id(&key)
        .policy(policy.to_string())
        .send()
        .await
        .unwrap();
    let e = encrypt(&kms[1], &key).await.unwrap_err();
    assert!(e.starts_with("AccessDeniedException"), "{e}");

    // Access key revocation with `kmsd admin` (another process): refused on every node at once.
    let creds = kmsd_admin(
        &cluster.dir(0),
        cluster.db.url(),
        &["create-access-key", "arn:aws:iam::111122223333:user/admin"],
    );
    let field = |k: &str| {
        creds
            .lines()
            .find_map(|l| l.strip_prefix(k))
            .map(|v| v.trim_start_matches([' ', '=']).trim().to_owned())
            .unwrap()
    };
    let (akid, secret) = (field("aws_access_key_id"), field("aws_secret_access_key"));
    let revocable: Vec<_> = cluster
        .nodes
        .iter()
        .map(|n| n.client_with(&akid, &secret, "us-east-1"))
        .collect();
    for c in &revocable {
        c.list_keys().send().await.unwrap();
    }
    kmsd_admin(
        &cluster.dir(1),
        cluster.db.url(),
        &["delete-access-key", &akid],
    );
    for c in &revocable {
        let e = c.list_keys().send().await.unwrap_err().into_service_error();
        assert_eq!(error_code(&e), "UnrecognizedClientException", "{e}");
    }

    // Concurrent TagResource on one key from two nodes: no tag is lost.
    let tagged = common::new_key_id(&kms[2]).await;
    let mut tasks = Vec::new();
    for (n, client) in kms.iter().take(2).enumerate() {
        for i in 0..10 {
            let client = client.clone();
            let tagged = tagged.clone();
            tasks.push(tokio::spawn(async move {
                client
                    .tag_resource()
                    .key_id(tagged)
                    .tags(
                        aws_sdk_kms::types::Tag::builder()
                            .tag_key(format!("node{n}-{i}"))
                            .tag_value("v")
                            .build()
                            .unwrap(),
                    )
                    .send()
                    .await
                    .unwrap();
            }));
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    let tags = kms[2]
        .list_resource_tags()
        .key_id(&tagged)
        .send()
        .await
        .unwrap();
    assert_eq!(tags.tags().len(), 20, "{:?}", tags.tags());

    // A node with another root key refuses to start on the initialised database.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kmsd"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--store",
            cluster.db.url(),
        ])
        .arg("--data-dir")
        .arg(cluster.dir(0).with_file_name("stranger"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("this root key is not the one the database was initialised with"),
        "{stderr}"
    );
}

/// Lines of a node's audit trail recording that the sweeper deleted `key`.
/// Three nodes starting at the same moment on an empty database (the same root key given to
/// each beforehand) agree on one account with one admin and on one audit signing key.
#[test]
fn nodes_starting_together_on_an_empty_database_make_one_account_and_one_audit_key() {
    let Some(db) = ScratchDatabase::create_or_skip("start_together") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let mut root = [0u8; 32];
    aws_lc_rs::rand::fill(&mut root).unwrap();
    let dirs: Vec<PathBuf> = (0..3)
        .map(|i| tmp.path().join(format!("node{i}")))
        .collect();
    for d in &dirs {
        std::fs::create_dir_all(d).unwrap();
        std::fs::set_permissions(d, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
        let f = d.join("root.key");
        std::fs::write(&f, root).unwrap();
        std::fs::set_permissions(&f, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    }
    let url = db.url().to_owned();
    let starting: Vec<_> = dirs
        .iter()
        .cloned()
        .map(|d| {
            let url = url.clone();
            std::thread::spawn(move || Server::start_in(&d, &["--store", &url]))
        })
        .collect();
    let nodes: Vec<Server> = starting.into_iter().map(|t| t.join().unwrap()).collect();
    let audit_keys: Vec<Vec<u8>> = dirs
        .iter()
        .map(|d| std::fs::read(d.join("audit-signing-key.pub.der")).unwrap())
        .collect();
    assert!(
        audit_keys.iter().all(|k| *k == audit_keys[0]),
        "nodes started together made different audit signing keys"
    );
    let admins = dirs
        .iter()
        .filter(|d| d.join("admin-credentials").exists())
        .count();
    assert_eq!(admins, 1, "exactly one node creates the account's admin");
    drop(nodes);
}

fn deletions_audited(data_dir: &Path, key: &str) -> usize {
    let Ok(entries) = std::fs::read_dir(data_dir.join("audit")) else {
        return 0;
    };
    let mut n = 0;
    for e in entries {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "jsonl") {
            let text = std::fs::read_to_string(&p).unwrap_or_default();
            n += text
                .lines()
                .filter(|l| l.contains("\"DeleteKey\"") && l.contains(key))
                .count();
        }
    }
    n
}

#[tokio::test(flavor = "multi_thread")]
async fn sweeper_deletes_once_across_three_nodes() {
    let Some(cluster) = Cluster::start("sweeper_deletes_once", 3, &["--dev"]) else {
        return;
    };
    let kms = cluster.clients();
    let key = common::new_key_id(&kms[0]).await;
    kms[1]
        .schedule_key_deletion()
        .key_id(&key)
        .pending_window_in_days(7)
        .send()
        .await
        .unwrap();
    // Every node's clock passes the deletion date and every node sweeps, at once.
    let sweeps: Vec<_> = cluster
        .nodes
        .iter()
        .map(|n| tokio::spawn(common::advance_dev_clock(n.addr, 8 * 86_400)))
        .collect();
    for s in sweeps {
        s.await.unwrap();
    }
    for c in &kms {
        let e = c
            .describe_key()
            .key_id(&key)
            .send()
            .await
            .unwrap_err()
            .into_service_error();
        assert_eq!(error_code(&e), "NotFoundException");
    }
    // The audit writers are asynchronous for service events: wait for the record, then check
    // no other node wrote one.
    let count = || -> usize {
        (0..3)
            .map(|i| deletions_audited(&cluster.dir(i), &key))
            .sum()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while count() == 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(
        count(),
        1,
        "the deletion is audited once across the cluster"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_under_round_robin_load_loses_no_acknowledged_write() {
    let Some(mut cluster) = Cluster::start("sigkill_round_robin", 3, &[]) else {
        return;
    };
    let kms = Arc::new(cluster.clients());
    let acknowledged = Arc::new(Mutex::new(Vec::<(String, Vec<u8>)>::new()));
    let failures = Arc::new(Mutex::new(Vec::<(usize, String)>::new()));
    let counter = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..4 {
        let (kms, ack, failures, counter) = (
            kms.clone(),
            acknowledged.clone(),
            failures.clone(),
            counter.clone(),
        );
        workers.push(tokio::spawn(async move {
            for _ in 0..30 {
                let i = counter.fetch_add(1, Ordering::SeqCst);
                // Round robin: create on one node, encrypt on the next.
                let (a, b) = (i % 3, (i + 1) % 3);
                let key = match kms[a].create_key().send().await {
                    Ok(o) => o.key_metadata().unwrap().key_id().to_owned(),
                    Err(e) => {
                        failures.lock().unwrap().push((a, format!("{e:?}")));
                        continue;
                    }
                };
                match encrypt(&kms[b], &key).await {
                    Ok(ct) => ack.lock().unwrap().push((key, ct)),
                    Err(e) => failures.lock().unwrap().push((b, e)),
                }
            }
        }));
    }
    // Kill node 1 while the load runs.
    while counter.load(Ordering::SeqCst) < 30 {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    cluster.nodes[1].kill9();
    for w in workers {
        w.await.unwrap();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    let failures = failures.lock().unwrap().clone();
    // Node 1 served its share until it was killed.
    assert!(
        acknowledged.len() >= 30,
        "{} acknowledged",
        acknowledged.len()
    );
    // Errors only from the killed node.
    for (node, e) in &failures {
        assert_eq!(*node, 1, "a request to a live node failed: {e}");
    }
    // Every acknowledged key exists and every acknowledged ciphertext decrypts, on the
    // surviving nodes.
    for (n, (key, ct)) in acknowledged.iter().enumerate() {
        let node = if n % 2 == 0 { 0 } else { 2 };
        kms[node].describe_key().key_id(key).send().await.unwrap();
        let pt = kms[2 - node]
            .decrypt()
            .ciphertext_blob(Blob::new(ct.clone()))
            .send()
            .await
            .unwrap();
        assert_eq!(pt.plaintext().unwrap().as_ref(), b"hello");
    }
}

/// A TCP proxy to PostgreSQL that the test can cut (closing every connection) and restore on
/// the same port: a database outage and restart as kmsd sees it.
struct CuttableProxy {
    port: u16,
    tasks: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl CuttableProxy {
    async fn start(upstream: std::net::SocketAddr) -> CuttableProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let proxy = CuttableProxy {
            port,
            tasks: Arc::new(Mutex::new(Vec::new())),
        };
        proxy.serve(listener, upstream);
        proxy
    }

    fn serve(&self, listener: tokio::net::TcpListener, upstream: std::net::SocketAddr) {
        let tasks = self.tasks.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let conn = tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                tasks.lock().unwrap().push(conn);
            }
        });
        self.tasks.lock().unwrap().push(accept);
    }

    /// Closes the listener and every proxied connection.
    async fn cut(&self) {
        for t in self.tasks.lock().unwrap().drain(..) {
            t.abort();
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }

    /// Listens again on the same port.
    async fn restore(&self, upstream: std::net::SocketAddr) {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", self.port))
            .await
            .unwrap();
        self.serve(listener, upstream);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_database_outage_fails_requests_for_its_duration_only() {
    let Some(db) = ScratchDatabase::create_or_skip("database_outage") else {
        return;
    };
    // The scratch database's server, reached through a proxy the test can cut.
    let upstream: std::net::SocketAddr = "127.0.0.1:5432".parse().unwrap();
    if !db.url().contains("@127.0.0.1:5432/") {
        eprintln!("SKIPPED database_outage: needs PostgreSQL on 127.0.0.1:5432");
        return;
    }
    let proxy = CuttableProxy::start(upstream).await;
    let url = db
        .url()
        .replace("@127.0.0.1:5432/", &format!("@127.0.0.1:{}/", proxy.port))
        + "?statement_timeout_ms=1000";
    let server = Server::start(&["--store", &url, "--admin-listen", "127.0.0.1:0"]);
    let admin = common::admin_addr(&server);
    let kms = server.client();
    let key = common::new_key_id(&kms).await;
    encrypt(&kms, &key).await.unwrap();
    assert_eq!(common::get(admin, "/readyz").await.status, 200);

    proxy.cut().await;
    let started = std::time::Instant::now();
    let e = encrypt(&kms, &key).await.unwrap_err();
    assert!(e.starts_with("KMSInternalException"), "{e}");
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    let ready = common::get(admin, "/readyz").await;
    assert_eq!(ready.status, 503);
    assert!(
        ready.json()["storage"]
            .as_str()
            .unwrap()
            .starts_with("error"),
        "{:?}",
        ready.json()
    );

    // The database is back: kmsd serves again by itself.
    proxy.restore(upstream).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match encrypt(&kms, &key).await {
            Ok(_) => break,
            Err(e) => assert!(std::time::Instant::now() < deadline, "never recovered: {e}"),
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(common::get(admin, "/readyz").await.status, 200);
    common::new_key_id(&kms).await;
}

/// Two nodes on one database, each with `extra` flags and the environment `vars`; node 0 on
/// `first_dir` (a lab's data dir), node 1 beside it.
fn two_nodes(
    test: &str,
    first_dir: &Path,
    extra: &[&str],
    vars: &[(&str, &Path)],
) -> Option<Cluster> {
    let dirs = [first_dir.to_path_buf(), first_dir.with_file_name("node1")];
    Cluster::start_on(test, &dirs, extra, vars)
}

/// The error code of an Encrypt under `key` on a node, or "" when it succeeds.
async fn encrypt_error(kms: &aws_sdk_kms::Client, key: &str) -> String {
    match encrypt(kms, key).await {
        Ok(_) => String::new(),
        Err(e) => e.split(':').next().unwrap_or("").to_owned(),
    }
}

/// Decrypts on a node; the plaintext.
async fn decrypt(kms: &aws_sdk_kms::Client, ct: Vec<u8>) -> Vec<u8> {
    kms.decrypt()
        .ciphertext_blob(Blob::new(ct))
        .send()
        .await
        .unwrap()
        .plaintext()
        .unwrap()
        .as_ref()
        .to_vec()
}

/// How many `event` records the cluster audit logs of `nodes` hold for `cluster` (waiting up
/// to 10 s for at least `at_least`).
async fn hsm_events(nodes: &[Server], cluster: &str, event: &str, at_least: usize) -> usize {
    let needle = format!("\"eventName\":\"{event}\"");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let mut n = 0;
        for node in nodes {
            let dir = node.data_dir.join("hsm-audit").join(cluster);
            for f in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let text = std::fs::read_to_string(f.path()).unwrap_or_default();
                n += text.matches(&needle).count();
            }
        }
        if n >= at_least || std::time::Instant::now() > deadline {
            return n;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cloudhsm_key_store_connected_on_one_node_serves_on_the_other() {
    let lab = hsm_lab::HsmLab::new(&[("a", "a"), ("b", "b")]);
    let hsm_config = lab.hsm_config.to_str().unwrap().to_owned();
    let Some(mut cluster) = two_nodes(
        "a_cloudhsm_key_store_connected_on_one_node_serves_on_the_other",
        &lab.data,
        &["--hsm-config", &hsm_config],
        &[("SOFTHSM2_CONF", &lab.softhsm_conf)],
    ) else {
        return;
    };
    let kms = cluster.clients();
    let (hsm_cluster, anchor) = lab.cluster(&cluster.nodes[0], &["a", "b"], Some("kmsuser"));
    let store = hsm_lab::create_store(&kms[0], "ha", &hsm_cluster, &anchor).await;
    assert_eq!(hsm_lab::connect(&kms[0], &store).await.0, "CONNECTED");
    let key = hsm_lab::create_key(&kms[0], &store).await;

    // Node 1 serves the key at once (its own sessions, the password node 0 rotated once).
    let ct = encrypt(&kms[1], &key).await.unwrap();
    assert_eq!(decrypt(&kms[0], ct).await, b"hello");
    assert_eq!(
        hsm_events(&cluster.nodes, &hsm_cluster, "ChangePassword", 1).await,
        1
    );
    assert!(hsm_events(&cluster.nodes[1..], &hsm_cluster, "Login", 1).await >= 1);

    // A disconnect on node 0 holds on node 1 at once, as AWS answers for a disconnected store.
    hsm_lab::disconnect(&kms[0], &store).await;
    assert_eq!(
        encrypt_error(&kms[1], &key).await,
        "KMSInvalidStateException"
    );
    assert_eq!(hsm_lab::describe(&kms[1], &store).await.0, "DISCONNECTED");

    // Both nodes connecting at once rotate the password once: the second finds it CONNECTED.
    let (a, b) = tokio::join!(
        hsm_lab::connect(&kms[0], &store),
        hsm_lab::connect(&kms[1], &store)
    );
    assert_eq!((a.0.as_str(), b.0.as_str()), ("CONNECTED", "CONNECTED"));
    assert_eq!(
        hsm_events(&cluster.nodes, &hsm_cluster, "ChangePassword", 2).await,
        2
    );
    for k in &kms {
        let ct = encrypt(k, &key).await.unwrap();
        assert_eq!(decrypt(&kms[0], ct.clone()).await, b"hello");
        assert_eq!(decrypt(&kms[1], ct).await, b"hello");
    }

    // A node restarted while the store is CONNECTED serves its keys from its first request,
    // without rotating the password again.
    assert!(cluster.nodes[1].terminate());
    let dir = cluster.dir(1);
    cluster.nodes[1] = Server::start_in_env(
        &dir,
        &["--store", cluster.db.url(), "--hsm-config", &hsm_config],
        &[("SOFTHSM2_CONF", &lab.softhsm_conf)],
    );
    let restarted = cluster.clients().remove(1);
    let ct = encrypt(&restarted, &key).await.unwrap();
    assert_eq!(decrypt(&kms[0], ct).await, b"hello");
    // (Waits the full 10 s for a third rotation that must not come.)
    assert_eq!(
        hsm_events(&cluster.nodes, &hsm_cluster, "ChangePassword", 3).await,
        2
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_external_key_store_connected_on_one_node_serves_on_the_other() {
    let bin = xks_proxy::testkit::ensure_binary().unwrap();
    let proxy = xks_proxy::testkit::TestProxy::start(
        &bin,
        xks_proxy::testkit::TestProxyOptions::new(&["key-1"]),
    )
    .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let xks_config = xks_lab::write_xks_config(
        tmp.path(),
        "xks.toml",
        &proxy,
        &format!(
            "[[endpoint]]\nhost = \"localhost\"\naddress = \"{}\"\n",
            proxy.addr()
        ),
    );
    let Some(cluster) = two_nodes(
        "an_external_key_store_connected_on_one_node_serves_on_the_other",
        &tmp.path().join("node0"),
        &["--xks-config", xks_config.to_str().unwrap()],
        &[],
    ) else {
        return;
    };
    let kms = cluster.clients();
    let store = xks_lab::create_xks_store(&kms[0], &proxy, "ha-xks", "https://localhost")
        .await
        .unwrap();
    kms[0]
        .connect_custom_key_store()
        .custom_key_store_id(&store)
        .send()
        .await
        .unwrap();
    let key = xks_lab::create_key(&kms[0], &store, "key-1").await;

    let ct = encrypt(&kms[1], &key).await.unwrap();
    assert_eq!(decrypt(&kms[0], ct).await, b"hello");

    kms[0]
        .disconnect_custom_key_store()
        .custom_key_store_id(&store)
        .send()
        .await
        .unwrap();
    assert_eq!(
        encrypt_error(&kms[1], &key).await,
        "KMSInvalidStateException"
    );
    assert_eq!(
        xks_lab::store_state(&kms[1], &store).await.0,
        aws_sdk_kms::types::ConnectionStateType::Disconnected
    );
}
