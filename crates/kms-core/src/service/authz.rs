//! The service's side of authorisation: it answers the [`Facts`] a decision needs from the
//! registry and the store, and asks its [`crate::authz::Authorizer`].

use kms_types::KmsError;

use super::Service;
use crate::authz::Facts;
use crate::context::Caller;
use crate::model::KeyRecord;
use crate::policy::ConditionContext;

pub(crate) use crate::authz::is_iam_only;

impl Facts for Service {
    fn identity_policies(
        &self,
        principal_arn: &str,
    ) -> Result<std::sync::Arc<crate::iam::IdentityView>, KmsError> {
        Service::identity_policies(self, principal_arn)
    }

    fn alias_names_of(&self, key: &KeyRecord) -> Result<Vec<String>, KmsError> {
        Ok(self
            .store
            .list_aliases(&key.account, &key.region, Some(&key.key_id), None, 50)
            .map_err(|e| KmsError::internal(e.to_string()))?
            .into_iter()
            .map(|a| a.name)
            .collect())
    }

    fn grant_allows(
        &self,
        caller: &Caller,
        action: &str,
        key: &KeyRecord,
        context: &ConditionContext,
    ) -> bool {
        Service::grant_allows(self, caller, action, key, context)
    }

    fn now_ms(&self) -> i64 {
        Service::now_ms(self)
    }
}

impl Service {
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
        self.authorizer.decide(self, caller, action, key, resource)
    }

    /// The lockout safety check: a new key policy must let the caller call PutKeyPolicy.
    pub(crate) fn check_lockout(
        &self,
        caller: &Caller,
        policy: &str,
        key: &KeyRecord,
    ) -> Result<(), KmsError> {
        self.authorizer.check_lockout(self, caller, policy, key)
    }
}
