//! Key store behaviour against the in-memory HSM driver: the control plane, every validation
//! and connection error code, password rotation, failover, and keys in the store.

use std::sync::Arc;

use kms_types::{cloudhsm, ErrorCode, KmsError};
use serde_json::{json, Value};

use super::fleet::{DeclaredHsm, DeclaredSubnet, HsmFleet, StaticFleet};
use super::memory::MemoryDriver;
use crate::{Caller, ManualClock, MemStore, Service};

pub(super) struct Env {
    pub(super) svc: Service,
    pub(super) clock: Arc<ManualClock>,
    pub(super) driver: MemoryDriver,
    pub(super) fleet: Arc<StaticFleet>,
    pub(super) caller: Caller,
    /// The store under `svc` (a second service on it stands for a restart).
    pub(super) store: Arc<MemStore>,
}

pub(super) fn env() -> Env {
    let fleet = HsmFleet {
        hsms: ["a", "b", "c", "d"]
            .iter()
            .map(|z| DeclaredHsm {
                module: "mem".into(),
                token_label: format!("hsm-{z}"),
                availability_zone: format!("us-east-1{}", if *z == "d" { "a" } else { z }),
                so_pin_file: None,
                so_pin_env: None,
            })
            .collect(),
        subnets: ["a", "b", "c"]
            .iter()
            .map(|z| DeclaredSubnet {
                id: format!("subnet-0{z}0{z}0{z}0{z}"),
                availability_zone: format!("us-east-1{z}"),
                private: true,
            })
            .collect(),
        security_groups: vec![],
        backup_vaults: vec![],
    };
    let fleet = Arc::new(StaticFleet {
        fleet: std::sync::RwLock::new(fleet),
        so_pin: "so-pin".into(),
        ..Default::default()
    });
    let driver = MemoryDriver::default();
    let root = Arc::new(kms_crypto::RootKey::from_bytes(&[3u8; 32]).unwrap());
    let clock = Arc::new(ManualClock::default());
    let store = Arc::new(MemStore::default());
    let svc = Service::new(store.clone(), root, clock.clone());
    svc.enable_hsm(fleet.clone(), Arc::new(driver.clone()));
    let caller = Caller {
        account: "111122223333".into(),
        region: "us-east-1".into(),
        principal_arn: "arn:aws:iam::111122223333:user/admin".into(),
        user_id: "AIDA".into(),
        access_key_id: "AKIA".into(),
        source_ip: None,
        request_id: "r".into(),
        operation: String::new(),
        resources: Default::default(),
        skip_authorization: true,
        ..Default::default()
    };
    Env {
        svc,
        clock,
        driver,
        fleet,
        caller,
        store,
    }
}

pub(super) async fn kms(e: &Env, op: &str, body: Value) -> Result<Value, KmsError> {
    let out = e
        .svc
        .dispatch(&e.caller, op, body.to_string().as_bytes())
        .await?;
    Ok(serde_json::from_slice(&out).unwrap_or(Value::Null))
}

pub(super) async fn hsm(e: &Env, op: &str, body: Value) -> Result<Value, KmsError> {
    let out = e
        .svc
        .dispatch_cloudhsm(&e.caller, op, body.to_string().as_bytes())
        .await?;
    Ok(serde_json::from_slice(&out).unwrap())
}

pub(super) fn sign(csr_pem: &str) -> (String, String) {
    let ca_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name
        .push(rcgen::DnType::CommonName, "customer CA");
    p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = p.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::from_params(&p, &ca_key);
    let signed = rcgen::CertificateSigningRequestParams::from_pem(csr_pem)
        .unwrap()
        .signed_by(&issuer)
        .unwrap();
    (signed.pem(), ca.pem())
}

/// An ACTIVE cluster with HSMs in zones a and b; returns (cluster id, trust anchor PEM).
pub(super) async fn active_cluster(e: &Env) -> (String, String) {
    active_cluster_as(e, "kmsuser").await
}

/// As [`active_cluster`], with the crypto user created under `user`.
pub(super) async fn active_cluster_as(e: &Env, user: &str) -> (String, String) {
    let c = hsm(e, "CreateCluster", json!({"HsmType": "hsm1.medium", "SubnetIds": ["subnet-0a0a0a0a", "subnet-0b0b0b0b", "subnet-0c0c0c0c"]})).await.unwrap();
    let id = c["Cluster"]["ClusterId"].as_str().unwrap().to_owned();
    assert_eq!(c["Cluster"]["State"], "UNINITIALIZED");
    let csr = c["Cluster"]["Certificates"]["ClusterCsr"]
        .as_str()
        .unwrap()
        .to_owned();
    for az in ["us-east-1a", "us-east-1b"] {
        let h = hsm(
            e,
            "CreateHsm",
            json!({"ClusterId": id, "AvailabilityZone": az}),
        )
        .await
        .unwrap();
        assert_eq!(h["Hsm"]["State"], "ACTIVE");
    }
    let (signed, anchor) = sign(&csr);
    let (_, other_anchor) = sign(&csr);
    let (wrong_signed, _) = sign(&csr);
    let err = hsm(
        e,
        "InitializeCluster",
        json!({"ClusterId": id, "SignedCert": wrong_signed, "TrustAnchor": other_anchor}),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code, ErrorCode::CloudHsmInvalidRequestException);
    let r = hsm(
        e,
        "InitializeCluster",
        json!({"ClusterId": id, "SignedCert": signed, "TrustAnchor": anchor}),
    )
    .await
    .unwrap();
    assert_eq!(r["State"], "INITIALIZED");
    e.svc
        .create_crypto_user(&id, user, "kmsPswd123", false)
        .await
        .unwrap();
    let d = hsm(
        e,
        "DescribeClusters",
        json!({"Filters": {"clusterIds": [id]}}),
    )
    .await
    .unwrap();
    assert_eq!(d["Clusters"][0]["State"], "ACTIVE");
    assert!(d["Clusters"][0]["Certificates"]["ClusterCertificate"].is_string());
    (id, anchor)
}

