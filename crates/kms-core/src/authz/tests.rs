//! The decision over facts given directly: no store, no service state.

use std::cell::Cell;

use super::*;
use crate::service::tests::{admin_caller, new_key};
use crate::{ManualClock, MemStore, Service};

/// Facts a test states outright.
struct Given {
    identity: Vec<&'static str>,
    grant: bool,
    now_ms: i64,
    grant_asked: Cell<bool>,
}

impl Facts for Given {
    fn identity_policies(&self, _: &str) -> Result<Arc<IdentityView>, KmsError> {
        Ok(Arc::new(IdentityView {
            policies: self
                .identity
                .iter()
                .map(|t| Policy::parse(t, PolicyKind::Identity).unwrap())
                .collect(),
            tags: Default::default(),
        }))
    }
    fn alias_names_of(&self, _: &KeyRecord) -> Result<Vec<String>, KmsError> {
        Ok(vec![])
    }
    fn grant_allows(&self, _: &Caller, _: &str, _: &KeyRecord, _: &ConditionContext) -> bool {
        self.grant_asked.set(true);
        self.grant
    }
    fn now_ms(&self) -> i64 {
        self.now_ms
    }
}

fn given(identity: Vec<&'static str>, grant: bool) -> Given {
    Given {
        identity,
        grant,
        now_ms: 1_700_000_000_000,
        grant_asked: Cell::new(false),
    }
}

const ALLOW_ENCRYPT: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"kms:Encrypt","Resource":"*"}]}"#;
const DENY_ENCRYPT: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Action":"kms:Encrypt","Resource":"*"}]}"#;
const ALLOW_BEFORE_2020: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"kms:Encrypt","Resource":"*","Condition":{"DateLessThan":{"aws:CurrentTime":"2020-01-01T00:00:00Z"}}}]}"#;

/// A key with the default key policy (the account's root may do everything, via IAM).
async fn default_key() -> KeyRecord {
    let root = Arc::new(kms_crypto::RootKey::from_bytes(&[5u8; 32]).unwrap());
    let svc = Service::new(
        Arc::new(MemStore::default()),
        root,
        Arc::new(ManualClock::default()),
    );
    let id = new_key(&svc, &admin_caller()).await;
    svc.registry
        .key("us-east-1", &id)
        .unwrap()
        .unwrap()
        .record
        .clone()
}

fn user() -> Caller {
    Caller {
        skip_authorization: false,
        principal_arn: "arn:aws:iam::111122223333:user/bob".into(),
        ..admin_caller()
    }
}

#[tokio::test]
async fn the_decision_follows_the_key_policy_identity_policies_grants_and_time_given() {
    let key = default_key().await;
    let arn = key.arn();
    let a = Authorizer::default();
    let decide = |facts: &Given| a.decide(facts, &user(), "kms:Encrypt", Some(&key), &arn);

    assert!(decide(&given(vec![ALLOW_ENCRYPT], false)).is_ok());

    let none = given(vec![], false);
    let e = decide(&none).unwrap_err();
    assert_eq!(e.code, ErrorCode::AccessDeniedException);
    assert!(e
        .message
        .ends_with("because no identity-based policy allows the kms:Encrypt action"));
    assert!(none.grant_asked.get(), "grants are the last resort");

    let e = decide(&given(vec![ALLOW_ENCRYPT, DENY_ENCRYPT], true)).unwrap_err();
    assert!(e
        .message
        .ends_with("with an explicit deny in an identity-based policy"));

    assert!(decide(&given(vec![], true)).is_ok(), "a grant allows alone");

    // aws:CurrentTime is the facts' time.
    let mut past = given(vec![ALLOW_BEFORE_2020], false);
    assert!(decide(&past).is_err());
    past.now_ms = 1_500_000_000_000;
    assert!(decide(&past).is_ok());
}

#[tokio::test]
async fn an_iam_only_action_needs_an_identity_policy() {
    let a = Authorizer::default();
    let facts = given(vec![ALLOW_ENCRYPT], false);
    assert!(a.decide(&facts, &user(), "kms:Encrypt", None, "*").is_ok());
    let e = a
        .decide(&facts, &user(), "kms:CreateKey", None, "*")
        .unwrap_err();
    assert!(e
        .message
        .ends_with("because no identity-based policy allows the kms:CreateKey action"));
    assert!(!facts.grant_asked.get(), "no key, no grants");
}
