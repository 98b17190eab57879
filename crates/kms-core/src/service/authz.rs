//! Authorisation as AWS KMS decides it: explicit deny anywhere wins; otherwise the key policy must
//! allow the caller directly (same account), or allow its account root — delegating to IAM, so
//! one of the caller's identity policies must allow too; cross-account calls need both the key
//! policy and the caller's identity policy; a grant allows its operations to its grantee.

use std::sync::Arc;

use kms_types::{ErrorCode, KmsError};

use super::Service;
use crate::context::Caller;
use crate::model::KeyRecord;
use crate::policy::{ConditionContext, Policy, PolicyKind, Principal, Request};

/// Operations authorised by the caller's identity policies alone (no key resource).
pub(crate) fn is_iam_only(op: &str) -> bool {
    matches!(
        op,
        "CreateKey"
            | "ListKeys"
            | "ListAliases"
            | "GenerateRandom"
            | "ListRetirableGrants"
            | "CreateCustomKeyStore"
            | "DescribeCustomKeyStores"
            | "ConnectCustomKeyStore"
            | "DisconnectCustomKeyStore"
            | "UpdateCustomKeyStore"
            | "DeleteCustomKeyStore"
    )
}

fn denied(caller: &Caller, action: &str, resource: &str, why: &str) -> KmsError {
    KmsError::new(
        ErrorCode::AccessDeniedException,
        format!(
            "User: {} is not authorized to perform: {action} on resource: {resource} {why}",
            caller.principal_arn
        ),
    )
}

/// The principal as policies see it.
fn principal_of(caller: &Caller) -> Principal {
    let role_arn = caller
        .principal_arn
        .strip_prefix(&format!("arn:aws:sts::{}:assumed-role/", caller.account))
        .and_then(|rest| {
            rest.split('/')
                .next()
                .map(|role| format!("arn:aws:iam::{}:role/{role}", caller.account))
        });
    Principal {
        arn: caller.principal_arn.clone(),
        account: caller.account.clone(),
        role_arn,
    }
}

/// The condition key that lists a key's aliases.
const RESOURCE_ALIASES: &str = "kms:ResourceAliases";

impl Service {
    /// The condition context of a request: the caller's, the request's, and the key's values.
    fn condition_context(
        &self,
        caller: &Caller,
        action: &str,
        key: Option<&KeyRecord>,
        tags: &std::collections::BTreeMap<String, String>,
    ) -> ConditionContext {
        let mut c = match &caller.request {
            Some(body) => super::conditions::request_conditions(action, body),
            None => ConditionContext::new(),
        };
        if let Some(ip) = caller.source_ip {
            c.set("aws:SourceIp", ip.to_string());
        }
        c.set("aws:SecureTransport", caller.secure_transport.to_string());
        c.set("aws:CurrentTime", kms_audit_time(self.now_ms()));
        c.set("aws:EpochTime", (self.now_ms() / 1000).to_string());
        c.set("aws:PrincipalArn", caller.principal_arn.clone());
        c.set("aws:PrincipalAccount", caller.account.clone());
        c.set("aws:userid", caller.user_id.clone());
        if let Some(name) = caller
            .principal_arn
            .strip_prefix(&format!("arn:aws:iam::{}:user/", caller.account))
        {
            c.set("aws:username", name.to_owned());
        }
        c.set("kms:CallerAccount", caller.account.clone());
        c.set("aws:ViaAWSService", "false");
        c.set("kms:GrantIsForAWSResource", "false");
        for (k, v) in tags {
            c.set(&format!("aws:PrincipalTag/{k}"), v.clone());
        }
        if let Some(k) = key {
            for (t, v) in &k.tags {
                c.set(&format!("aws:ResourceTag/{t}"), v.clone());
            }
            c.set("kms:KeySpec", k.key_spec.clone());
            c.set("kms:KeyUsage", k.key_usage.clone());
            c.set("kms:KeyOrigin", k.origin.clone());
            c.set("kms:MultiRegion", k.multi_region.to_string());
            if k.multi_region {
                let kind = if k.is_primary() { "PRIMARY" } else { "REPLICA" };
                c.set("kms:MultiRegionKeyType", kind.to_owned());
            }
        }
        c
    }

    /// Authorises an action kmsd adds beyond the KMS API (such as `kmsd:ReadAudit`): no key
    /// is involved, so the caller's identity policies alone decide, on resource `*` (the
    /// account admin's `"Action": "*"` allows it; other principals need a policy naming it).
    pub fn authorize_kmsd_action(&self, caller: &Caller, action: &str) -> Result<(), KmsError> {
        self.authorize(caller, action, None, "*")
    }