pub(super) async fn new_store(e: &Env, cluster: &str, anchor: &str, name: &str) -> String {
    let r = kms(e, "CreateCustomKeyStore", json!({"CustomKeyStoreName": name, "CloudHsmClusterId": cluster, "TrustAnchorCertificate": anchor, "KeyStorePassword": "kmsPswd123"})).await.unwrap();
    r["CustomKeyStoreId"].as_str().unwrap().to_owned()
}

pub(super) async fn state(e: &Env, id: &str) -> (String, Option<String>) {
    let d = kms(
        e,
        "DescribeCustomKeyStores",
        json!({"CustomKeyStoreId": id}),
    )
    .await
    .unwrap();
    let s = &d["CustomKeyStores"][0];
    (
        s["ConnectionState"].as_str().unwrap().to_owned(),
        s["ConnectionErrorCode"].as_str().map(str::to_owned),
    )
}

#[tokio::test]
async fn create_validations() {
    let e = env();
    let (cluster, anchor) = active_cluster(&e).await;
    let bad = |body: Value| async {
        kms(&e, "CreateCustomKeyStore", body)
            .await
            .unwrap_err()
            .code
    };
    assert_eq!(bad(json!({"CustomKeyStoreName": "s", "CloudHsmClusterId": "cluster-aaaaaaaaaaa", "TrustAnchorCertificate": anchor, "KeyStorePassword": "kmsPswd123"})).await, ErrorCode::CloudHsmClusterNotFoundException);
    assert_eq!(bad(json!({"CustomKeyStoreName": "s", "CloudHsmClusterId": cluster, "TrustAnchorCertificate": anchor, "KeyStorePassword": "bad pass!"})).await, ErrorCode::ValidationException);
    let (_, other) = sign(&kms_crypto::x509::cluster_csr("x").unwrap().1);
    assert_eq!(bad(json!({"CustomKeyStoreName": "s", "CloudHsmClusterId": cluster, "TrustAnchorCertificate": other, "KeyStorePassword": "kmsPswd123"})).await, ErrorCode::IncorrectTrustAnchorException);
    let id = new_store(&e, &cluster, &anchor, "s").await;
    // Identical retry returns the same store; another name on the same cluster is "in use".
    assert_eq!(new_store(&e, &cluster, &anchor, "s").await, id);
    assert_eq!(bad(json!({"CustomKeyStoreName": "s", "CloudHsmClusterId": cluster, "TrustAnchorCertificate": anchor, "KeyStorePassword": "otherPw123"})).await, ErrorCode::CustomKeyStoreNameInUseException);
    assert_eq!(bad(json!({"CustomKeyStoreName": "t", "CloudHsmClusterId": cluster, "TrustAnchorCertificate": anchor, "KeyStorePassword": "kmsPswd123"})).await, ErrorCode::CloudHsmClusterInUseException);
    assert_eq!(state(&e, &id).await, ("DISCONNECTED".into(), None));

    // A cluster with HSMs in one zone only, and one whose security group lost a rule.
    let c2 = hsm(
        &e,
        "CreateCluster",
        json!({"HsmType": "hsm1.medium", "SubnetIds": ["subnet-0a0a0a0a", "subnet-0b0b0b0b"]}),
    )
    .await
    .unwrap();
    let c2id = c2["Cluster"]["ClusterId"].as_str().unwrap().to_owned();
    hsm(
        &e,
        "CreateHsm",
        json!({"ClusterId": c2id, "AvailabilityZone": "us-east-1a"}),
    )
    .await
    .unwrap();
    let (signed, anchor2) = sign(
        c2["Cluster"]["Certificates"]["ClusterCsr"]
            .as_str()
            .unwrap(),
    );
    hsm(
        &e,
        "InitializeCluster",
        json!({"ClusterId": c2id, "SignedCert": signed, "TrustAnchor": anchor2}),
    )
    .await
    .unwrap();
    let err = kms(&e, "CreateCustomKeyStore", json!({"CustomKeyStoreName": "u", "CloudHsmClusterId": c2id, "TrustAnchorCertificate": anchor2, "KeyStorePassword": "kmsPswd123"})).await.unwrap_err();
    assert_eq!(
        err.code,
        ErrorCode::CloudHsmClusterNotActiveException,
        "no crypto user yet"
    );
    e.svc
        .create_crypto_user(&c2id, "kmsuser", "kmsPswd123", false)
        .await
        .unwrap();
    let err = kms(&e, "CreateCustomKeyStore", json!({"CustomKeyStoreName": "u", "CloudHsmClusterId": c2id, "TrustAnchorCertificate": anchor2, "KeyStorePassword": "kmsPswd123"})).await.unwrap_err();
    assert_eq!(
        err.code,
        ErrorCode::CloudHsmClusterInvalidConfigurationException,
        "{}",
        err.message
    );
}

