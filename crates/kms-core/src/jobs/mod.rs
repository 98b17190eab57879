//! Background jobs: what runs without a request, and where.
//!
//! **Once across a cluster** ([`CLUSTER_JOBS`]): scheduled key deletion, automatic rotation,
//! daily CloudHSM cluster backups and imported-material expiry. A node runs a round of them
//! only while it holds the store's job lease `sweeper` ([`Service::run_cluster_jobs`]); every
//! job also works inside the write section and re-reads what is due, so a round that overlaps
//! another (a lease lost mid-round) still does each deletion, rotation and expiry once.
//!
//! **On every node** (they tend the node's own state, so kmsd runs them beside serving, not
//! under the lease): writing this node's buffered key last-usage (`Service::flush_key_usage`),
//! restoring this node's custom key store connections and health-checking its external key
//! stores' proxies (`Service::check_xks_proxy`: the health each node reports in `/readyz` and
//! `/metrics` is its own view of the proxy).

mod deletion;

use std::future::Future;
use std::pin::Pin;

use kms_types::KmsError;

use crate::service::Service;

/// What a job returns: how many things it did.
type JobFuture<'a> = Pin<Box<dyn Future<Output = Result<usize, KmsError>> + Send + 'a>>;

/// A job that runs once across a cluster.
pub struct ClusterJob {
    /// Its name in logs.
    pub name: &'static str,
    /// The member that counts what it did in `kmsd`'s `--dev` clock endpoint answer.
    pub counted_as: &'static str,
    run: for<'a> fn(&'a Service) -> JobFuture<'a>,
}

fn deletions(s: &Service) -> JobFuture<'_> {
    Box::pin(s.sweep_due_deletions())
}

fn rotations(s: &Service) -> JobFuture<'_> {
    Box::pin(s.sweep_due_rotations())
}

fn backups(s: &Service) -> JobFuture<'_> {
    Box::pin(s.sweep_due_backups())
}

fn material_expiry(s: &Service) -> JobFuture<'_> {
    Box::pin(s.sweep_expired_key_material())
}

/// The lease a node holds while it runs a round of [`CLUSTER_JOBS`].
pub const CLUSTER_JOBS_LEASE: &str = "sweeper";

/// Every job that runs once across a cluster, in the order a round runs them.
pub const CLUSTER_JOBS: &[ClusterJob] = &[
    ClusterJob {
        name: "deletion",
        counted_as: "DeletedKeys",
        run: deletions,
    },
    ClusterJob {
        name: "rotation",
        counted_as: "RotatedKeys",
        run: rotations,
    },
    ClusterJob {
        name: "cluster backup",
        counted_as: "BackedUpClusters",
        run: backups,
    },
    ClusterJob {
        name: "imported key material expiry",
        counted_as: "ExpiredKeyMaterial",
        run: material_expiry,
    },
];

impl Service {
    /// One round of [`CLUSTER_JOBS`] if this node gets the lease (`Ok(false)` when another
    /// node runs them now). A job that fails is logged and the round goes on.
    pub async fn run_cluster_jobs(&self) -> Result<bool, KmsError> {
        let Some(_lease) = self.job_lease(CLUSTER_JOBS_LEASE).await? else {
            return Ok(false);
        };
        for job in CLUSTER_JOBS {
            if let Err(e) = (job.run)(self).await {
                tracing::error!(job = job.name, error = %e, "background job failed");
            }
        }
        Ok(true)
    }

    /// Runs every one of [`CLUSTER_JOBS`] now, without the lease, stopping at the first
    /// failure: what each did, by [`ClusterJob::counted_as`] (kmsd's `--dev` clock endpoint).
    pub async fn run_cluster_jobs_now(&self) -> Result<Vec<(&'static str, usize)>, KmsError> {
        let mut done = Vec::with_capacity(CLUSTER_JOBS.len());
        for job in CLUSTER_JOBS {
            done.push((job.counted_as, (job.run)(self).await?));
        }
        Ok(done)
    }
}

#[cfg(test)]
mod tests;