    /// Authorises `action` for `caller` on `key` (None: an IAM-only action on `resource`).
    pub(crate) fn authorize(
        &self,
        caller: &Caller,
        action: &str,
        key: Option<&KeyRecord>,
        resource: &str,
    ) -> Result<(), KmsError> {
        if caller.skip_authorization {
            return Ok(());
        }
        let policy_owner = caller.principal_arn.clone();
        let identity = self.identity_policies(&role_or_self(caller, &policy_owner))?;
        let key_policy = key.map(|k| self.key_policy(k)).transpose()?;
        let policies = || {
            key_policy
                .iter()
                .map(|p| p.as_ref())
                .chain(identity.policies.iter())
        };
        // Building the condition context costs a dozen allocations per request: only when a
        // policy reads it (grants, checked last, build their own).
        let reads_context = policies().any(Policy::reads_context);
        let mut context = if reads_context {
            self.condition_context(caller, action, key, &identity.tags)
        } else {
            ConditionContext::new()
        };
        if let Some(k) = key {
            // kms:ResourceAliases costs a store read: only when some policy reads it.
            if policies().any(|p| p.uses_condition_key(RESOURCE_ALIASES)) {
                context.set_many(RESOURCE_ALIASES, self.alias_names_of(k)?);
            }
        }
        let principal = principal_of(caller);
        let req = Request {
            principal: &principal,
            action,
            resource,
            context: &context,
        };
        let mut id_allow = false;
        for p in &identity.policies {
            let e = p.evaluate(&req);
            if e.explicit_deny.is_some() {
                return Err(denied(
                    caller,
                    action,
                    resource,
                    "with an explicit deny in an identity-based policy",
                ));
            }
            id_allow |= e.allow;
        }
        let (Some(key), Some(key_policy)) = (key, key_policy) else {
            return if id_allow {
                Ok(())
            } else {
                Err(denied(
                    caller,
                    action,
                    resource,
                    &format!("because no identity-based policy allows the {action} action"),
                ))
            };
        };
        let e = key_policy.evaluate(&req);
        if e.explicit_deny.is_some() {
            return Err(denied(
                caller,
                action,
                resource,
                "with an explicit deny in a resource-based policy",
            ));
        }
        let same_account = caller.account == key.account;
        let allowed = (e.allow_principal && (same_account || id_allow))
            || (e.allow_account && id_allow)
            || if reads_context {
                self.grant_allows(caller, action, key, &context)
            } else {
                let full = self.condition_context(caller, action, Some(key), &identity.tags);
                self.grant_allows(caller, action, key, &full)
            };
        if allowed {
            return Ok(());
        }
        if e.allow_account && !id_allow {
            return Err(denied(
                caller,
                action,
                resource,
                &format!("because no identity-based policy allows the {action} action"),
            ));
        }
        Err(denied(
            caller,
            action,
            resource,
            &format!("because no resource-based policy allows the {action} action"),
        ))
    }

    /// The names of the aliases pointing at `key` (at most 50, as in AWS's kms:ResourceAliases).
    fn alias_names_of(&self, key: &KeyRecord) -> Result<Vec<String>, KmsError> {
        Ok(self
            .store
            .list_aliases(&key.account, &key.region, Some(&key.key_id), None, 50)
            .map_err(|e| KmsError::internal(e.to_string()))?
            .into_iter()
            .map(|a| a.name)
            .collect())
    }

    /// The parsed key policy (cached with the key until the key changes).
    fn key_policy(&self, key: &KeyRecord) -> Result<Arc<Policy>, KmsError> {
        if let Some(hit) = self
            .policy_cache
            .read()
            .ok()
            .and_then(|c| c.get(&key.policy).cloned())
        {
            return Ok(hit);
        }
        let p = Arc::new(Policy::parse(&key.policy, PolicyKind::Key).map_err(|e| {
            tracing::error!(key = %key.arn(), error = %e.0, "stored key policy does not parse");
            KmsError::internal("the key's policy could not be evaluated")
        })?);
        if let Ok(mut c) = self.policy_cache.write() {
            if c.len() > 10_000 {
                c.clear();
            }
            c.insert(key.policy.clone(), p.clone());
        }
        Ok(p)
    }

    /// The lockout safety check: a new key policy must let the caller call PutKeyPolicy.
    pub(crate) fn check_lockout(
        &self,
        caller: &Caller,
        policy: &str,
        key: &KeyRecord,
    ) -> Result<(), KmsError> {
        let parsed = Policy::parse(policy, PolicyKind::Key)
            .map_err(|e| KmsError::new(ErrorCode::MalformedPolicyDocumentException, e.0))?;
        let identity = self.identity_policies(&role_or_self(caller, &caller.principal_arn))?;
        let context = self.condition_context(caller, "kms:PutKeyPolicy", Some(key), &identity.tags);
        let principal = principal_of(caller);
        let resource = key.arn();
        let req = Request {
            principal: &principal,
            action: "kms:PutKeyPolicy",
            resource: &resource,
            context: &context,
        };
        let e = parsed.evaluate(&req);
        let id_allow = identity.policies.iter().any(|p| p.evaluate(&req).allow);
        let ok = e.explicit_deny.is_none()
            && ((e.allow_principal && caller.account == key.account)
                || (e.allow_account && id_allow));
        if ok || caller.skip_authorization {
            Ok(())
        } else {
            Err(KmsError::new(
                ErrorCode::MalformedPolicyDocumentException,
                "The new key policy will not allow you to update the key policy in the future (lockout safety check). Set BypassPolicyLockoutSafetyCheck to override.",
            ))
        }
    }
}

/// Sessions are governed by their role's identity policies.
fn role_or_self(caller: &Caller, arn: &str) -> String {
    principal_of(caller)
        .role_arn
        .unwrap_or_else(|| arn.to_owned())
}

fn kms_audit_time(ms: i64) -> String {
    let fmt = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000))
        .ok()
        .and_then(|t| t.format(fmt).ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #[test]
    fn current_time_format() {
        assert_eq!(
            super::kms_audit_time(1_700_000_000_000),
            "2023-11-14T22:13:20Z"
        );
        assert_eq!(super::kms_audit_time(0), "1970-01-01T00:00:00Z");
    }
}