#[tokio::test]
async fn connect_rotates_the_password_and_keys_live_in_the_hsms() {
    let e = env();
    let (cluster, anchor) = active_cluster(&e).await;
    let id = new_store(&e, &cluster, &anchor, "store").await;
    let err = kms(
        &e,
        "CreateKey",
        json!({"Origin": "AWS_CLOUDHSM", "CustomKeyStoreId": id}),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code, ErrorCode::CustomKeyStoreInvalidStateException);
    kms(&e, "ConnectCustomKeyStore", json!({"CustomKeyStoreId": id}))
        .await
        .unwrap();
    assert_eq!(state(&e, &id).await, ("CONNECTED".into(), None));
    let pin = e.driver.user_pin("hsm-a").unwrap();
    assert_ne!(
        pin, "kmsPswd123",
        "the kmsuser password is rotated on connect"
    );
    assert_eq!(e.driver.user_pin("hsm-b").unwrap(), pin);

    let k = kms(
        &e,
        "CreateKey",
        json!({"Origin": "AWS_CLOUDHSM", "CustomKeyStoreId": id}),
    )
    .await
    .unwrap();
    let meta = &k["KeyMetadata"];
    assert_eq!(meta["Origin"], "AWS_CLOUDHSM");
    assert_eq!(meta["CustomKeyStoreId"], id.as_str());
    assert_eq!(meta["CloudHsmClusterId"], cluster.as_str());
    assert!(meta.get("CurrentKeyMaterialId").is_none());
    let key = meta["KeyId"].as_str().unwrap().to_owned();
    assert_eq!(
        (e.driver.key_count("hsm-a"), e.driver.key_count("hsm-b")),
        (1, 1),
        "present on every HSM"
    );
    let err = kms(&e, "CreateKey", json!({"Origin": "AWS_CLOUDHSM", "CustomKeyStoreId": id, "KeySpec": "RSA_2048", "KeyUsage": "SIGN_VERIFY"})).await.unwrap_err();
    assert_eq!(err.code, ErrorCode::UnsupportedOperationException);

    let ct = kms(
        &e,
        "Encrypt",
        json!({"KeyId": key, "Plaintext": "aGVsbG8=", "EncryptionContext": {"a": "b"}}),
    )
    .await
    .unwrap();
    // One HSM down: the other serves.
    e.driver.set_unreachable("hsm-a", true);
    let pt = kms(
        &e,
        "Decrypt",
        json!({"CiphertextBlob": ct["CiphertextBlob"], "EncryptionContext": {"a": "b"}}),
    )
    .await
    .unwrap();
    assert_eq!(pt["Plaintext"], "aGVsbG8=");
    let err = kms(
        &e,
        "Decrypt",
        json!({"CiphertextBlob": ct["CiphertextBlob"]}),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidCiphertextException);
    e.driver.set_unreachable("hsm-b", true);
    let err = kms(
        &e,
        "Encrypt",
        json!({"KeyId": key, "Plaintext": "aGVsbG8="}),
    )
    .await
    .unwrap_err();
    assert_eq!(
        err.code,
        ErrorCode::KMSInvalidStateException,
        "{}",
        err.message
    );
    e.driver.set_unreachable("hsm-a", false);
    e.driver.set_unreachable("hsm-b", false);
    let r = kms(
        &e,
        "GenerateRandom",
        json!({"NumberOfBytes": 16, "CustomKeyStoreId": id}),
    )
    .await
    .unwrap();
    assert_eq!(r["Plaintext"].as_str().unwrap().len(), 24);
    let dk = kms(
        &e,
        "GenerateDataKey",
        json!({"KeyId": key, "KeySpec": "AES_256"}),
    )
    .await
    .unwrap();
    assert!(dk["CiphertextBlob"].is_string());
    let err = kms(
        &e,
        "GenerateDataKeyPair",
        json!({"KeyId": key, "KeyPairSpec": "ECC_NIST_P256"}),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code, ErrorCode::UnsupportedOperationException);

    // Disconnected: keys are Unavailable, crypto fails, the store cannot be deleted while it
    // holds keys, and keys pending deletion stay pending.
    kms(
        &e,
        "DisconnectCustomKeyStore",
        json!({"CustomKeyStoreId": id}),
    )
    .await
    .unwrap();
    let d = kms(&e, "DescribeKey", json!({"KeyId": key})).await.unwrap();
    assert_eq!(d["KeyMetadata"]["KeyState"], "Unavailable");
    let err = kms(
        &e,
        "Encrypt",
        json!({"KeyId": key, "Plaintext": "aGVsbG8="}),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code, ErrorCode::KMSInvalidStateException);
    let err = kms(&e, "DeleteCustomKeyStore", json!({"CustomKeyStoreId": id}))
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::CustomKeyStoreHasCMKsException);
    let err = kms(
        &e,
        "DisconnectCustomKeyStore",
        json!({"CustomKeyStoreId": id}),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code, ErrorCode::CustomKeyStoreInvalidStateException);

    // Reconnect, delete the key at the end of its window: its HSM objects go too.
    kms(&e, "ConnectCustomKeyStore", json!({"CustomKeyStoreId": id}))
        .await
        .unwrap();
    kms(
        &e,
        "ScheduleKeyDeletion",
        json!({"KeyId": key, "PendingWindowInDays": 7}),
    )
    .await
    .unwrap();
    e.clock.advance_ms(8 * 86_400_000);
    assert_eq!(e.svc.sweep_due_deletions().await.unwrap(), 1);
    assert_eq!(
        (e.driver.key_count("hsm-a"), e.driver.key_count("hsm-b")),
        (0, 0)
    );
    kms(
        &e,
        "DisconnectCustomKeyStore",
        json!({"CustomKeyStoreId": id}),
    )
    .await
    .unwrap();
    kms(&e, "DeleteCustomKeyStore", json!({"CustomKeyStoreId": id}))
        .await
        .unwrap();
    let err = kms(
        &e,
        "DescribeCustomKeyStores",
        json!({"CustomKeyStoreId": id}),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code, ErrorCode::CustomKeyStoreNotFoundException);
}

