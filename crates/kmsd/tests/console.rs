//! The web console end to end: its static files and headers, `--no-console`, the audit read API
//! it uses (`Kmsd.ReadAuditRecords`, authorised as `kmsd:ReadAudit`), and the console itself in
//! a real headless Chromium (console/tests/e2e.mjs, driven by playwright-core) against a real
//! kmsd: sign in, create a key, add an alias, encrypt/decrypt, sign/verify, edit a policy (a
//! malformed one shows kmsd's error), the audit records, a denied user seeing the denial.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "common/hsm_lab.rs"]
mod hsm_lab;

use std::path::PathBuf;
use std::process::Command;

use aws_sdk_kms::primitives::Blob;
use common::{get, kms_request, now_secs, Server};

fn admin(server: &Server, args: &[&str]) -> String {
    common::kmsd_admin(&server.data_dir, &server.store_args(), args)
}

/// A value of shared-credentials text.
fn cred_value(text: &str, k: &str) -> Option<String> {
    text.lines().find_map(|l| {
        l.strip_prefix(k)
            .map(|v| v.trim_start_matches([' ', '=']).trim().to_owned())
    })
}

/// (access key id, secret) from shared-credentials text.
fn creds(text: &str) -> (String, String) {
    (
        cred_value(text, "aws_access_key_id").unwrap(),
        cred_value(text, "aws_secret_access_key").unwrap(),
    )
}

/// A user of account 111122223333 with an access key and no policy.
fn user_without_permissions(server: &Server, name: &str) -> (String, String) {
    let arn = admin(
        server,
        &["create-user", "--account-id", "111122223333", name],
    )
    .trim()
    .to_owned();
    creds(&admin(server, &["create-access-key", &arn]))
}

/// `Kmsd.ReadAuditRecords` signed with `who`: (status, JSON body).
async fn read_audit(server: &Server, who: (&str, &str), body: &str) -> (u16, serde_json::Value) {
    let r = kms_request(
        server.addr,
        "Kmsd.ReadAuditRecords",
        body,
        Some(who),
        now_secs(),
    )
    .await;
    (r.status, r.json())
}

