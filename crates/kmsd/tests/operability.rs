//! Config file, health/readiness/metrics on the admin listener, structured logs with request
//! ids and SIGHUP log-level reload, process hygiene.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;
use std::time::Duration;

use common::{admin_addr, get, Server};

#[tokio::test]
async fn config_file_admin_endpoints_and_json_logs() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("kmsd.toml");
    std::fs::write(&cfg, "account_id = \"444455556666\"\nadmin_listen = \"127.0.0.1:0\"\nlog_format = \"json\"\nlog_level = \"info\"\n").unwrap();
    let server = Server::start(&["--config", cfg.to_str().unwrap()]);
    let kms = server.client();
    let k = kms.create_key().send().await.unwrap();
    assert_eq!(
        k.key_metadata().unwrap().aws_account_id(),
        Some("444455556666"),
        "account_id from the config file"
    );
    let _ = kms
        .describe_key()
        .key_id("1234abcd-12ab-34cd-56ef-1234567890ab")
        .send()
        .await
        .unwrap_err();

    let admin = admin_addr(&server);
    let h = get(admin, "/healthz").await;
    assert_eq!(h.status, 200);
    let r = get(admin, "/readyz").await;
    assert_eq!(r.status, 200, "{:?}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["storage"], "ok");
    assert_eq!(r.json()["audit"], "ok");
    let m = String::from_utf8(get(admin, "/metrics").await.body).unwrap();
    assert!(
        m.contains("kmsd_requests_total{operation=\"CreateKey\",error=\"\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("kmsd_requests_total{operation=\"DescribeKey\",error=\"NotFoundException\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("kmsd_request_duration_seconds_bucket{le="),
        "{m}"
    );
    assert!(m.contains("kmsd_audit_pending_records"), "{m}");

    // JSON log lines (the level is info here: no per-request lines, but the start-up lines).
    let log = server.log.lock().unwrap().clone();
    let json_lines: Vec<serde_json::Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert!(
        json_lines.iter().any(|v| v["fields"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("audit signing key"))),
        "{log}"
    );

    // The log level is re-read from the config file on SIGHUP: debug adds one line per request
    // with its request id.
    std::fs::write(&cfg, "account_id = \"444455556666\"\nadmin_listen = \"127.0.0.1:0\"\nlog_format = \"json\"\nlog_level = \"debug\"\n").unwrap();
    Command::new("kill")
        .args(["-HUP", &server.child.id().to_string()])
        .status()
        .unwrap();
    let mut reloaded = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if server.log.lock().unwrap().contains("log level reloaded") {
            reloaded = true;
            break;
        }
    }
    assert!(reloaded);
    kms.list_keys().send().await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let log = server.log.lock().unwrap().clone();
    let request_line = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["fields"]["op"] == "ListKeys")
        .expect("a debug line for the ListKeys request");
    assert_eq!(
        request_line["fields"]["request_id"].as_str().unwrap().len(),
        36
    );
}

#[test]
fn config_check() {
    let tmp = tempfile::tempdir().unwrap();
    let good = tmp.path().join("good.toml");
    std::fs::write(
        &good,
        format!(
            "listen = \"127.0.0.1:4599\"\ndata_dir = \"{}\"\naudit_durability = \"buffered\"\n",
            tmp.path().join("d").display()
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_kmsd"))
        .args(["config", "check", "--config", good.to_str().unwrap()])
        .env_remove("KMSD_LISTEN")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("configuration ok") && text.contains("audit_durability = \"buffered\""),
        "{text}"
    );

    let bad = tmp.path().join("bad.toml");
    std::fs::write(&bad, "lisen = \"127.0.0.1:1\"\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_kmsd"))
        .args(["config", "check", "--config", bad.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown key 'lisen'"));

    let exposed = tmp.path().join("exposed.toml");
    std::fs::write(&exposed, "listen = \"0.0.0.0:4599\"\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_kmsd"))
        .args(["config", "check", "--config", exposed.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "plain HTTP on a public address must be refused"
    );
}

#[tokio::test]
async fn no_core_dumps_and_locked_memory() {
    let server = Server::start(&[]);
    server.client().list_keys().send().await.unwrap();
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", server.child.id())).unwrap();
    let core = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .unwrap();
    assert!(
        core.split_whitespace().filter(|w| *w == "0").count() >= 2,
        "{core}"
    );
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.child.id())).unwrap();
    let locked = status.lines().find(|l| l.starts_with("VmLck:")).unwrap();
    let log = server.log.lock().unwrap().clone();
    // Locking needs CAP_IPC_LOCK or a high RLIMIT_MEMLOCK; where it fails kmsd says so.
    assert!(
        !locked.contains(" 0 kB") || log.contains("could not lock memory"),
        "{locked}\n{log}"
    );
}