#[tokio::test]
async fn every_connection_error_code() {
    let e = env();
    let (cluster, anchor) = active_cluster(&e).await;
    let id = new_store(&e, &cluster, &anchor, "store").await;
    let connect_to = |expected: &'static str| {
        let e = &e;
        let id = id.clone();
        async move {
            kms(e, "ConnectCustomKeyStore", json!({"CustomKeyStoreId": id}))
                .await
                .unwrap();
            let got = state(e, &id).await;
            if expected != "CONNECTED" {
                assert_eq!(got, ("FAILED".to_owned(), Some(expected.to_owned())));
                let err = kms(e, "ConnectCustomKeyStore", json!({"CustomKeyStoreId": id}))
                    .await
                    .unwrap_err();
                assert_eq!(
                    err.code,
                    ErrorCode::CustomKeyStoreInvalidStateException,
                    "FAILED needs a disconnect first"
                );
            } else {
                assert_eq!(got.0, "CONNECTED");
            }
            kms(
                e,
                "DisconnectCustomKeyStore",
                json!({"CustomKeyStoreId": id}),
            )
            .await
            .unwrap();
        }
    };
    // Wrong password: INVALID_CREDENTIALS, and after five failures the user is locked out.
    kms(
        &e,
        "UpdateCustomKeyStore",
        json!({"CustomKeyStoreId": id, "KeyStorePassword": "wrongPw123"}),
    )
    .await
    .unwrap();
    for _ in 0..5 {
        connect_to("INVALID_CREDENTIALS").await;
    }
    connect_to("USER_LOCKED_OUT").await;

    let e = env();
    let (cluster, anchor) = active_cluster(&e).await;
    let id = new_store(&e, &cluster, &anchor, "store").await;
    let connect = |expected: &'static str| {
        let e = &e;
        let id = id.clone();
        async move {
            kms(e, "ConnectCustomKeyStore", json!({"CustomKeyStoreId": id}))
                .await
                .unwrap();
            let got = state(e, &id).await;
            if expected == "CONNECTED" {
                assert_eq!(got.0, "CONNECTED");
            } else {
                assert_eq!(got, ("FAILED".to_owned(), Some(expected.to_owned())));
            }
            kms(
                e,
                "DisconnectCustomKeyStore",
                json!({"CustomKeyStoreId": id}),
            )
            .await
            .unwrap();
        }
    };
    // Logged in elsewhere.
    e.fleet
        .logged_in_elsewhere
        .write()
        .unwrap()
        .push(cluster.clone());
    connect("USER_LOGGED_IN").await;
    e.fleet.logged_in_elsewhere.write().unwrap().clear();
    // Network errors: every HSM unreachable.
    e.driver.set_unreachable("hsm-a", true);
    e.driver.set_unreachable("hsm-b", true);
    connect("NETWORK_ERRORS").await;
    e.driver.set_unreachable("hsm-a", false);
    e.driver.set_unreachable("hsm-b", false);
    // The user disappeared from the HSMs.
    let pin = e.driver.user_pin("hsm-a");
    e.driver.remove_user("hsm-a");
    e.driver.remove_user("hsm-b");
    connect("USER_NOT_FOUND").await;
    e.driver.set_user_pin("hsm-a", pin.as_deref().unwrap());
    e.driver.set_user_pin("hsm-b", pin.as_deref().unwrap());
    connect("CONNECTED").await;
    // A subnet removed from the declaration.
    e.fleet
        .fleet
        .write()
        .unwrap()
        .subnets
        .retain(|s| s.id != "subnet-0c0c0c0c");
    connect("SUBNET_NOT_FOUND").await;
    e.fleet.fleet.write().unwrap().subnets.push(DeclaredSubnet {
        id: "subnet-0c0c0c0c".into(),
        availability_zone: "us-east-1c".into(),
        private: true,
    });
    // A removed security group rule: Connect itself refuses.
    let mut rules = e.fleet.fleet.read().unwrap().security_group_rules(&cluster);
    rules.retain(|r| r.direction != "outbound");
    e.fleet
        .fleet
        .write()
        .unwrap()
        .security_groups
        .push(super::fleet::DeclaredSecurityGroup {
            cluster_id: cluster.clone(),
            rules,
        });
    let err = kms(&e, "ConnectCustomKeyStore", json!({"CustomKeyStoreId": id}))
        .await
        .unwrap_err();
    assert_eq!(
        err.code,
        ErrorCode::CloudHsmClusterInvalidConfigurationException
    );
    e.fleet.fleet.write().unwrap().security_groups.clear();
    connect("CONNECTED").await;
    // No active HSM left, then no cluster.
    let d = hsm(&e, "DescribeClusters", json!({})).await.unwrap();
    for h in d["Clusters"][0]["Hsms"].as_array().unwrap() {
        hsm(
            &e,
            "DeleteHsm",
            json!({"ClusterId": cluster, "HsmId": h["HsmId"]}),
        )
        .await
        .unwrap();
    }
    connect("INSUFFICIENT_CLOUDHSM_HSMS").await;
    hsm(&e, "DeleteCluster", json!({"ClusterId": cluster}))
        .await
        .unwrap();
    connect("CLUSTER_NOT_FOUND").await;
}

