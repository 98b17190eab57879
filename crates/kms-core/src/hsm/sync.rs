//! Bringing an HSM added to an active cluster up to date, as CloudHSM's cluster sync does: the
//! crypto user (with the password the cluster's key store holds), the cluster wrapping key, and
//! every key of the key store, copied from an HSM that has it without leaving the HSMs.

use super::cluster::{ClusterRecord, HsmRecord};
use super::driver::HsmFault;
use crate::service::Service;

/// Why an added HSM could not be synchronised (kept as its state message).
fn failure(what: &str, e: impl std::fmt::Display) -> String {
    format!("The HSM could not be synchronised with its cluster ({what}): {e}")
}

impl Service {
    /// Synchronises `added` (already in `cluster.hsms`) with the rest of its cluster. Returns
    /// the number of keys copied, or why it failed. Called under the write lock.
    pub(crate) async fn sync_added_hsm(
        &self,
        cluster: &ClusterRecord,
        added: &HsmRecord,
    ) -> Result<usize, String> {
        let env = self
            .hsm_env()
            .ok_or_else(|| failure("setup", "no HSMs declared"))?;
        let password = self
            .crypto_user_password(cluster)
            .map_err(|e| failure("crypto user password", e))?
            .ok_or_else(|| {
                failure(
                    "crypto user",
                    "kmsd does not know the crypto user's password (created before kmsd kept it); create a key store with it, then delete and re-create this HSM",
                )
            })?;
        let fleet = env
            .fleet
            .load()
            .map_err(|e| failure("HSM declaration", e))?;
        let mut declared = Vec::new();
        for h in cluster.hsms.iter().filter(|h| h.state == "ACTIVE") {
            let d = fleet
                .hsm(&h.token_label)
                .ok_or_else(|| {
                    failure(
                        "HSM declaration",
                        format!("{} is not declared", h.token_label),
                    )
                })?
                .clone();
            let so = env.fleet.so_pin(&d).map_err(|e| failure("SO PIN", e))?;
            declared.push((h.hsm_id.clone(), d, so));
        }
        let keys = self
            .lineage_keys(cluster)
            .map_err(|e| failure("reading keys", e))?;
        // PKCS#11 login state is per process and token: the SO logins that copy the cluster
        // wrapping key are refused while this process holds crypto-user sessions there, so a
        // connected store pauses (its sessions are logged out) for the few milliseconds of the
        // copy and is logged in again on every HSM, the new one included when it got the user.
        let tokens: Vec<String> = declared
            .iter()
            .map(|(_, d, _)| d.token_label.clone())
            .collect();
        let paused = self.pause_stores_on(&tokens);
        let driver = env.driver.clone();
        let added_id = added.hsm_id.clone();
        let copied = tokio::task::spawn_blocking(move || {
            copy_to_added_hsm(driver.as_ref(), &declared, &added_id, &keys, &password)
        })
        .await
        .map_err(|e| failure("task", e));
        self.resume_stores(paused).await;
        let copied =
            copied.and_then(|r| r.map_err(|e| failure("copying the crypto user and keys", e)));
        if copied.is_err() {
            self.connections()
                .drop_hsm(&cluster.cluster_id, &added.hsm_id);
        }
        copied
    }
}

/// In the HSMs: the crypto user on the added HSM, the cluster wrapping key from another HSM,
/// then every key copied wrapped under it. Returns the number of keys.
fn copy_to_added_hsm(
    driver: &dyn super::HsmDriver,
    declared: &[(String, super::DeclaredHsm, zeroize::Zeroizing<String>)],
    added_id: &str,
    keys: &[([u8; 16], String)],
    password: &str,
) -> Result<usize, HsmFault> {
    let (_, new_hsm, new_so) = declared
        .iter()
        .find(|(id, _, _)| id == added_id)
        .ok_or_else(|| HsmFault::Unreachable("the added HSM is not active".into()))?;
    let others: Vec<_> = declared
        .iter()
        .filter(|(id, _, _)| id != added_id)
        .collect();
    driver.create_user(new_hsm, new_so, password)?;
    // The cluster wrapping key comes from another HSM that answers (never from the new one
    // alone, which would make it a different key).
    let mut last = HsmFault::Unreachable("no other active HSM".into());
    let prepared = others.iter().any(|(_, d, so)| {
        match driver.prepare_cluster(&[(d, so.as_str()), (new_hsm, new_so.as_str())], password) {
            Ok(_) => true,
            Err(e) => {
                last = e;
                false
            }
        }
    });
    if !prepared {
        return Err(last);
    }
    let target = driver.login(new_hsm, password)?;
    // The first other HSM that answers gives every key it holds (a cluster restored from an
    // older backup lacks the store's newer keys; copies already made are skipped).
    for (_, d, _) in &others {
        let source = match driver.login(d, password) {
            Ok(s) => s,
            Err(e) => {
                last = e;
                continue;
            }
        };
        let mut copied = 0;
        let result = keys.iter().try_for_each(|(id, label)| {
            match driver.replicate_key(&source, std::slice::from_ref(&target), id, label) {
                Ok(()) => {
                    copied += 1;
                    Ok(())
                }
                Err(HsmFault::KeyNotFound) => Ok(()),
                Err(e) => Err(e),
            }
        });
        source.logout();
        match result {
            Ok(()) => {
                target.logout();
                return Ok(copied);
            }
            Err(e) => last = e,
        }
    }
    target.logout();
    Err(last)
}
