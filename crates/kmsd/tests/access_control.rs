//! Access control end to end: two users of one account, a user of a second account, identity
//! policies, key policies with conditions, explicit denies, grants, assumed roles, the lockout
//! safety check, and AWS's AccessDenied wording.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;

use aws_sdk_kms::primitives::Blob;
use common::Server;

fn admin(server: &Server, args: &[&str]) -> String {
    common::kmsd_admin(&server.data_dir, &server.store_args(), args)
}

/// `aws sts assume-role` against kmsd with the given access key: (success, stdout or stderr).
fn sts_assume_role(server: &Server, akid: &str, secret: &str, role: &str) -> (bool, String) {
    let out = Command::new("aws")
        .args([
            "--endpoint-url",
            &server.endpoint(),
            "--region",
            "us-east-1",
        ])
        .args(["--output", "json", "sts", "assume-role", "--role-arn", role])
        .args(["--role-session-name", "cli-session"])
        .env("AWS_ACCESS_KEY_ID", akid)
        .env("AWS_SECRET_ACCESS_KEY", secret)
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_SESSION_TOKEN")
        .output()
        .expect("the `aws` CLI must be installed (.ci/run installs it)");
    let text = if out.status.success() {
        out.stdout
    } else {
        out.stderr
    };
    (
        out.status.success(),
        String::from_utf8_lossy(&text).into_owned(),
    )
}

/// (access key id, secret, session token) from `print_credentials` output.
fn creds(text: &str) -> (String, String, Option<String>) {
    let get = |k: &str| {
        text.lines().find_map(|l| {
            l.strip_prefix(k)
                .map(|v| v.trim_start_matches(" = ").trim().to_owned())
        })
    };
    (
        get("aws_access_key_id").unwrap(),
        get("aws_secret_access_key").unwrap(),
        get("aws_session_token"),
    )
}

fn client_with_token(
    server: &Server,
    akid: &str,
    secret: &str,
    token: Option<String>,
) -> aws_sdk_kms::Client {
    let conf = aws_sdk_kms::Config::builder()
        .behavior_version(aws_sdk_kms::config::BehaviorVersion::latest())
        .region(aws_sdk_kms::config::Region::new("us-east-1"))
        .endpoint_url(server.endpoint())
        .credentials_provider(aws_sdk_kms::config::Credentials::new(
            akid, secret, token, None, "test",
        ))
        .retry_config(aws_sdk_kms::config::retry::RetryConfig::disabled())
        .build();
    aws_sdk_kms::Client::from_conf(conf)
}

