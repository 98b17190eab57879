//! `kmsd k8s-kms-plugin`: a gRPC client generated from the same KMS v2 proto drives the plugin,
//! over its Unix socket, against a real kmsd.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod k8s_support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use common::Server;
use k8s_kms_plugin::proto::EncryptRequest;
use k8s_support::{connect, decrypt, encrypt, plugin_command, start_plugin, status};
use serde_json::Value;

fn audit_records(data_dir: &Path) -> Vec<Value> {
    let out = Command::new(env!("CARGO_BIN_EXE_kmsd"))
        .args(["audit", "query"])
        .arg(data_dir.join("audit"))
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

async fn create_key_with_alias(kms: &aws_sdk_kms::Client, alias: &str) -> String {
    let arn = kms
        .create_key()
        .send()
        .await
        .unwrap()
        .key_metadata()
        .unwrap()
        .arn()
        .unwrap()
        .to_owned();
    kms.create_alias()
        .alias_name(alias)
        .target_key_id(&arn)
        .send()
        .await
        .unwrap();
    arn
}

#[tokio::test]
async fn status_round_trips_audit_uid_and_rotation() {
    let server = Server::start(&[]);
    let kms = server.client();
    let arn = create_key_with_alias(&kms, "alias/k8s-secrets").await;
    let plugin = start_plugin(
        &server,
        &["--key-id", "alias/k8s-secrets", "--cluster-name", "prod-eu"],
    );
    let mode = std::fs::metadata(&plugin.socket)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "socket mode {mode:o}");
    let mut client = connect(&plugin.socket).await;

    let st = status(&mut client).await;
    assert_eq!((st.version.as_str(), st.healthz.as_str()), ("v2", "ok"));
    assert!(st.key_id.starts_with(&format!("{arn}@")), "{}", st.key_id);

    let uid = "5f0c2d1e-7a6b-4c3d-9e8f-0a1b2c3d4e5f";
    let (ciphertext, key_id) = encrypt(&mut client, b"a DEK seed", uid).await;
    assert_eq!(key_id, st.key_id);
    assert_eq!(
        decrypt(&mut client, &ciphertext, &key_id).await.unwrap(),
        b"a DEK seed"
    );

    // The uid is in kmsd's audit record of that Encrypt; the encryption context names the cluster.
    let records = audit_records(&server.data_dir);
    let record = records
        .iter()
        .find(|r| {
            r["eventName"] == "Encrypt"
                && r["userAgent"]
                    .as_str()
                    .is_some_and(|ua| ua.contains(&format!("app/k8s-kms.uid.{uid}")))
        })
        .unwrap_or_else(|| panic!("no Encrypt record with the uid in: {records:#?}"));
    assert_eq!(
        record["requestParameters"]["encryptionContext"]["kubernetes-cluster"], "prod-eu",
        "{record:#}"
    );

    // Rotation changes key_id; data encrypted before still decrypts.
    kms.rotate_key_on_demand()
        .key_id(&arn)
        .send()
        .await
        .unwrap();
    let rotated = status(&mut client).await;
    assert_eq!(rotated.healthz, "ok");
    assert!(rotated.key_id.starts_with(&format!("{arn}@")));
    assert_ne!(rotated.key_id, st.key_id, "rotation must change key_id");
    let (new_ciphertext, new_key_id) = encrypt(&mut client, b"after rotation", uid).await;
    assert_eq!(new_key_id, rotated.key_id);
    assert_eq!(
        decrypt(&mut client, &ciphertext, &key_id).await.unwrap(),
        b"a DEK seed"
    );
    assert_eq!(
        decrypt(&mut client, &new_ciphertext, &new_key_id)
            .await
            .unwrap(),
        b"after rotation"
    );

    // Another cluster's plugin (other encryption context) cannot decrypt this cluster's data.
    let other = start_plugin(
        &server,
        &["--key-id", "alias/k8s-secrets", "--cluster-name", "staging"],
    );
    let mut other_client = connect(&other.socket).await;
    let refused = decrypt(&mut other_client, &ciphertext, &key_id)
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
}

