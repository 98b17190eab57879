//! Multi-Region keys end to end with aws-sdk-kms: `mrk-` ids, ReplicateKey, ciphertexts and
//! signatures that cross Regions, shared rotation, UpdatePrimaryRegion, the deletion rules and
//! the kms:MultiRegionKeyType condition key.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use aws_sdk_kms::error::ProvideErrorMetadata;
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{KeySpec, KeyState, KeyUsageType, MultiRegionKeyType, Tag};
use common::Server;

const EAST: &str = "us-east-1";
const WEST: &str = "us-west-2";

fn clients(server: &Server) -> (aws_sdk_kms::Client, aws_sdk_kms::Client) {
    let (a, s) = server.admin_credentials();
    (
        server.client_with(&a, &s, EAST),
        server.client_with(&a, &s, WEST),
    )
}

async fn config(kms: &aws_sdk_kms::Client, id: &str) -> aws_sdk_kms::types::KeyMetadata {
    kms.describe_key()
        .key_id(id)
        .send()
        .await
        .unwrap()
        .key_metadata()
        .unwrap()
        .clone()
}

#[tokio::test]
async fn a_multi_region_key_replicates_and_its_ciphertexts_cross_regions() {
    let server = Server::start(&["--dev"]);
    let (east, west) = clients(&server);
    let meta = east
        .create_key()
        .multi_region(true)
        .description("orders, everywhere")
        .send()
        .await
        .unwrap()
        .key_metadata()
        .unwrap()
        .clone();
    let id = meta.key_id().to_owned();
    assert!(id.starts_with("mrk-") && id.len() == 36, "{id}");
    assert_eq!(meta.multi_region(), Some(true));
    let mrc = meta.multi_region_configuration().unwrap();
    assert_eq!(
        mrc.multi_region_key_type(),
        Some(&MultiRegionKeyType::Primary)
    );
    assert_eq!(mrc.primary_key().unwrap().region(), Some(EAST));
    assert!(mrc.replica_keys().is_empty());

    let r = east
        .replicate_key()
        .key_id(&id)
        .replica_region(WEST)
        .description("orders, west")
        .tags(
            Tag::builder()
                .tag_key("site")
                .tag_value("west")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let replica = r.replica_key_metadata().unwrap();
    let west_arn = format!("arn:aws:kms:{WEST}:111122223333:key/{id}");
    assert_eq!(replica.arn(), Some(west_arn.as_str()));
    assert_eq!(replica.key_state(), Some(&KeyState::Enabled));
    assert_eq!(replica.description(), Some("orders, west"));
    assert_eq!(r.replica_tags().len(), 1);
    assert!(r.replica_policy().unwrap().contains("kms:*"));
    let rm = config(&west, &id).await;
    let rmc = rm.multi_region_configuration().unwrap();
    assert_eq!(
        rmc.multi_region_key_type(),
        Some(&MultiRegionKeyType::Replica)
    );
    assert_eq!(rmc.replica_keys()[0].region(), Some(WEST));
    let pm = config(&east, &id).await;
    assert_eq!(
        pm.multi_region_configuration().unwrap().replica_keys()[0].arn(),
        Some(west_arn.as_str())
    );
    assert_eq!(
        pm.description(),
        Some("orders, everywhere"),
        "own description"
    );

    // Errors: a second replica in the same Region; replicating a replica.
    let e = east
        .replicate_key()
        .key_id(&id)
        .replica_region(WEST)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(e.is_already_exists_exception(), "{e:?}");
    let e = west
        .replicate_key()
        .key_id(&id)
        .replica_region("eu-west-1")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(e.is_unsupported_operation_exception(), "{e:?}");
    assert_eq!(
        e.message(),
        Some(format!("{west_arn} is not a multi-region primary key.").as_str())
    );

    // A ciphertext made in one Region decrypts in the other, by either ARN or none.
    let ct = east
        .encrypt()
        .key_id(&id)
        .plaintext(Blob::new(b"east".to_vec()))
        .send()
        .await
        .unwrap()
        .ciphertext_blob()
        .unwrap()
        .clone();
    for key in [None, Some(west_arn.clone())] {
        let pt = west
            .decrypt()
            .ciphertext_blob(ct.clone())
            .set_key_id(key)
            .send()
            .await
            .unwrap();
        assert_eq!(pt.plaintext().unwrap().as_ref(), b"east");
        assert_eq!(pt.key_id(), Some(west_arn.as_str()));
    }

    // Rotation of the primary reaches the replica; the replica does not rotate itself.
    east.rotate_key_on_demand()
        .key_id(&id)
        .send()
        .await
        .unwrap();
    let after = config(&east, &id).await;
    assert_eq!(
        config(&west, &id).await.current_key_material_id(),
        after.current_key_material_id()
    );
    let ct2 = west
        .encrypt()
        .key_id(&id)
        .plaintext(Blob::new(b"west".to_vec()))
        .send()
        .await
        .unwrap()
        .ciphertext_blob()
        .unwrap()
        .clone();
    let pt = east.decrypt().ciphertext_blob(ct2).send().await.unwrap();
    assert_eq!(pt.plaintext().unwrap().as_ref(), b"west");
    for e in [
        west.enable_key_rotation()
            .key_id(&id)
            .send()
            .await
            .unwrap_err()
            .into_service_error()
            .code()
            .map(str::to_owned),
        west.rotate_key_on_demand()
            .key_id(&id)
            .send()
            .await
            .unwrap_err()
            .into_service_error()
            .code()
            .map(str::to_owned),
    ] {
        assert_eq!(e.as_deref(), Some("UnsupportedOperationException"));
    }

    // kms:MultiRegionKeyType: this replica's policy refuses Encrypt on replicas.
    let policy = r#"{"Version":"2012-10-17","Statement":[
        {"Sid":"root","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:root"},"Action":"kms:*","Resource":"*"},
        {"Sid":"no-replica-encrypt","Effect":"Deny","Principal":"*","Action":"kms:Encrypt","Resource":"*",
         "Condition":{"StringEquals":{"kms:MultiRegionKeyType":"REPLICA"}}}]}"#;
    west.put_key_policy()
        .key_id(&id)
        .policy(policy)
        .send()
        .await
        .unwrap();
    let e = west
        .encrypt()
        .key_id(&id)
        .plaintext(Blob::new(b"x".to_vec()))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(e.code(), Some("AccessDeniedException"));
    east.put_key_policy()
        .key_id(&id)
        .policy(policy)
        .send()
        .await
        .unwrap();
    east.encrypt()
        .key_id(&id)
        .plaintext(Blob::new(b"x".to_vec()))
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn primary_region_moves_and_deletion_waits_for_replicas() {
    let server = Server::start(&["--dev"]);
    let (east, west) = clients(&server);
    let id = east
        .create_key()
        .multi_region(true)
        .send()
        .await
        .unwrap()
        .key_metadata()
        .unwrap()
        .key_id()
        .to_owned();
    east.replicate_key()
        .key_id(&id)
        .replica_region(WEST)
        .send()
        .await
        .unwrap();
    let e = west
        .update_primary_region()
        .key_id(&id)
        .primary_region(EAST)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(e.is_unsupported_operation_exception(), "{e:?}");
    east.update_primary_region()
        .key_id(&id)
        .primary_region(WEST)
        .send()
        .await
        .unwrap();
    let kind = |m: aws_sdk_kms::types::KeyMetadata| {
        m.multi_region_configuration()
            .unwrap()
            .multi_region_key_type()
            .unwrap()
            .clone()
    };
    assert_eq!(kind(config(&west, &id).await), MultiRegionKeyType::Primary);
    assert_eq!(kind(config(&east, &id).await), MultiRegionKeyType::Replica);

    // The primary (now west) waits for its replica before its own waiting period starts.
    let s = west
        .schedule_key_deletion()
        .key_id(&id)
        .pending_window_in_days(7)
        .send()
        .await
        .unwrap();
    assert_eq!(s.key_state(), Some(&KeyState::PendingReplicaDeletion));
    assert_eq!(s.deletion_date(), None);
    east.schedule_key_deletion()
        .key_id(&id)
        .pending_window_in_days(7)
        .send()
        .await
        .unwrap();
    common::advance_dev_clock(server.addr, 8 * 86_400).await;
    let e = east
        .describe_key()
        .key_id(&id)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(e.is_not_found_exception(), "the replica is deleted: {e:?}");
    let primary = config(&west, &id).await;
    assert_eq!(primary.key_state(), Some(&KeyState::PendingDeletion));
    assert!(primary.deletion_date().is_some());
    assert!(primary
        .multi_region_configuration()
        .unwrap()
        .replica_keys()
        .is_empty());
    common::advance_dev_clock(server.addr, 8 * 86_400).await;
    assert!(west
        .describe_key()
        .key_id(&id)
        .send()
        .await
        .unwrap_err()
        .into_service_error()
        .is_not_found_exception());
}