fn is_denied<E: std::fmt::Debug + aws_sdk_kms::error::ProvideErrorMetadata>(
    r: Result<impl std::fmt::Debug, aws_sdk_kms::error::SdkError<E>>,
) -> String {
    let err = r.unwrap_err();
    let svc = err.as_service_error().unwrap_or_else(|| panic!("{err:?}"));
    assert_eq!(svc.code(), Some("AccessDeniedException"), "{err:?}");
    svc.message().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn least_privilege_in_one_account_and_across_accounts() {
    let server = Server::start(&[]);
    let root = server.client();
    let acct = "111122223333";
    let alice = admin(&server, &["create-user", "--account-id", acct, "alice"])
        .trim()
        .to_owned();
    let bob = admin(&server, &["create-user", "--account-id", acct, "bob"])
        .trim()
        .to_owned();
    let (a_id, a_secret, _) = creds(&admin(&server, &["create-access-key", &alice]));
    let (b_id, b_secret, _) = creds(&admin(&server, &["create-access-key", &bob]));
    admin(
        &server,
        &[
            "put-policy",
            &alice,
            "use-keys",
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["kms:Encrypt","kms:Decrypt","kms:DescribeKey"],"Resource":"*"}]}"#,
        ],
    );
    let alice_kms = server.client_with(&a_id, &a_secret, "us-east-1");
    let bob_kms = server.client_with(&b_id, &b_secret, "us-east-1");

    // The default key policy delegates to IAM: alice's identity policy allows, bob has none.
    let key = root
        .create_key()
        .send()
        .await
        .unwrap()
        .key_metadata()
        .unwrap()
        .arn()
        .unwrap()
        .to_owned();
    let ct = alice_kms
        .encrypt()
        .key_id(&key)
        .plaintext(Blob::new(b"a".to_vec()))
        .send()
        .await
        .unwrap();
    alice_kms
        .decrypt()
        .ciphertext_blob(ct.ciphertext_blob().unwrap().clone())
        .send()
        .await
        .unwrap();
    let msg = is_denied(
        bob_kms
            .encrypt()
            .key_id(&key)
            .plaintext(Blob::new(b"b".to_vec()))
            .send()
            .await,
    );
    assert_eq!(msg, format!("User: {bob} is not authorized to perform: kms:Encrypt on resource: {key} because no identity-based policy allows the kms:Encrypt action"));
    // Alice may not do what her policy does not name.
    is_denied(alice_kms.disable_key().key_id(&key).send().await);
    is_denied(alice_kms.create_key().send().await);

    // A grant lets bob encrypt (only that, only with the constrained context); revoking ends it.
    let grant = root
        .create_grant()
        .key_id(&key)
        .grantee_principal(&bob)
        .operations(aws_sdk_kms::types::GrantOperation::Encrypt)
        .constraints(
            aws_sdk_kms::types::GrantConstraints::builder()
                .encryption_context_subset("Dept", "Finance")
                .build(),
        )
        .send()
        .await
        .unwrap();
    let token = grant.grant_token().unwrap().to_owned();
    bob_kms
        .encrypt()
        .key_id(&key)
        .plaintext(Blob::new(b"b".to_vec()))
        .encryption_context("Dept", "Finance")
        .grant_tokens(&token)
        .send()
        .await
        .unwrap();
    is_denied(
        bob_kms
            .encrypt()
            .key_id(&key)
            .plaintext(Blob::new(b"b".to_vec()))
            .encryption_context("Dept", "HR")
            .send()
            .await,
    );
    is_denied(
        bob_kms
            .decrypt()
            .ciphertext_blob(ct.ciphertext_blob().unwrap().clone())
            .send()
            .await,
    );
    let listed = root.list_grants().key_id(&key).send().await.unwrap();
    assert_eq!(listed.grants().len(), 1);
    assert_eq!(listed.grants()[0].grantee_principal(), Some(bob.as_str()));
    root.revoke_grant()
        .key_id(&key)
        .grant_id(grant.grant_id().unwrap())
        .send()
        .await
        .unwrap();
    is_denied(
        bob_kms
            .encrypt()
            .key_id(&key)
            .plaintext(Blob::new(b"b".to_vec()))
            .encryption_context("Dept", "Finance")
            .send()
            .await,
    );
    let err = bob_kms
        .encrypt()
        .key_id(&key)
        .plaintext(Blob::new(b"b".to_vec()))
        .grant_tokens("not-a-token")
        .send()
        .await
        .unwrap_err();
    assert!(
        err.as_service_error()
            .unwrap()
            .is_invalid_grant_token_exception(),
        "{err:?}"
    );

    // A key policy naming bob directly, with an encryption-context condition (AWS guide example),
    // and an explicit deny that wins over alice's identity allow.
    let policy = format!(
        r#"{{"Version":"2012-10-17","Statement":[
          {{"Sid":"Enable IAM User Permissions","Effect":"Allow","Principal":{{"AWS":"arn:aws:iam::{acct}:root"}},"Action":"kms:*","Resource":"*"}},
          {{"Sid":"Bob with AppName","Effect":"Allow","Principal":{{"AWS":"{bob}"}},"Action":["kms:Encrypt","kms:Decrypt"],"Resource":"*",
            "Condition":{{"StringEquals":{{"kms:EncryptionContext:AppName":"ExampleApp"}}}}}},
          {{"Sid":"No alice decrypt","Effect":"Deny","Principal":{{"AWS":"{alice}"}},"Action":"kms:Decrypt","Resource":"*"}}
        ]}}"#
    );
    let key2 = root
        .create_key()
        .policy(&policy)
        .send()
        .await
        .unwrap()
        .key_metadata()
        .unwrap()
        .arn()
        .unwrap()
        .to_owned();
    let ct2 = bob_kms
        .encrypt()
        .key_id(&key2)
        .plaintext(Blob::new(b"c".to_vec()))
        .encryption_context("AppName", "ExampleApp")
        .send()
        .await
        .unwrap();
    is_denied(
        bob_kms
            .encrypt()
            .key_id(&key2)
            .plaintext(Blob::new(b"c".to_vec()))
            .encryption_context("AppName", "Other")
            .send()
            .await,
    );
    let msg = is_denied(
        alice_kms
            .decrypt()
            .ciphertext_blob(ct2.ciphertext_blob().unwrap().clone())
            .encryption_context("AppName", "ExampleApp")
            .send()
            .await,
    );
    assert!(
        msg.ends_with("with an explicit deny in a resource-based policy"),
        "{msg}"
    );

    // The lockout safety check, and its bypass.
    let lockout = format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Principal":{{"AWS":"{bob}"}},"Action":"kms:Encrypt","Resource":"*"}}]}}"#
    );
    let err = root
        .put_key_policy()
        .key_id(&key2)
        .policy(&lockout)
        .send()
        .await
        .unwrap_err();
    assert!(
        err.as_service_error()
            .unwrap()
            .is_malformed_policy_document_exception(),
        "{err:?}"
    );
    let err = root
        .put_key_policy()
        .key_id(&key2)
        .policy("{\"Statement\":[{\"Effect\":\"Maybe\"}]}")
        .send()
        .await
        .unwrap_err();
    assert!(
        err.as_service_error()
            .unwrap()
            .is_malformed_policy_document_exception(),
        "{err:?}"
    );

    // aws:SourceIp: a deny from outside 10.0.0.0/8 (the AWS guide's NotIpAddress example).
    let ip_policy = format!(
        r#"{{"Version":"2012-10-17","Statement":[
          {{"Effect":"Allow","Principal":{{"AWS":"arn:aws:iam::{acct}:root"}},"Action":"kms:*","Resource":"*"}},
          {{"Effect":"Deny","Principal":"*","Action":"kms:Encrypt","Resource":"*","Condition":{{"NotIpAddress":{{"aws:SourceIp":"10.0.0.0/8"}}}}}}
        ]}}"#
    );
    let key3 = root
        .create_key()
        .policy(&ip_policy)
        .send()
        .await
        .unwrap()
        .key_metadata()
        .unwrap()
        .arn()
        .unwrap()
        .to_owned();
    is_denied(
        root.encrypt()
            .key_id(&key3)
            .plaintext(Blob::new(b"d".to_vec()))
            .send()
            .await,
    );

    // A second account: denied until the key policy names it, then allowed (its admin has
    // AdministratorAccess), with the key ARN.
    let (c_id, c_secret, _) = creds(&admin(&server, &["create-account", "444455556666"]));
    let carol = server.client_with(&c_id, &c_secret, "us-east-1");
    is_denied(
        carol
            .encrypt()
            .key_id(&key)
            .plaintext(Blob::new(b"e".to_vec()))
            .send()
            .await,
    );
    let shared = format!(
        r#"{{"Version":"2012-10-17","Statement":[
          {{"Effect":"Allow","Principal":{{"AWS":"arn:aws:iam::{acct}:root"}},"Action":"kms:*","Resource":"*"}},
          {{"Effect":"Allow","Principal":{{"AWS":"arn:aws:iam::444455556666:root"}},"Action":["kms:Encrypt","kms:DescribeKey"],"Resource":"*"}}
        ]}}"#
    );
    root.put_key_policy()
        .key_id(&key)
        .policy(&shared)
        .send()
        .await
        .unwrap();
    carol
        .encrypt()
        .key_id(&key)
        .plaintext(Blob::new(b"e".to_vec()))
        .send()
        .await
        .unwrap();
    is_denied(carol.disable_key().key_id(&key).send().await);

    // An assumed role: temporary credentials with a session token.
    let role = admin(
        &server,
        &[
            "create-role",
            "--account-id",
            acct,
            "--trust",
            &alice,
            "Encrypter",
        ],
    )
    .trim()
    .to_owned();
    admin(
        &server,
        &[
            "put-policy",
            &role,
            "enc",
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"kms:Encrypt","Resource":"*"}]}"#,
        ],
    );
    let (r_id, r_secret, r_token) = creds(&admin(
        &server,
        &["assume-role", &role, "s1", "--as", &alice],
    ));
    let session = client_with_token(&server, &r_id, &r_secret, r_token.clone());
    session
        .encrypt()
        .key_id(&key)
        .plaintext(Blob::new(b"f".to_vec()))
        .send()
        .await
        .unwrap();
    is_denied(
        session
            .decrypt()
            .ciphertext_blob(ct.ciphertext_blob().unwrap().clone())
            .send()
            .await,
    );
    let no_token = client_with_token(&server, &r_id, &r_secret, None);
    let err = no_token.list_keys().send().await.unwrap_err();
    assert_eq!(
        err.as_service_error().unwrap().meta().code(),
        Some("UnrecognizedClientException")
    );

    // The same through STS AssumeRole on the endpoint, with the real `aws` CLI as alice.
    let (ok, out) = sts_assume_role(&server, &a_id, &a_secret, &role);
    assert!(ok, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let c = &v["Credentials"];
    assert!(v["AssumedRoleUser"]["Arn"]
        .as_str()
        .unwrap()
        .ends_with(":assumed-role/Encrypter/cli-session"));
    let via_sts = client_with_token(
        &server,
        c["AccessKeyId"].as_str().unwrap(),
        c["SecretAccessKey"].as_str().unwrap(),
        c["SessionToken"].as_str().map(str::to_owned),
    );
    via_sts
        .encrypt()
        .key_id(&key)
        .plaintext(Blob::new(b"g".to_vec()))
        .send()
        .await
        .unwrap();
    // Bob is not trusted by the role, and no policy of his allows sts:AssumeRole.
    let (ok, out) = sts_assume_role(&server, &b_id, &b_secret, &role);
    assert!(!ok);
    assert!(out.contains("AccessDenied"), "{out}");

    // A deleted access key stops working at once (`kmsd admin` is another process).
    // (Bob may not list keys, but he is recognised; his key is in the server's cache.)
    let err = bob_kms.list_keys().send().await.unwrap_err();
    assert_eq!(
        err.as_service_error().unwrap().meta().code(),
        Some("AccessDeniedException")
    );
    admin(&server, &["delete-access-key", &b_id]);
    let err = bob_kms.list_keys().send().await.unwrap_err();
    assert_eq!(
        err.as_service_error().unwrap().meta().code(),
        Some("UnrecognizedClientException")
    );
}