#[tokio::test]
async fn migration_to_a_new_key_keeps_old_ciphertexts_readable_with_decrypt_also() {
    let server = Server::start(&[]);
    let kms = server.client();
    create_key_with_alias(&kms, "alias/k8s-old").await;
    let new_arn = create_key_with_alias(&kms, "alias/k8s-new").await;
    let (old_ciphertext, old_key_id) = {
        let old = start_plugin(&server, &["--key-id", "alias/k8s-old"]);
        let mut client = connect(&old.socket).await;
        encrypt(&mut client, b"written before migration", "u1").await
    };

    // Without --decrypt-also, the new key's plugin refuses the old key's ciphertext.
    let strict = start_plugin(&server, &["--key-id", "alias/k8s-new"]);
    let mut client = connect(&strict.socket).await;
    let refused = decrypt(&mut client, &old_ciphertext, &old_key_id)
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");

    let migrating = start_plugin(
        &server,
        &[
            "--key-id",
            "alias/k8s-new",
            "--decrypt-also",
            "alias/k8s-old",
        ],
    );
    let mut client = connect(&migrating.socket).await;
    assert_eq!(
        decrypt(&mut client, &old_ciphertext, &old_key_id)
            .await
            .unwrap(),
        b"written before migration"
    );
    let (ciphertext, key_id) = encrypt(&mut client, b"written after", "u2").await;
    assert!(key_id.starts_with(&format!("{new_arn}@")), "{key_id}");
    assert_eq!(status(&mut client).await.key_id, key_id);
    assert_eq!(
        decrypt(&mut client, &ciphertext, &key_id).await.unwrap(),
        b"written after"
    );
}