#[tokio::test]
async fn a_rotation_interrupted_by_a_crash_keeps_a_working_password() {
    let e = env();
    let (cluster, anchor) = active_cluster(&e).await;
    let id = new_store(&e, &cluster, &anchor, "store").await;
    kms(&e, "ConnectCustomKeyStore", json!({"CustomKeyStoreId": id}))
        .await
        .unwrap();
    kms(
        &e,
        "DisconnectCustomKeyStore",
        json!({"CustomKeyStoreId": id}),
    )
    .await
    .unwrap();
    // Simulate a crash after the pending password was recorded and C_SetPIN ran on one HSM only.
    let current = e.driver.user_pin("hsm-a").unwrap();
    let mut store = e.svc.load_key_store(&id).unwrap().unwrap();
    store.pending_password_sealed_hex = Some(e.svc.seal_password(&id, "pendingPw123").unwrap());
    e.svc
        .commit(vec![Service::put_key_store(&store).unwrap()])
        .await
        .unwrap();
    e.driver.set_user_pin("hsm-b", "pendingPw123");
    assert_eq!(e.driver.user_pin("hsm-a").unwrap(), current);
    kms(&e, "ConnectCustomKeyStore", json!({"CustomKeyStoreId": id}))
        .await
        .unwrap();
    assert_eq!(state(&e, &id).await.0, "CONNECTED");
    assert_eq!(
        e.driver.user_pin("hsm-a"),
        e.driver.user_pin("hsm-b"),
        "both HSMs rotated to the same new password"
    );
    let _ = cloudhsm::OPERATIONS;
}

#[tokio::test]
async fn an_hsm_added_to_an_active_cluster_gets_the_user_and_every_key() {
    let e = env();
    let (cluster, anchor) = active_cluster(&e).await;
    let id = new_store(&e, &cluster, &anchor, "store").await;
    kms(&e, "ConnectCustomKeyStore", json!({"CustomKeyStoreId": id}))
        .await
        .unwrap();
    let key = kms(
        &e,
        "CreateKey",
        json!({"Origin": "AWS_CLOUDHSM", "CustomKeyStoreId": id}),
    )
    .await
    .unwrap()["KeyMetadata"]["KeyId"]
        .as_str()
        .unwrap()
        .to_owned();
    let ct = kms(
        &e,
        "Encrypt",
        json!({"KeyId": key, "Plaintext": "aGVsbG8="}),
    )
    .await
    .unwrap();

    // Added while the store is connected: synchronised from the store's own sessions, and
    // used at once.
    let h = hsm(
        &e,
        "CreateHsm",
        json!({"ClusterId": cluster, "AvailabilityZone": "us-east-1c"}),
    )
    .await
    .unwrap();
    assert_eq!(h["Hsm"]["State"], "ACTIVE", "{h}");
    assert_eq!(e.driver.key_count("hsm-c"), 1);
    assert_eq!(e.driver.user_pin("hsm-c"), e.driver.user_pin("hsm-a"));
    e.driver.set_unreachable("hsm-a", true);
    e.driver.set_unreachable("hsm-b", true);
    let pt = kms(
        &e,
        "Decrypt",
        json!({"CiphertextBlob": ct["CiphertextBlob"]}),
    )
    .await
    .unwrap();
    assert_eq!(pt["Plaintext"], "aGVsbG8=");
    e.driver.set_unreachable("hsm-a", false);
    e.driver.set_unreachable("hsm-b", false);

    // Added while the store is disconnected: kmsd logs in with the password the store holds.
    kms(
        &e,
        "DisconnectCustomKeyStore",
        json!({"CustomKeyStoreId": id}),
    )
    .await
    .unwrap();
    let h = hsm(
        &e,
        "CreateHsm",
        json!({"ClusterId": cluster, "AvailabilityZone": "us-east-1a"}),
    )
    .await
    .unwrap();
    assert_eq!(h["Hsm"]["State"], "ACTIVE", "{h}");
    assert_eq!(e.driver.key_count("hsm-d"), 1);
    kms(&e, "ConnectCustomKeyStore", json!({"CustomKeyStoreId": id}))
        .await
        .unwrap();
    assert_eq!(state(&e, &id).await, ("CONNECTED".into(), None));
    for other in ["hsm-a", "hsm-b", "hsm-c"] {
        e.driver.set_unreachable(other, true);
    }
    let pt = kms(
        &e,
        "Decrypt",
        json!({"CiphertextBlob": ct["CiphertextBlob"]}),
    )
    .await
    .unwrap();
    assert_eq!(pt["Plaintext"], "aGVsbG8=");
}