/// Behind a trusted proxy, `aws:SourceIp` is the address the proxy reports in X-Forwarded-For.
#[tokio::test]
async fn source_ip_conditions_see_the_client_behind_a_trusted_proxy() {
    let server = Server::start(&["--trusted-proxies", "127.0.0.1"]);
    let root = server.client();
    let policy = r#"{"Version":"2012-10-17","Statement":[
        {"Sid":"Enable IAM User Permissions","Effect":"Allow",
         "Principal":{"AWS":"arn:aws:iam::111122223333:root"},"Action":"kms:*","Resource":"*"},
        {"Sid":"Only from the office","Effect":"Deny","Principal":"*","Action":"kms:Encrypt",
         "Resource":"*","Condition":{"NotIpAddress":{"aws:SourceIp":"203.0.113.0/24"}}}]}"#;
    let key = root
        .create_key()
        .policy(policy)
        .send()
        .await
        .unwrap()
        .key_metadata()
        .unwrap()
        .key_id()
        .to_owned();
    let encrypt_from = |forwarded: Option<&'static str>| {
        let call = root
            .encrypt()
            .key_id(&key)
            .plaintext(Blob::new(b"x".to_vec()))
            .customize()
            .mutate_request(move |req| {
                if let Some(ip) = forwarded {
                    req.headers_mut().insert("x-forwarded-for", ip);
                }
            });
        async move { call.send().await }
    };
    encrypt_from(Some("203.0.113.7")).await.unwrap();
    // A forged leftmost hop does not help: the proxy's own report is the rightmost entry.
    let msg = is_denied(encrypt_from(Some("203.0.113.7, 198.51.100.1")).await);
    assert!(
        msg.contains("explicit deny in a resource-based policy"),
        "{msg}"
    );
    // Without the header the proxy (loopback) is the client, outside the range.
    is_denied(encrypt_from(None).await);
}