#[tokio::test]
async fn with_kmsd_down_status_is_not_ok_and_encrypt_fails() {
    let mut server = Server::start(&[]);
    let kms = server.client();
    create_key_with_alias(&kms, "alias/k8s-secrets").await;
    let plugin = start_plugin(&server, &["--key-id", "alias/k8s-secrets"]);
    let mut client = connect(&plugin.socket).await;
    let (ciphertext, key_id) = encrypt(&mut client, b"seed", "u").await;
    assert_eq!(status(&mut client).await.healthz, "ok");

    server.kill9();
    let st = status(&mut client).await;
    assert_eq!(st.version, "v2");
    assert_ne!(st.healthz, "ok");
    assert!(st.healthz.contains("unreachable"), "{}", st.healthz);
    let failed = client
        .encrypt(EncryptRequest {
            plaintext: b"seed".to_vec(),
            uid: "u".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(failed.code(), tonic::Code::Unavailable, "{failed:?}");
    let failed = decrypt(&mut client, &ciphertext, &key_id)
        .await
        .unwrap_err();
    assert_eq!(failed.code(), tonic::Code::Unavailable, "{failed:?}");
}

/// Runs the plugin to its exit (it must refuse before serving); returns its stderr.
fn refused_start(socket: &Path) -> String {
    let dir = tempfile::tempdir().unwrap();
    let out = plugin_command(
        dir.path(),
        "http://127.0.0.1:9",
        socket,
        &["--key-id", "alias/x"],
    )
    .output()
    .unwrap();
    assert!(
        !out.status.success(),
        "the plugin started on {}",
        socket.display()
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn insecure_socket_paths_are_refused() {
    // A world-writable directory: anyone could replace the socket.
    let open = tempfile::tempdir().unwrap();
    std::fs::set_permissions(open.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let err = refused_start(&open.path().join("kms.sock"));
    assert!(err.contains("world-writable"), "{err}");
    assert!(!open.path().join("kms.sock").exists());

    // An existing file that is not a socket is refused and left alone.
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o750)).unwrap();
    let file = dir.path().join("kms.sock");
    std::fs::write(&file, b"not a socket").unwrap();
    let err = refused_start(&file);
    assert!(err.contains("not a socket"), "{err}");
    assert_eq!(std::fs::read(&file).unwrap(), b"not a socket");

    // A bad --socket-mode is refused.
    let sock = dir.path().join("other.sock");
    let out = plugin_command(
        dir.path(),
        "http://127.0.0.1:9",
        &sock,
        &["--key-id", "k", "--socket-mode", "9999"],
    )
    .output()
    .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--socket-mode"));
}

/// The seed's point: kube-apiserver's KEK in an external key store (our xks-proxy, keys in
/// SoftHSM2). Round trips work, key_id is the key's ARN (no rotation in custom key stores), and
/// the proxy going away makes Status not ok and Encrypt fail.
#[tokio::test]
async fn a_key_in_an_external_key_store() {
    use aws_sdk_kms::types::{
        CustomKeyStoreType, OriginType, XksProxyAuthenticationCredentialType,
        XksProxyConnectivityType,
    };
    use xks_proxy::testkit::{self, TestProxy, TestProxyOptions};

    let bin = testkit::ensure_binary().unwrap();
    let mut proxy = TestProxy::start(&bin, TestProxyOptions::new(&["k8s-kek"])).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let xks_config = tmp.path().join("xks.toml");
    std::fs::write(
        &xks_config,
        format!(
            "ca_bundle = {:?}\ntimeout_ms = 2000\n[[endpoint]]\nhost = \"localhost\"\naddress = \"{}\"\n",
            proxy.ca_pem().display().to_string(),
            proxy.addr()
        ),
    )
    .unwrap();
    let server = Server::start(&["--xks-config", xks_config.to_str().unwrap()]);
    let kms = server.client();
    let (akid, secret) = proxy.credential();
    let store = kms
        .create_custom_key_store()
        .custom_key_store_name("k8s-xks")
        .custom_key_store_type(CustomKeyStoreType::ExternalKeyStore)
        .xks_proxy_connectivity(XksProxyConnectivityType::PublicEndpoint)
        .xks_proxy_uri_endpoint("https://localhost")
        .xks_proxy_uri_path(proxy.uri_path())
        .xks_proxy_authentication_credential(
            XksProxyAuthenticationCredentialType::builder()
                .access_key_id(&akid)
                .raw_secret_access_key(&secret)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap()
        .custom_key_store_id()
        .unwrap()
        .to_owned();
    kms.connect_custom_key_store()
        .custom_key_store_id(&store)
        .send()
        .await
        .unwrap();
    let arn = kms
        .create_key()
        .origin(OriginType::ExternalKeyStore)
        .custom_key_store_id(&store)
        .xks_key_id("k8s-kek")
        .send()
        .await
        .unwrap()
        .key_metadata()
        .unwrap()
        .arn()
        .unwrap()
        .to_owned();
    kms.create_alias()
        .alias_name("alias/k8s-xks")
        .target_key_id(&arn)
        .send()
        .await
        .unwrap();

    let plugin = start_plugin(&server, &["--key-id", "alias/k8s-xks"]);
    let mut client = connect(&plugin.socket).await;
    let st = status(&mut client).await;
    assert_eq!(st.healthz, "ok");
    assert_eq!(st.key_id, arn);
    let (ciphertext, key_id) = encrypt(&mut client, b"seed in xks", "uid-xks").await;
    assert_eq!(key_id, arn);
    assert_eq!(
        decrypt(&mut client, &ciphertext, &key_id).await.unwrap(),
        b"seed in xks"
    );

    proxy.stop().unwrap();
    let st = status(&mut client).await;
    assert_ne!(st.healthz, "ok");
    let failed = client
        .encrypt(EncryptRequest {
            plaintext: b"seed".to_vec(),
            uid: "u".into(),
        })
        .await
        .unwrap_err();
    assert_ne!(failed.code(), tonic::Code::Ok);
    assert!(failed.message().contains("kmsd:"), "{failed:?}");
}

fn kmsd_admin(data_dir: &Path, args: &[&str]) -> String {
    common::kmsd_admin(data_dir, &common::store_args_of(data_dir), args)
}

/// The AWS chain's assume-role: a profile with `role_arn` + `source_profile`, STS pointed at
/// kmsd; the plugin then acts as the role (least privilege), as the audit trail shows.
#[tokio::test]
async fn credentials_from_an_assumed_role_profile() {
    let server = Server::start(&[]);
    let kms = server.client();
    create_key_with_alias(&kms, "alias/k8s-secrets").await;
    let credentials = std::fs::read_to_string(server.data_dir.join("admin-credentials")).unwrap();
    let admin_arn = credentials
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("# kmsd admin ("))
        .and_then(|l| l.strip_suffix(')'))
        .unwrap()
        .to_owned();
    let account = admin_arn.split(':').nth(4).unwrap().to_owned();
    kmsd_admin(
        &server.data_dir,
        &[
            "create-role",
            "--account-id",
            &account,
            "--trust",
            &admin_arn,
            "k8s-kms-plugin",
        ],
    );
    let role = format!("arn:aws:iam::{account}:role/k8s-kms-plugin");
    kmsd_admin(
        &server.data_dir,
        &[
            "put-policy",
            &role,
            "k8s",
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow",
               "Action":["kms:Encrypt","kms:Decrypt","kms:DescribeKey"],"Resource":"*"}]}"#,
        ],
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o750)).unwrap();
    let config = dir.path().join("aws-config");
    std::fs::write(
        &config,
        format!("[profile k8s]\nrole_arn = {role}\nsource_profile = default\nrole_session_name = k8s-plugin\n"),
    )
    .unwrap();
    let socket = dir.path().join("kms.sock");
    let mut cmd = plugin_command(
        &server.data_dir,
        &server.endpoint(),
        &socket,
        &["--key-id", "alias/k8s-secrets"],
    );
    cmd.env("AWS_CONFIG_FILE", &config)
        .env("AWS_PROFILE", "k8s")
        .env("AWS_ENDPOINT_URL_STS", server.endpoint());
    let plugin = k8s_support::spawn_plugin(cmd, socket, dir);
    let mut client = connect(&plugin.socket).await;
    assert_eq!(status(&mut client).await.healthz, "ok");
    let (ciphertext, key_id) = encrypt(&mut client, b"as the role", "uid-role").await;
    assert_eq!(
        decrypt(&mut client, &ciphertext, &key_id).await.unwrap(),
        b"as the role"
    );

    let records = audit_records(&server.data_dir);
    let encrypt_record = records
        .iter()
        .rev()
        .find(|r| r["eventName"] == "Encrypt")
        .unwrap();
    let who = encrypt_record["userIdentity"]["arn"]
        .as_str()
        .unwrap_or_default();
    assert!(
        who.starts_with(&format!(
            "arn:aws:sts::{account}:assumed-role/k8s-kms-plugin/"
        )),
        "{encrypt_record:#}"
    );
}

#[tokio::test]
async fn a_stale_socket_is_replaced_and_removed_on_sigterm() {
    let server = Server::start(&[]);
    create_key_with_alias(&server.client(), "alias/k8s-secrets").await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o750)).unwrap();
    let socket = dir.path().join("kms.sock");
    // A previous run's socket, nobody listening on it.
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    assert!(socket.exists());
    let cmd = plugin_command(
        &server.data_dir,
        &server.endpoint(),
        &socket,
        &["--key-id", "alias/k8s-secrets"],
    );
    let mut plugin = k8s_support::spawn_plugin(cmd, socket.clone(), dir);
    let mut client = connect(&socket).await;
    assert_eq!(status(&mut client).await.healthz, "ok");

    let pid = plugin.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    // The client keeps its connection open (this runtime is busy here): the plugin still stops,
    // after its bounded graceful period.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let exit = loop {
        if let Some(exit) = plugin.child.try_wait().unwrap() {
            break exit;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the plugin did not stop on SIGTERM"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(exit.success(), "{exit:?}");
    drop(client);
    assert!(!socket.exists(), "the socket outlived the plugin");
}