#[tokio::test]
async fn an_hsm_added_without_a_key_store_gets_the_user_created_with_kmsd() {
    let e = env();
    let (cluster, _) = active_cluster(&e).await;
    let h = hsm(
        &e,
        "CreateHsm",
        json!({"ClusterId": cluster, "AvailabilityZone": "us-east-1c"}),
    )
    .await
    .unwrap();
    assert_eq!(h["Hsm"]["State"], "ACTIVE", "{h}");
    assert_eq!(e.driver.user_pin("hsm-c").as_deref(), Some("kmsPswd123"));
}

/// A connected store on `cluster` with one key, and the ciphertext of "hello" under it.
pub(super) async fn connected_store_with_key(
    e: &Env,
    cluster: &str,
    anchor: &str,
) -> (String, Value) {
    let store = new_store(e, cluster, anchor, "store").await;
    kms(
        e,
        "ConnectCustomKeyStore",
        json!({"CustomKeyStoreId": store}),
    )
    .await
    .unwrap();
    let key = kms(
        e,
        "CreateKey",
        json!({"Origin": "AWS_CLOUDHSM", "CustomKeyStoreId": store}),
    )
    .await
    .unwrap()["KeyMetadata"]["KeyId"]
        .clone();
    let ct = kms(e, "Encrypt", json!({"KeyId": key, "Plaintext": "aGVsbG8="}))
        .await
        .unwrap()["CiphertextBlob"]
        .clone();
    (store, ct)
}

/// Disconnects the store, then deletes every HSM of its (only) cluster.
async fn disconnect_and_delete_every_hsm(e: &Env, store: &str, cluster: &str) {
    kms(
        e,
        "DisconnectCustomKeyStore",
        json!({"CustomKeyStoreId": store}),
    )
    .await
    .unwrap();
    let d = hsm(e, "DescribeClusters", json!({})).await.unwrap();
    for h in d["Clusters"][0]["Hsms"].as_array().unwrap() {
        hsm(
            e,
            "DeleteHsm",
            json!({"ClusterId": cluster, "HsmId": h["HsmId"]}),
        )
        .await
        .unwrap();
    }
}

async fn backups_of(e: &Env, cluster: &str) -> Vec<Value> {
    hsm(
        e,
        "DescribeBackups",
        json!({"Filters": {"clusterIds": [cluster]}}),
    )
    .await
    .unwrap()["Backups"]
        .as_array()
        .unwrap()
        .clone()
}

async fn hsm_state(e: &Env, cluster: &str, az: &str) -> Value {
    hsm(
        e,
        "CreateHsm",
        json!({"ClusterId": cluster, "AvailabilityZone": az}),
    )
    .await
    .unwrap()["Hsm"]
        .clone()
}

