//! The CloudHSM crypto user's whole life with SoftHSM2 tokens, following AWS's guide: only
//! `kmsuser` connects, a wrong user is deleted and re-created, a lockout is lifted by a password
//! change, users made while kmsd serves (with other stores connected) are seen at once, and a
//! restart without the HSM declaration leaves no store claiming to be CONNECTED.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "common/hsm_lab.rs"]
mod hsm_lab;

use std::time::{Duration, Instant};

use hsm_lab::{connect, create_store, describe, disconnect, set_store_password, HsmLab};

fn failed(code: &str) -> (String, Option<String>) {
    ("FAILED".to_owned(), Some(code.to_owned()))
}

#[tokio::test]
async fn crypto_user_lifecycle() {
    let lab = HsmLab::new(&[("a", "a")]);
    let mut server = lab.serve();
    let kms = server.client();
    // A crypto user named otherwise than kmsuser...
    let (cluster, anchor) = lab.cluster(&server, &["a"], Some("cryptouser"));
    // (A token created and declared after kmsd opened the PKCS#11 module, while no store is
    // connected, is usable.)
    lab.init_token("hsm-b");
    let declared = std::fs::read_to_string(&lab.hsm_config).unwrap() + &lab.hsm_entry("b", "b");
    std::fs::write(&lab.hsm_config, declared).unwrap();
    let h = lab.create_hsm(&server, &cluster, "b");
    assert_eq!(h["State"], "ACTIVE", "{h}");
    // ...cannot connect a store.
    let (ok, out) = lab.hsm("list-users", &cluster, &[]);
    assert!(
        ok && out.contains("\"cryptouser\"") && out.contains("\"crypto-user\""),
        "{out}"
    );
    // (The trust anchor is exactly one certificate: customerCA.crt with another appended is
    // refused, as AWS does.)
    let err = kms
        .create_custom_key_store()
        .custom_key_store_name("two-anchors")
        .cloud_hsm_cluster_id(&cluster)
        .trust_anchor_certificate(format!("{anchor}{anchor}"))
        .key_store_password("kmsPswd123")
        .send()
        .await
        .unwrap_err();
    assert!(
        err.as_service_error()
            .unwrap()
            .is_incorrect_trust_anchor_exception(),
        "{err:?}"
    );
    let store = create_store(&kms, "store", &cluster, &anchor).await;
    assert_eq!(connect(&kms, &store).await, failed("USER_NOT_FOUND"));
    disconnect(&kms, &store).await;

    // The guide's remedy: delete it, create kmsuser.
    let (ok, out) = lab.hsm("delete-user", &cluster, &["cryptouser"]);
    assert!(ok, "{out}");
    let (ok, out) = lab.hsm("create-user", &cluster, &["kmsuser", "kmsPswd123"]);
    assert!(ok, "{out}");
    assert_eq!(connect(&kms, &store).await.0, "CONNECTED");
    // While the store is connected kmsd is logged in as kmsuser: no change, no deletion.
    let (ok, out) = lab.hsm("change-password", &cluster, &["kmsuser", "newPswd456"]);
    assert!(!ok && out.contains("logged in"), "{out}");
    let (ok, out) = lab.hsm("delete-user", &cluster, &["kmsuser"]);
    assert!(!ok && out.contains("logged in"), "{out}");
    disconnect(&kms, &store).await;

    // Five wrong passwords lock kmsuser out; then even the right one fails...
    set_store_password(&kms, &store, "wrongPw123").await;
    for _ in 0..5 {
        assert_eq!(connect(&kms, &store).await, failed("INVALID_CREDENTIALS"));
        disconnect(&kms, &store).await;
    }
    set_store_password(&kms, &store, "kmsPswd123").await;
    assert_eq!(connect(&kms, &store).await, failed("USER_LOCKED_OUT"));
    disconnect(&kms, &store).await;
    let (_, out) = lab.hsm("list-users", &cluster, &[]);
    assert!(out.contains("\"locked\": true"), "{out}");
    // ...until the admin sets a new password, which the store is then given.
    let (ok, out) = lab.hsm("change-password", &cluster, &["kmsuser", "newPswd456"]);
    assert!(ok, "{out}");
    set_store_password(&kms, &store, "newPswd456").await;
    assert_eq!(connect(&kms, &store).await.0, "CONNECTED");

    // A management session needs an existing cluster (and does not block then).
    let mut login = std::process::Command::new(env!("CARGO_BIN_EXE_kmsd"))
        .args(["hsm", "login", "--data-dir", lab.data.to_str().unwrap()])
        .args(common::store_args_of(&lab.data))
        .args(["--cluster-id", "cluster-nope"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(st) = login.try_wait().unwrap() {
            break st;
        }
        if Instant::now() > deadline {
            let _ = login.kill();
            panic!("kmsd hsm login --cluster-id cluster-nope blocked");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let out = login.wait_with_output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(!status.success() && !text.contains("logged in"), "{text}");
    assert!(text.contains("cluster-nope not found"), "{text}");

    // Restarted without --hsm-config: the store is not connected and says so.
    assert!(server.terminate());
    let server = common::Server::start_in(&lab.data, &[]);
    let kms = server.client();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = describe(&kms, &store).await;
        if s == failed("NETWORK_ERRORS") {
            break;
        }
        assert!(Instant::now() < deadline, "still {s:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(server);

    // Every user operation is in the cluster's own log, and no password is.
    let log = lab.cluster_log(&cluster);
    for event in [
        "CreateUser",
        "ListUsers",
        "DeleteUser",
        "ChangeUserPassword",
    ] {
        assert!(
            log.contains(&format!("\"eventName\":\"{event}\"")),
            "no {event} in the cluster log:\n{log}"
        );
    }
    assert!(
        log.contains("logged in"),
        "the refusals are recorded:\n{log}"
    );
    for secret in ["kmsPswd123", "newPswd456"] {
        assert!(!log.contains(secret), "a password reached the cluster log");
    }
}

#[tokio::test]
async fn users_made_while_serving_are_seen_at_once() {
    let lab = HsmLab::new(&[("a", "a"), ("b", "b"), ("c", "a"), ("d", "b"), ("e", "c")]);
    let server = lab.serve();
    let kms = server.client();
    // A connected store keeps sessions open on the PKCS#11 module throughout.
    let (first, anchor) = lab.cluster(&server, &["a", "b"], Some("kmsuser"));
    let store = create_store(&kms, "first", &first, &anchor).await;
    assert_eq!(connect(&kms, &store).await.0, "CONNECTED");

    // A second cluster gets its crypto user while kmsd serves...
    let (second, anchor2) = lab.cluster(&server, &["a", "b"], Some("kmsuser"));
    // ...an HSM added to it (no store yet) receives that user...
    let h = lab.create_hsm(&server, &second, "c");
    assert_eq!(h["State"], "ACTIVE", "{h}");
    // ...and a store on it connects with the password create-user set.
    let store2 = create_store(&kms, "second", &second, &anchor2).await;
    assert_eq!(connect(&kms, &store2).await.0, "CONNECTED");
}
