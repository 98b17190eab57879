//! Nothing acknowledged is lost: SIGKILL right after acknowledged writes, restart, check.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::Tag;
use common::Server;

#[tokio::test]
async fn acknowledged_writes_survive_sigkill() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let mut server = Server::start_in(&dir, &[]);
    let kms = server.client();

    // Concurrent writers, each remembering what the server acknowledged.
    let mut tasks = Vec::new();
    for i in 0..8 {
        let kms = kms.clone();
        tasks.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for j in 0..5 {
                let id = kms
                    .create_key()
                    .description(format!("k{i}-{j}"))
                    .send()
                    .await
                    .unwrap()
                    .key_metadata()
                    .unwrap()
                    .key_id()
                    .to_owned();
                let alias = format!("alias/a{i}-{j}");
                kms.create_alias()
                    .alias_name(&alias)
                    .target_key_id(&id)
                    .send()
                    .await
                    .unwrap();
                kms.tag_resource()
                    .key_id(&id)
                    .tags(
                        Tag::builder()
                            .tag_key("n")
                            .tag_value(format!("{i}-{j}"))
                            .build()
                            .unwrap(),
                    )
                    .send()
                    .await
                    .unwrap();
                let ct = kms
                    .encrypt()
                    .key_id(&alias)
                    .plaintext(Blob::new(format!("secret {i}-{j}").into_bytes()))
                    .send()
                    .await
                    .unwrap()
                    .ciphertext_blob()
                    .unwrap()
                    .clone();
                acked.push((id, alias, format!("{i}-{j}"), ct));
            }
            acked
        }));
    }
    let mut acked = Vec::new();
    for t in tasks {
        acked.extend(t.await.unwrap());
    }
    server.kill9();

    let server = Server::start_in(&dir, &[]);
    let kms = server.client();
    for (id, alias, n, ct) in &acked {
        let d = kms.describe_key().key_id(alias).send().await.unwrap();
        assert_eq!(d.key_metadata().unwrap().key_id(), id);
        let tags = kms.list_resource_tags().key_id(id).send().await.unwrap();
        assert_eq!(tags.tags()[0].tag_value(), n);
        let pt = kms
            .decrypt()
            .ciphertext_blob(ct.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(
            pt.plaintext().unwrap().as_ref(),
            format!("secret {n}").as_bytes()
        );
    }
    assert_eq!(acked.len(), 40);
}

#[tokio::test]
async fn sigterm_stops_cleanly_and_data_stays_sealed() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let mut server = Server::start_in(&dir, &[]);
    let kms = server.client();
    let id = common::new_key_id(&kms).await;
    let secret = b"plaintext-marker-8c1f".to_vec();
    kms.encrypt()
        .key_id(&id)
        .plaintext(Blob::new(secret.clone()))
        .send()
        .await
        .unwrap();
    let dk = kms
        .generate_data_key()
        .key_id(&id)
        .number_of_bytes(32)
        .send()
        .await
        .unwrap();
    assert!(server.terminate(), "kmsd did not exit cleanly on SIGTERM");

    // Neither plaintexts nor the admin secret appear in the database, raw or in hex.
    let (admin_akid, admin_secret) = server.admin_credentials();
    let contents = database_contents(&dir);
    // (What was read is the database: it names the admin's access key id.)
    assert!(contents.iter().any(|(_, bytes)| bytes
        .windows(admin_akid.len())
        .any(|w| w == admin_akid.as_bytes())));
    for (name, bytes) in contents {
        for needle in [
            &secret[..],
            dk.plaintext().unwrap().as_ref(),
            admin_secret.as_bytes(),
        ] {
            let hexed = hex::encode(needle);
            for n in [needle, hexed.as_bytes()] {
                assert!(
                    !bytes.windows(n.len()).any(|w| w == n),
                    "{name} holds a secret in clear"
                );
            }
        }
    }
}

/// What the database of the server on `dir` holds: its SQLite files, or a `pg_dump` of its
/// PostgreSQL database (`KMSD_TEST_STORE=postgres`).
fn database_contents(dir: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    if let Some(dump) = common::postgres_dump(dir) {
        return vec![("the PostgreSQL database".into(), dump)];
    }
    let files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("kmsd.sqlite3")
        })
        .map(|p| (p.display().to_string(), std::fs::read(&p).unwrap()))
        .collect();
    assert!(!files.is_empty(), "no database file in {}", dir.display());
    files
}

/// SIGTERM while a request is in flight (its body half sent): kmsd keeps serving it, answers it
/// in full, and only then exits cleanly.
#[tokio::test]
async fn sigterm_drains_an_in_flight_request() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut server = Server::start(&[]);
    let kms = server.client();
    let key = common::new_key_id(&kms).await;
    let (akid, secret) = server.admin_credentials();
    let body = format!(r#"{{"KeyId":"{key}","Plaintext":"aGVsbG8="}}"#);
    let mut headers = vec![
        ("host".to_owned(), server.addr.to_string()),
        (
            "content-type".to_owned(),
            "application/x-amz-json-1.1".to_owned(),
        ),
        ("x-amz-target".to_owned(), "TrentService.Encrypt".to_owned()),
    ];
    let parts = kmsd::sigv4::RequestParts {
        method: "POST",
        path: "/",
        query: "",
        headers: headers.clone(),
        body: body.as_bytes(),
    };
    headers.extend(
        kmsd::sigv4::sign(
            &parts,
            &akid,
            &secret,
            "us-east-1",
            "kms",
            common::now_secs(),
        )
        .unwrap(),
    );
    let mut head = String::from("POST / HTTP/1.1\r\n");
    for (n, v) in &headers {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    head.push_str(&format!(
        "content-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    ));
    let (first, rest) = body.as_bytes().split_at(body.len() / 2);

    let mut conn = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    conn.write_all(head.as_bytes()).await.unwrap();
    conn.write_all(first).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    std::process::Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(
        server.child.try_wait().unwrap().is_none(),
        "kmsd exited with a request in flight"
    );
    conn.write_all(rest).await.unwrap();
    let mut answer = Vec::new();
    conn.read_to_end(&mut answer).await.unwrap();
    let resp = common::parse_response(&answer).expect("a whole HTTP response");
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    assert!(resp.json()["CiphertextBlob"].is_string());
    // Then it stops, cleanly.
    let mut exited = None;
    for _ in 0..100 {
        if let Some(st) = server.child.try_wait().unwrap() {
            exited = Some(st);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(exited.expect("kmsd did not exit").success());
}

/// A client that never finishes its request headers (slowloris) is disconnected after the
/// 10-second header timeout instead of holding a connection forever.
#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_disconnected() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = Server::start(&[]);
    let mut conn = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    conn.write_all(b"POST / HTTP/1.1\r\nhost: kmsd\r\nx-amz-target: TrentService.ListKeys\r\n")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        conn.read_to_end(&mut answer),
    )
    .await;
    assert!(read.is_ok(), "the connection was still open after 20 s");
    // Closed by the header timeout, not refused at once.
    assert!(
        started.elapsed() >= std::time::Duration::from_secs(5),
        "closed after {:?}",
        started.elapsed()
    );
}