#[tokio::test]
async fn a_cluster_restored_from_a_backup_holds_the_keys_and_shares_the_backup_history() {
    let e = env();
    let (cluster, anchor) = active_cluster(&e).await;
    let first = backups_of(&e, &cluster).await;
    assert_eq!(first.len(), 1, "activation backs the cluster up");
    assert_eq!(first[0]["BackupState"], "READY");
    assert!(first[0]["BackupArn"]
        .as_str()
        .unwrap()
        .starts_with("arn:aws:cloudhsm:us-east-1:111122223333:backup/backup-"));
    let (store, ct) = connected_store_with_key(&e, &cluster, &anchor).await;

    // A day later the sweeper backs the cluster up (with the key, wrapped inside the HSMs).
    assert_eq!(e.svc.sweep_due_backups().await.unwrap(), 0);
    e.clock.advance_ms(24 * 3600 * 1000);
    assert_eq!(e.svc.sweep_due_backups().await.unwrap(), 1);
    let backups = backups_of(&e, &cluster).await;
    assert_eq!(backups.len(), 2);
    let backup = backups[0]["BackupId"].as_str().unwrap().to_owned();
    assert_ne!(backup, first[0]["BackupId"], "newest first by default");
    let asc = hsm(
        &e,
        "DescribeBackups",
        json!({"SortAscending": true, "MaxResults": 1}),
    )
    .await
    .unwrap();
    assert_eq!(asc["Backups"][0]["BackupId"], first[0]["BackupId"]);
    assert_eq!(asc["NextToken"], "1");

    // A cluster created from it: initialised already, ACTIVE once its first HSM holds it.
    let c2 = hsm(&e, "CreateCluster", json!({"HsmType": "hsm1.medium", "SubnetIds": ["subnet-0a0a0a0a", "subnet-0c0c0c0c"], "SourceBackupId": backup})).await.unwrap();
    let c2 = c2["Cluster"].clone();
    assert_eq!(c2["SourceBackupId"], backup.as_str());
    assert!(c2["Certificates"]["ClusterCertificate"].is_string());
    assert!(c2["Certificates"]["ClusterCsr"].is_null());
    let c2 = c2["ClusterId"].as_str().unwrap().to_owned();
    let err = hsm(
        &e,
        "InitializeCluster",
        json!({"ClusterId": c2, "SignedCert": "x", "TrustAnchor": "y"}),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code, ErrorCode::CloudHsmInvalidRequestException);
    // The old store is connected: its sessions pause while the wrapping key is copied.
    let h = hsm_state(&e, &c2, "us-east-1c").await;
    assert_eq!(h["State"], "ACTIVE", "{h}");
    assert_eq!(e.driver.key_count("hsm-c"), 1);
    assert_eq!(state(&e, &store).await, ("CONNECTED".into(), None));
    kms(&e, "Decrypt", json!({"CiphertextBlob": ct}))
        .await
        .unwrap();
    let h = hsm_state(&e, &c2, "us-east-1a").await;
    assert_eq!(h["State"], "ACTIVE", "{h}");
    assert_eq!(e.driver.key_count("hsm-d"), 1);
    let d = hsm(
        &e,
        "DescribeClusters",
        json!({"Filters": {"clusterIds": [c2]}}),
    )
    .await
    .unwrap();
    assert_eq!(d["Clusters"][0]["State"], "ACTIVE");

    // Shared backup history: no second store on it, but the store may move to it.
    let err = kms(&e, "CreateCustomKeyStore", json!({"CustomKeyStoreName": "second", "CloudHsmClusterId": c2, "TrustAnchorCertificate": anchor, "KeyStorePassword": "kmsPswd123"})).await.unwrap_err();
    assert_eq!(
        err.code,
        ErrorCode::CloudHsmClusterInUseException,
        "{}",
        err.message
    );
    // A reconnect rotates the password: the restored HSMs still have the backup's, which kmsd
    // kept for them.
    for op in [
        "DisconnectCustomKeyStore",
        "ConnectCustomKeyStore",
        "DisconnectCustomKeyStore",
    ] {
        kms(&e, op, json!({"CustomKeyStoreId": store}))
            .await
            .unwrap();
    }
    assert_ne!(e.driver.user_pin("hsm-a"), e.driver.user_pin("hsm-c"));
    kms(
        &e,
        "UpdateCustomKeyStore",
        json!({"CustomKeyStoreId": store, "CloudHsmClusterId": c2}),
    )
    .await
    .unwrap();
    kms(
        &e,
        "ConnectCustomKeyStore",
        json!({"CustomKeyStoreId": store}),
    )
    .await
    .unwrap();
    assert_eq!(state(&e, &store).await, ("CONNECTED".into(), None));
    assert_eq!(e.driver.user_pin("hsm-c"), e.driver.user_pin("hsm-d"));
    e.driver.set_unreachable("hsm-a", true);
    e.driver.set_unreachable("hsm-b", true);
    let pt = kms(&e, "Decrypt", json!({"CiphertextBlob": ct}))
        .await
        .unwrap();
    assert_eq!(pt["Plaintext"], "aGVsbG8=");

    // DeleteBackup keeps it restorable for 7 days; it cannot seed a cluster meanwhile.
    let d = hsm(&e, "DeleteBackup", json!({"BackupId": backup}))
        .await
        .unwrap();
    assert_eq!(d["Backup"]["BackupState"], "PENDING_DELETION");
    assert!(d["Backup"]["DeleteTimestamp"].is_number());
    let err = hsm(&e, "CreateCluster", json!({"HsmType": "hsm1.medium", "SubnetIds": ["subnet-0a0a0a0a"], "SourceBackupId": backup})).await.unwrap_err();
    assert_eq!(err.code, ErrorCode::CloudHsmInvalidRequestException);
    let r = hsm(&e, "RestoreBackup", json!({"BackupId": backup}))
        .await
        .unwrap();
    assert_eq!(r["Backup"]["BackupState"], "READY");
    let m = hsm(
        &e,
        "ModifyBackupAttributes",
        json!({"BackupId": backup, "NeverExpires": true}),
    )
    .await
    .unwrap();
    assert_eq!(m["Backup"]["NeverExpires"], true);
    hsm(&e, "DeleteBackup", json!({"BackupId": backup}))
        .await
        .unwrap();
    e.clock.advance_ms(8 * 24 * 3600 * 1000);
    let err = hsm(&e, "RestoreBackup", json!({"BackupId": backup}))
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::CloudHsmResourceNotFoundException);
    let err = hsm(&e, "CreateCluster", json!({"HsmType": "hsm1.medium", "SubnetIds": ["subnet-0a0a0a0a"], "SourceBackupId": "backup-aaaaaaaaaaa"})).await.unwrap_err();
    assert_eq!(err.code, ErrorCode::CloudHsmResourceNotFoundException);
}

#[tokio::test]
async fn an_hsm_created_after_the_last_was_deleted_gets_the_latest_backup() {
    let e = env();
    let (cluster, anchor) = active_cluster(&e).await;
    let (store, ct) = connected_store_with_key(&e, &cluster, &anchor).await;
    disconnect_and_delete_every_hsm(&e, &store, &cluster).await;
    let backups = backups_of(&e, &cluster).await;
    assert_eq!(backups.len(), 3, "activation and each removal");
    // The first token is erased: the wrapping key comes from the other one the backup names.
    e.driver.wipe("hsm-a");
    let h = hsm_state(&e, &cluster, "us-east-1a").await;
    assert_eq!(h["State"], "ACTIVE", "{h}");
    assert_eq!(e.driver.key_count("hsm-a"), 1);
    hsm_state(&e, &cluster, "us-east-1b").await;
    kms(
        &e,
        "ConnectCustomKeyStore",
        json!({"CustomKeyStoreId": store}),
    )
    .await
    .unwrap();
    assert_eq!(state(&e, &store).await, ("CONNECTED".into(), None));
    e.driver.set_unreachable("hsm-b", true);
    let pt = kms(&e, "Decrypt", json!({"CiphertextBlob": ct}))
        .await
        .unwrap();
    assert_eq!(pt["Plaintext"], "aGVsbG8=");

    // With no token holding the wrapping key any more, the HSM is DEGRADED with the reason.
    e.driver.set_unreachable("hsm-b", false);
    disconnect_and_delete_every_hsm(&e, &store, &cluster).await;
    for t in ["hsm-a", "hsm-b", "hsm-c", "hsm-d"] {
        e.driver.wipe(t);
    }
    let h = hsm_state(&e, &cluster, "us-east-1a").await;
    assert_eq!(h["State"], "DEGRADED", "{h}");
    assert!(
        h["StateMessage"]
            .as_str()
            .unwrap()
            .contains("still holds the cluster wrapping key"),
        "{h}"
    );
}