/// `kms:ResourceAliases`: a key policy that allows use only while the key has a given alias.
#[tokio::test]
async fn resource_alias_conditions_follow_the_keys_aliases() {
    let server = Server::start(&[]);
    let root = server.client();
    let policy = r#"{"Version":"2012-10-17","Statement":[
        {"Sid":"Enable IAM User Permissions","Effect":"Allow",
         "Principal":{"AWS":"arn:aws:iam::111122223333:root"},"Action":"kms:*","Resource":"*"},
        {"Sid":"Finance keys only","Effect":"Deny","Principal":"*","Action":"kms:Encrypt",
         "Resource":"*","Condition":{"ForAllValues:StringNotEquals":{"kms:ResourceAliases":"alias/finance"}}}]}"#;
    let key = root
        .create_key()
        .policy(policy)
        .send()
        .await
        .unwrap()
        .key_metadata()
        .unwrap()
        .key_id()
        .to_owned();
    let encrypt = || {
        root.encrypt()
            .key_id(&key)
            .plaintext(Blob::new(b"x".to_vec()))
            .send()
    };
    // No alias: ForAllValues over an absent key is true, so the deny applies.
    is_denied(encrypt().await);
    root.create_alias()
        .alias_name("alias/other")
        .target_key_id(&key)
        .send()
        .await
        .unwrap();
    is_denied(encrypt().await);
    root.create_alias()
        .alias_name("alias/finance")
        .target_key_id(&key)
        .send()
        .await
        .unwrap();
    encrypt().await.unwrap();
    root.delete_alias()
        .alias_name("alias/finance")
        .send()
        .await
        .unwrap();
    is_denied(encrypt().await);
}
