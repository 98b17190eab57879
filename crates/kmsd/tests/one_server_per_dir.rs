//! One `kmsd serve` per data dir and audit dir: a second server is refused before it touches
//! anything, and a start that fails (a busy port) writes nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::Command;

use common::Server;

/// Runs a second `kmsd serve` to completion (it must fail); returns its stderr.
fn second_serve(data_dir: &Path, extra: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_kmsd"))
        .args(["serve", "--data-dir"])
        .arg(data_dir)
        .args(extra)
        .output()
        .unwrap();
    assert!(!out.status.success(), "the second server must not start");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Every file below `dir` with its size, sorted.
fn snapshot(dir: &Path) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let m = e.metadata().unwrap();
            if m.is_dir() {
                stack.push(e.path());
            } else {
                out.push((e.path().display().to_string(), m.len()));
            }
        }
    }
    out.sort();
    out
}

#[tokio::test]
async fn a_second_server_on_the_same_data_dir_or_audit_dir_is_refused_and_writes_nothing() {
    let server = Server::start(&[]);
    let kms = server.client();
    common::new_key_id(&kms).await;
    let audit_dir = server.data_dir.join("audit");
    // The running server signs its newest records within a second (a checkpoint, appended to
    // the trail): wait for it, so that the snapshot changes only if someone else writes.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while kms_audit::verify_dir(&audit_dir, None)
        .map(|r| r.unprotected_records)
        .unwrap_or(1)
        > 0
    {
        assert!(std::time::Instant::now() < deadline, "no checkpoint came");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let before = snapshot(&audit_dir);

    // Same data dir, another port.
    let err = second_serve(&server.data_dir, &["--listen", "127.0.0.1:0"]);
    assert!(err.contains("is already serving data dir"), "{err}");
    assert!(err.contains(&format!("pid {}", server.child.id())), "{err}");
    // Same data dir, the busy port (the case that used to append to the running trail).
    let err = second_serve(&server.data_dir, &["--listen", &server.addr.to_string()]);
    assert!(err.contains("is already serving data dir"), "{err}");
    // Another data dir, the same audit dir.
    let other = tempfile::tempdir().unwrap();
    let err = {
        let out = Command::new(env!("CARGO_BIN_EXE_kmsd"))
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(other.path().join("data2"))
            .arg("--audit-dir")
            .arg(&audit_dir)
            .output()
            .unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    assert!(err.contains("is already serving audit dir"), "{err}");

    // The running server's trail is untouched and it keeps serving.
    assert_eq!(snapshot(&audit_dir), before);
    kms.list_keys().send().await.unwrap();
}

#[tokio::test]
async fn a_start_that_cannot_bind_writes_no_key_database_or_audit_record() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().to_string();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let err = second_serve(&dir, &["--listen", &port]);
    assert!(err.contains("binding"), "{err}");
    let files: Vec<String> = snapshot(&dir)
        .into_iter()
        .map(|(p, _)| p.trim_start_matches(&dir.display().to_string()).to_owned())
        .collect();
    assert_eq!(
        files,
        vec!["/.kmsd.lock".to_owned(), "/audit/.kmsd.lock".to_owned()],
        "only the lock files"
    );
    // And the directory is usable by the next (successful) start.
    drop(busy);
    let server = Server::start_in(&dir, &[]);
    common::new_key_id(&server.client()).await;
}