#[tokio::test]
async fn a_backup_copied_to_another_region_names_its_source() {
    let mut e = env();
    let (cluster, _) = active_cluster(&e).await;
    let backup = backups_of(&e, &cluster).await[0]["BackupId"]
        .as_str()
        .unwrap()
        .to_owned();
    let err = hsm(
        &e,
        "CopyBackupToRegion",
        json!({"BackupId": backup, "DestinationRegion": "us-east-1"}),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code, ErrorCode::CloudHsmInvalidRequestException);
    let r = hsm(
        &e,
        "CopyBackupToRegion",
        json!({"BackupId": backup, "DestinationRegion": "us-west-2"}),
    )
    .await
    .unwrap();
    assert_eq!(r["DestinationBackup"]["SourceBackup"], backup.as_str());
    assert_eq!(r["DestinationBackup"]["SourceRegion"], "us-east-1");
    assert_eq!(r["DestinationBackup"]["SourceCluster"], cluster.as_str());
    // The copy lives in the destination Region only.
    e.caller.region = "us-west-2".into();
    let d = hsm(
        &e,
        "DescribeBackups",
        json!({"Filters": {"sourceBackupIds": [backup]}}),
    )
    .await
    .unwrap();
    let copies = d["Backups"].as_array().unwrap();
    assert_eq!(copies.len(), 1, "{d}");
    assert_eq!(copies[0]["BackupState"], "READY");
    assert!(copies[0]["CopyTimestamp"].is_number());
    assert_ne!(copies[0]["BackupId"], backup.as_str());
    let err = hsm(&e, "DeleteBackup", json!({"BackupId": backup}))
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::CloudHsmResourceNotFoundException);
    // A cluster in the destination Region restores from the copy.
    let c = hsm(&e, "CreateCluster", json!({"HsmType": "hsm1.medium", "SubnetIds": ["subnet-0c0c0c0c"], "SourceBackupId": copies[0]["BackupId"]}))
        .await
        .unwrap();
    let restored = c["Cluster"]["ClusterId"].as_str().unwrap().to_owned();
    let h = hsm_state(&e, &restored, "us-east-1c").await;
    assert_eq!(h["State"], "ACTIVE", "{h}");
    assert_eq!(e.driver.user_pin("hsm-c").as_deref(), Some("kmsPswd123"));
}

#[tokio::test]
async fn a_failed_daily_backup_is_retried_an_hour_later() {
    let e = env();
    let (cluster, anchor) = active_cluster(&e).await;
    connected_store_with_key(&e, &cluster, &anchor).await;
    e.clock.advance_ms(24 * 3600 * 1000);
    e.driver.set_unreachable("hsm-a", true);
    e.driver.set_unreachable("hsm-b", true);
    assert_eq!(e.svc.sweep_due_backups().await.unwrap(), 0);
    e.driver.set_unreachable("hsm-a", false);
    e.driver.set_unreachable("hsm-b", false);
    assert_eq!(
        e.svc.sweep_due_backups().await.unwrap(),
        0,
        "not before an hour"
    );
    e.clock.advance_ms(3600 * 1000);
    assert_eq!(e.svc.sweep_due_backups().await.unwrap(), 1);
    assert_eq!(backups_of(&e, &cluster).await.len(), 2);
}

#[tokio::test]
async fn a_store_connected_through_the_loss_of_every_hsm_uses_the_restored_one() {
    let e = env();
    let (cluster, anchor) = active_cluster(&e).await;
    let (store, ct) = connected_store_with_key(&e, &cluster, &anchor).await;
    let d = hsm(&e, "DescribeClusters", json!({})).await.unwrap();
    for h in d["Clusters"][0]["Hsms"].as_array().unwrap() {
        hsm(
            &e,
            "DeleteHsm",
            json!({"ClusterId": cluster, "HsmId": h["HsmId"]}),
        )
        .await
        .unwrap();
    }
    assert!(kms(&e, "Decrypt", json!({"CiphertextBlob": ct}))
        .await
        .is_err());
    let h = hsm_state(&e, &cluster, "us-east-1c").await;
    assert_eq!(h["State"], "ACTIVE", "{h}");
    assert_eq!(state(&e, &store).await, ("CONNECTED".into(), None));
    let pt = kms(&e, "Decrypt", json!({"CiphertextBlob": ct}))
        .await
        .unwrap();
    assert_eq!(pt["Plaintext"], "aGVsbG8=");
}