fn event_names(body: &serde_json::Value) -> Vec<String> {
    body["Records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["eventName"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test]
async fn the_console_is_served_with_a_strict_csp_and_off_with_no_console() {
    let server = Server::start(&[]);
    let index = get(server.addr, "/console/").await;
    assert_eq!(index.status, 200);
    assert_eq!(
        index.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    let csp = index.header("content-security-policy").unwrap();
    for directive in [
        "default-src 'self'",
        "script-src 'self'",
        "connect-src 'self'",
        "frame-ancestors 'none'",
        "object-src 'none'",
    ] {
        assert!(csp.contains(directive), "{directive} missing from {csp}");
    }
    assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"));
    assert_eq!(index.header("x-content-type-options"), Some("nosniff"));
    let html = String::from_utf8(index.body).unwrap();
    assert!(html.contains("./assets/console.js"), "{html}");
    let js = get(server.addr, "/console/assets/console.js").await;
    assert_eq!(js.status, 200);
    assert!(js
        .header("content-type")
        .unwrap()
        .starts_with("text/javascript"));
    assert!(js.header("content-security-policy").is_some());
    let redirect = get(server.addr, "/console").await;
    assert_eq!(redirect.status, 308);
    assert_eq!(redirect.header("location"), Some("/console/"));
    assert_eq!(get(server.addr, "/console/nope.js").await.status, 404);
    assert_eq!(get(server.addr, "/console/../Cargo.toml").await.status, 404);

    let off = Server::start(&["--no-console"]);
    let r = get(off.addr, "/console/").await;
    assert_ne!(r.status, 200);
    assert!(r.header("content-security-policy").is_none());
    assert!(!String::from_utf8_lossy(&r.body).contains("<html"));
}

#[tokio::test]
async fn the_audit_read_api_is_authorised_scoped_to_the_account_and_bounded() {
    let server = Server::start(&[]);
    let kms = server.client();
    let key = common::new_key_id(&kms).await;
    kms.encrypt()
        .key_id(&key)
        .plaintext(Blob::new("x"))
        .send()
        .await
        .unwrap();
    let bad = kms
        .decrypt()
        .ciphertext_blob(Blob::new(vec![1u8; 64]))
        .send()
        .await;
    assert!(bad.is_err());
    let (a_id, a_secret) = server.admin_credentials();
    let admin_creds = (a_id.as_str(), a_secret.as_str());

    // The admin reads the newest records, newest first, filtered by key, event and error.
    let (status, all) = read_audit(&server, admin_creds, "{}").await;
    assert_eq!(status, 200, "{all}");
    let names = event_names(&all);
    let decrypt_at = names.iter().position(|n| n == "Decrypt").unwrap();
    let encrypt_at = names.iter().position(|n| n == "Encrypt").unwrap();
    assert!(decrypt_at < encrypt_at, "not newest first: {names:?}");
    let (_, by_key) = read_audit(&server, admin_creds, &format!(r#"{{"KeyId":"{key}"}}"#)).await;
    assert!(event_names(&by_key)
        .iter()
        .all(|n| n == "Encrypt" || n == "CreateKey"));
    assert!(event_names(&by_key).contains(&"Encrypt".to_owned()));
    let (_, errors) = read_audit(&server, admin_creds, r#"{"ErrorCode":"*"}"#).await;
    assert_eq!(event_names(&errors), vec!["Decrypt"]);
    let (_, changes) = read_audit(
        &server,
        admin_creds,
        r#"{"ExcludeEventNames":["Encrypt","Decrypt","ReadAuditRecords"]}"#,
    )
    .await;
    assert_eq!(event_names(&changes), vec!["CreateKey"]);
    let (_, limited) = read_audit(&server, admin_creds, r#"{"Limit":1}"#).await;
    assert_eq!(limited["Records"].as_array().unwrap().len(), 1);
    // The read itself is audited.
    let (_, reads) = read_audit(
        &server,
        admin_creds,
        r#"{"EventName":"ReadAuditRecords","Limit":500}"#,
    )
    .await;
    assert!(event_names(&reads).len() >= 4, "{reads}");

    // Bounded: more than 500 records per call is refused.
    let (status, body) = read_audit(&server, admin_creds, r#"{"Limit":501}"#).await;
    assert_eq!(status, 400);
    assert_eq!(body["__type"], "ValidationException");
    let (status, body) = read_audit(&server, admin_creds, r#"{"Bogus":1}"#).await;
    assert_eq!(status, 400, "{body}");
    let other = kms_request(
        server.addr,
        "Kmsd.DeleteAuditRecords",
        "{}",
        Some(admin_creds),
        now_secs(),
    )
    .await;
    assert_eq!(other.status, 400);
    assert_eq!(other.json()["__type"], "UnknownOperationException");

    // A user without kmsd:ReadAudit is denied (and the denial is audited)...
    let (u_id, u_secret) = user_without_permissions(&server, "auditor");
    let (status, body) = read_audit(&server, (&u_id, &u_secret), "{}").await;
    assert_eq!(status, 400);
    assert_eq!(body["__type"], "AccessDeniedException");
    assert!(
        body["message"].as_str().unwrap().contains("kmsd:ReadAudit"),
        "{body}"
    );
    let (_, denied) = read_audit(
        &server,
        admin_creds,
        r#"{"ErrorCode":"AccessDeniedException","Principal":"arn:aws:iam::111122223333:user/auditor"}"#,
    )
    .await;
    assert_eq!(event_names(&denied), vec!["ReadAuditRecords"]);
    // ...until an identity policy grants it; kms:* does not.
    admin(
        &server,
        &[
            "put-policy",
            "arn:aws:iam::111122223333:user/auditor",
            "kms-all",
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"kms:*","Resource":"*"}]}"#,
        ],
    );
    // (kmsd reads identity policies through a one-second cache: wait until kms:* is live.)
    let user_kms = server.client_with(&u_id, &u_secret, "us-east-1");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while user_kms.list_keys().send().await.is_err() {
        assert!(std::time::Instant::now() < deadline, "kms:* never applied");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let (status, body) = read_audit(&server, (&u_id, &u_secret), "{}").await;
    assert_eq!(status, 400);
    assert_eq!(body["__type"], "AccessDeniedException");
    admin(
        &server,
        &[
            "put-policy",
            "arn:aws:iam::111122223333:user/auditor",
            "read-audit",
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"kmsd:ReadAudit","Resource":"*"}]}"#,
        ],
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let body = loop {
        let (status, body) = read_audit(&server, (&u_id, &u_secret), "{}").await;
        if status == 200 {
            break body;
        }
        assert!(std::time::Instant::now() < deadline, "{body}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert!(event_names(&body).contains(&"Encrypt".to_owned()));

    // Another account's admin sees only its own account's records.
    let (c_id, c_secret) = creds(&admin(&server, &["create-account", "444455556666"]));
    common::new_key_id(&server.client_with(&c_id, &c_secret, "us-east-1")).await;
    let (status, body) = read_audit(&server, (&c_id, &c_secret), "{}").await;
    assert_eq!(status, 200, "{body}");
    let accounts: Vec<&str> = body["Records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["recipientAccountId"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(event_names(&body), vec!["CreateKey"]);
    assert!(
        accounts.iter().all(|a| *a == "444455556666"),
        "{accounts:?}"
    );
}

fn console_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../console")
}

/// Runs `console/tests/e2e.mjs SCENARIO` against `server` with the admin's credentials and
/// `vars`; fails the test with the script's output unless every step passed.
fn run_browser_scenario(server: &Server, scenario: &str, vars: &[(&str, &str)]) {
    run_browser_scenario_at(
        server,
        &format!("{}/console/", server.endpoint()),
        scenario,
        vars,
    );
}

/// [`run_browser_scenario`] with the console at `url`.
fn run_browser_scenario_at(server: &Server, url: &str, scenario: &str, vars: &[(&str, &str)]) {
    let dir = console_dir();
    assert!(
        dir.join("node_modules/playwright-core").is_dir(),
        "console/node_modules is missing: run `npm ci` in console/ (scripts/test.sh does)"
    );
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_owned());
    assert!(
        std::path::Path::new(&chromium).exists(),
        "{chromium} is missing: `apt-get install chromium` (scripts/test.sh does)"
    );
    let (a_id, a_secret) = server.admin_credentials();
    let out = Command::new("node")
        .arg(dir.join("tests/e2e.mjs"))
        .arg(scenario)
        .current_dir(&dir)
        .env("KMSD_CONSOLE_URL", url)
        .env("KMSD_ADMIN_ACCESS_KEY_ID", &a_id)
        .env("KMSD_ADMIN_SECRET_ACCESS_KEY", &a_secret)
        .env("CHROMIUM", &chromium)
        .envs(vars.iter().copied())
        .output()
        .expect("node must be installed (scripts/test.sh installs it)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("all steps passed"),
        "console e2e ({scenario}) failed\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
    );
}

/// The console in Debian's Chromium, headless, against a real kmsd (console/tests/e2e.mjs).
/// Needs node, `npm ci` in console/ and /usr/bin/chromium: scripts/test.sh installs them. With
/// `KMSD_CONSOLE_SCREENSHOTS=DIR` the script also writes screenshots of the main pages there.
#[test]
fn the_console_works_in_a_real_browser() {
    let server = Server::start(&[]);
    let (d_id, d_secret) = user_without_permissions(&server, "viewer");
    // Temporary credentials: a role the viewer may assume, allowed to list and describe keys.
    let role = admin(
        &server,
        &[
            "create-role",
            "--account-id",
            "111122223333",
            "--trust",
            "arn:aws:iam::111122223333:user/viewer",
            "console-role",
        ],
    )
    .trim()
    .to_owned();
    admin(
        &server,
        &[
            "put-policy",
            &role,
            "read-keys",
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["kms:ListKeys","kms:ListAliases","kms:DescribeKey"],"Resource":"*"}]}"#,
        ],
    );
    let session = admin(
        &server,
        &[
            "assume-role",
            &role,
            "console-session",
            "--as",
            "arn:aws:iam::111122223333:user/viewer",
        ],
    );
    let (t_id, t_secret) = creds(&session);
    let t_token = cred_value(&session, "aws_session_token").unwrap();
    run_browser_scenario(
        &server,
        "keys",
        &[
            ("KMSD_DENIED_ACCESS_KEY_ID", &d_id),
            ("KMSD_DENIED_SECRET_ACCESS_KEY", &d_secret),
            ("KMSD_TEMP_ACCESS_KEY_ID", &t_id),
            ("KMSD_TEMP_SECRET_ACCESS_KEY", &t_secret),
            ("KMSD_TEMP_SESSION_TOKEN", &t_token),
        ],
    );

    // What the browser did is in kmsd's audit trail like any SDK call: the admin's calls,
    // and the viewer's denied CreateKey.
    let trail = server.data_dir.join("audit");
    let records = kms_audit::query(&trail, &kms_audit::QueryFilter::default()).unwrap();
    let by = |principal: &str, event: &str| {
        records.iter().any(|r| {
            r["userIdentity"]["arn"]
                .as_str()
                .unwrap_or_default()
                .ends_with(principal)
                && r["eventName"] == event
        })
    };
    assert!(by("user/admin", "CreateAlias"));
    assert!(by("user/admin", "Decrypt"));
    assert!(records.iter().any(|r| {
        r["userIdentity"]["arn"]
            .as_str()
            .unwrap_or_default()
            .ends_with("user/viewer")
            && r["eventName"] == "CreateKey"
            && r["errorCode"] == "AccessDeniedException"
    }));
}

/// The key store pages in the browser: kmsd serving two SoftHSM2 tokens as a CloudHSM cluster
/// (made with the `aws cloudhsmv2` CLI); the console lists the cluster and its HSMs, creates
/// and connects a CloudHSM key store, creates a key in it, encrypts and decrypts with it, and
/// disconnects the store.
#[test]
fn the_console_manages_a_cloudhsm_key_store() {
    let lab = hsm_lab::HsmLab::new(&[("a", "a"), ("b", "b")]);
    let server = lab.serve();
    let (cluster, anchor) = lab.cluster(&server, &["a", "b"], Some("kmsuser"));
    run_browser_scenario(
        &server,
        "key-stores",
        &[
            ("KMSD_CLUSTER_ID", &cluster),
            ("KMSD_TRUST_ANCHOR", &anchor),
            ("KMSD_KMSUSER_PASSWORD", "kmsPswd123"),
        ],
    );
}

/// The console over HTTPS: browsers speak HTTP/2 to kmsd there, without a `Host` header (SigV4
/// is checked against `:authority`), from a secure context.
#[test]
fn the_console_works_over_tls_and_http2() {
    let tmp = tempfile::tempdir().unwrap();
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .unwrap();
    let (cert_path, key_path) = (tmp.path().join("cert.pem"), tmp.path().join("key.pem"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, signing_key.serialize_pem()).unwrap();
    let server = Server::start(&[
        "--tls-cert",
        cert_path.to_str().unwrap(),
        "--tls-key",
        key_path.to_str().unwrap(),
    ]);
    run_browser_scenario_at(
        &server,
        &format!("https://{}/console/", server.addr),
        "tls",
        &[],
    );
}

/// The external key store pages in the browser, against our xks-proxy over TLS (SoftHSM2
/// behind it): create the store, connect it, create a key backed by an external key, encrypt
/// and decrypt through the proxy, disconnect.
#[test]
fn the_console_manages_an_external_key_store() {
    use xks_proxy::testkit::{self, TestProxy, TestProxyOptions};
    let bin = testkit::ensure_binary().unwrap();
    let proxy = TestProxy::start(&bin, TestProxyOptions::new(&["key-1"])).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let xks_config = tmp.path().join("xks.toml");
    std::fs::write(
        &xks_config,
        format!(
            "ca_bundle = \"{}\"\n[[endpoint]]\nhost = \"localhost\"\naddress = \"{}\"\n",
            proxy.ca_pem().display(),
            proxy.addr()
        ),
    )
    .unwrap();
    let server = Server::start(&["--xks-config", xks_config.to_str().unwrap()]);
    let (akid, secret) = proxy.credential();
    run_browser_scenario(
        &server,
        "external-key-store",
        &[
            ("KMSD_XKS_ENDPOINT", "https://localhost"),
            ("KMSD_XKS_PATH", &proxy.uri_path()),
            ("KMSD_XKS_ACCESS_KEY_ID", &akid),
            ("KMSD_XKS_SECRET", &secret),
            ("KMSD_XKS_KEY_ID", "key-1"),
        ],
    );
}