#[tokio::test]
async fn an_asymmetric_multi_region_key_signs_in_one_region_and_verifies_in_another() {
    let server = Server::start(&["--dev"]);
    let (east, west) = clients(&server);
    let id = east
        .create_key()
        .multi_region(true)
        .key_spec(KeySpec::EccNistP256)
        .key_usage(KeyUsageType::SignVerify)
        .send()
        .await
        .unwrap()
        .key_metadata()
        .unwrap()
        .key_id()
        .to_owned();
    east.replicate_key()
        .key_id(&id)
        .replica_region(WEST)
        .send()
        .await
        .unwrap();
    let pk = |c: &aws_sdk_kms::Client| {
        let c = c.clone();
        let id = id.clone();
        async move {
            c.get_public_key()
                .key_id(&id)
                .send()
                .await
                .unwrap()
                .public_key()
                .unwrap()
                .clone()
        }
    };
    assert_eq!(pk(&east).await, pk(&west).await);
    let sig = east
        .sign()
        .key_id(&id)
        .message(Blob::new(b"m".to_vec()))
        .signing_algorithm(aws_sdk_kms::types::SigningAlgorithmSpec::EcdsaSha256)
        .send()
        .await
        .unwrap();
    let v = west
        .verify()
        .key_id(&id)
        .message(Blob::new(b"m".to_vec()))
        .signature(sig.signature().unwrap().clone())
        .signing_algorithm(aws_sdk_kms::types::SigningAlgorithmSpec::EcdsaSha256)
        .send()
        .await
        .unwrap();
    assert!(v.signature_valid());
}
