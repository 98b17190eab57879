//! The cluster jobs run from their one list, in order, and under the lease.

use kms_types::*;

use super::*;
use crate::service::tests::{call, new_key, setup};

async fn schedule_deletion(svc: &Service, c: &crate::Caller, id: &str) {
    call::<ScheduleKeyDeletionResponse>(
        svc,
        c,
        "ScheduleKeyDeletion",
        serde_json::json!({"KeyId": id, "PendingWindowInDays": 7}),
    )
    .await
    .unwrap();
}

async fn exists(svc: &Service, c: &crate::Caller, id: &str) -> bool {
    call::<DescribeKeyResponse>(svc, c, "DescribeKey", serde_json::json!({"KeyId": id}))
        .await
        .is_ok()
}

#[tokio::test]
async fn a_round_runs_every_cluster_job_in_order_and_under_the_lease() {
    let (svc, clock, c) = setup();
    let (a, b) = (new_key(&svc, &c).await, new_key(&svc, &c).await);
    schedule_deletion(&svc, &c, &a).await;
    clock.advance_ms(8 * 86_400_000);
    let done = svc.run_cluster_jobs_now().await.unwrap();
    assert_eq!(
        done,
        vec![
            ("DeletedKeys", 1),
            ("RotatedKeys", 0),
            ("BackedUpClusters", 0),
            ("ExpiredKeyMaterial", 0)
        ]
    );
    assert!(!exists(&svc, &c, &a).await && exists(&svc, &c, &b).await);

    schedule_deletion(&svc, &c, &b).await;
    clock.advance_ms(8 * 86_400_000);
    // The in-memory store grants the lease: this node runs the round.
    assert!(svc.run_cluster_jobs().await.unwrap());
    assert!(!exists(&svc, &c, &b).await);
}
