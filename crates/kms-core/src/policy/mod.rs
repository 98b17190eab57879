//! The IAM policy language as AWS KMS evaluates it: parsing, validation and evaluation of key
//! policies and identity policies. Pure: no I/O, no clock.
//!
//! [`Policy::parse`] validates a document once (the caller caches the result);
//! [`Policy::evaluate`] reports, for one [`Request`], whether an applicable statement denies and
//! how allowing statements matched. Combining key policy, identity policies and grants is the
//! caller's job.
//!
//! # Semantics
//!
//! * **Actions** match case-insensitively, with `*` and `?` wildcards. Action strings must be
//!   `"*"` or `service:Operation`.
//! * **Resources**: `"*"` matches everything (in a key policy: the key itself). ARN patterns are
//!   compared component by component (a wildcard never spans a `:`), case-sensitively; policy
//!   variables are substituted in version 2012-10-17 documents.
//! * **Principals** (key policies): `"*"` / `{"AWS": "*"}` match everyone and set
//!   [`Evaluation::allow_principal`]. An account (`"111122223333"` or
//!   `arn:aws:iam::111122223333:root`) matches every principal of that account and sets
//!   [`Evaluation::allow_account`] ("delegate to IAM") — unless the caller is that account's root,
//!   which then counts as [`Evaluation::allow_principal`]. A user or role ARN matches that exact
//!   principal (a role ARN also matches its assumed-role sessions via [`Principal::role_arn`]); an
//!   assumed-role session ARN matches that session. Service, Federated and CanonicalUser principals
//!   never match. For Deny statements any principal match (direct or account) applies the deny.
//! * **NotPrincipal** is only accepted with `"Effect": "Deny"` (AWS no longer supports it with
//!   Allow). As in AWS, the caller escapes the deny only if both its account and its identity are
//!   listed: the account (12 digits or root ARN) **and** its own ARN (or, for an assumed-role
//!   session, the session ARN or its role ARN); for a root caller the account suffices; `"*"`
//!   excludes everyone.
//! * **Conditions**: see the `condition` module docs — values of one key are ORed, keys and
//!   operators are ANDed, a missing key makes positive operators false and negated operators
//!   (`StringNotEquals`, `StringNotLike`, `NotIpAddress`, ...) true; `IfExists`, `ForAnyValue:`
//!   and `ForAllValues:` behave as in IAM.
//! * **Policy variables** (`${aws:username}`, `${aws:PrincipalTag/team}`, `${key, 'default'}`,
//!   `${*}`/`${?}`/`${$}`) are substituted in Resource and in string/ARN condition values of
//!   version 2012-10-17 policies; the substituted text is matched literally. A variable whose key
//!   is absent (or multi-valued) from the context makes that value match nothing.
//! * Documents are strict: unknown members, both `X` and `NotX`, missing Effect / Action /
//!   Resource, empty arrays, wrongly typed elements, duplicate JSON members, duplicate Sids and
//!   unknown operators are errors whose message names the problem.

use std::collections::HashMap;

mod condition;
mod glob;
mod parse;
#[cfg(test)]
mod tests;

use parse::{Effect, PrincipalElem, Principals, Statement};

/// Which kind of document is parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PolicyKind {
    /// A key policy: every statement must have Principal or NotPrincipal.
    Key,
    /// An identity policy (attached to a user or role): Principal/NotPrincipal are forbidden.
    Identity,
}

/// Why a policy document was rejected. `Display` is the message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PolicyError(pub String);

/// A parsed and validated policy document.
#[derive(Debug, Clone)]
pub struct Policy {
    statements: Vec<Statement>,
    kind: PolicyKind,
}

/// The principal making a request, as policies see it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Principal {
    /// `arn:aws:iam::111122223333:user/alice`, `...:role/R`, `...:root`, or
    /// `arn:aws:sts::111122223333:assumed-role/R/session`.
    pub arn: String,
    /// The caller's account (12 digits).
    pub account: String,
    /// For assumed-role sessions: the role's ARN `arn:aws:iam::<acct>:role/R`, so a policy naming
    /// the role matches its sessions.
    pub role_arn: Option<String>,
}

impl Principal {
    /// Builds a principal from its ARN, deriving the account and (for `assumed-role` sessions)
    /// the role ARN. `None` if `arn` is not an IAM/STS principal ARN.
    pub fn from_arn(arn: &str) -> Option<Principal> {
        let mut parts = arn.splitn(6, ':');
        let (
            Some("arn"),
            Some(partition),
            Some(service),
            Some(_region),
            Some(account),
            Some(resource),
        ) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        )
        else {
            return None;
        };
        if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let role_arn = match (service, resource.split_once('/')) {
            ("sts", Some(("assumed-role", rest))) => {
                let (role, _session) = rest.split_once('/')?;
                Some(format!("arn:{partition}:iam::{account}:role/{role}"))
            }
            ("iam" | "sts", _) => None,
            _ => return None,
        };
        Some(Principal {
            arn: arn.to_owned(),
            account: account.to_owned(),
            role_arn,
        })
    }

    /// Whether this is an account's root user.
    fn is_root(&self) -> bool {
        self.arn.ends_with(":root")
    }
}

/// The request as policies see it.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// Who is calling.
    pub principal: &'a Principal,
    /// The action, e.g. `kms:Encrypt` (matched case-insensitively).
    pub action: &'a str,
    /// The resource: key ARN, alias ARN, or `"*"` for actions without a resource.
    pub resource: &'a str,
    /// Condition key values.
    pub context: &'a ConditionContext,
}

/// The outcome of evaluating one policy for one request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Evaluation {
    /// Sid (or `statement N`, 1-based) of the first applicable Deny statement.
    pub explicit_deny: Option<String>,
    /// An Allow applied whose Principal names this caller directly: its ARN, its role's ARN (for
    /// sessions), `"*"` / `{"AWS": "*"}`, or its account when the caller is that account's root.
    /// Key policies only.
    pub allow_principal: bool,
    /// An Allow applied whose Principal is the caller's account (`arn:aws:iam::<acct>:root` or the
    /// 12-digit id): access is delegated to the caller's IAM (identity) policies. Key policies only.
    pub allow_account: bool,
    /// An Allow without Principal element applied. Identity policies only.
    pub allow: bool,
}

/// Condition keys whose suffix (after this lowercase prefix) is case-sensitive.
const CASE_SENSITIVE_SUFFIX: &[&str] = &[
    "kms:encryptioncontext:",
    "aws:resourcetag/",
    "aws:requesttag/",
    "aws:principaltag/",
];

/// Normalises a condition key: lowercased, except the suffix of `kms:EncryptionContext:<k>`,
/// `aws:ResourceTag/<k>`, `aws:RequestTag/<k>` and `aws:PrincipalTag/<k>`, which keeps its case.
pub fn normalize_key(key: &str) -> String {
    for prefix in CASE_SENSITIVE_SUFFIX {
        if let Some(head) = key.get(..prefix.len()) {
            if head.eq_ignore_ascii_case(prefix) {
                return format!("{prefix}{}", &key[prefix.len()..]);
            }
        }
    }
    key.to_ascii_lowercase()
}

/// Whether `key` is already in normalised form.
fn is_normalized(key: &str) -> bool {
    for prefix in CASE_SENSITIVE_SUFFIX {
        if let Some(head) = key.get(..prefix.len()) {
            if head.eq_ignore_ascii_case(prefix) {
                return head == *prefix;
            }
        }
    }
    !key.bytes().any(|b| b.is_ascii_uppercase())
}

/// Condition key values of a request. Keys are case-insensitive, except the part after the
/// prefix of `kms:EncryptionContext:<k>`, `aws:ResourceTag/<k>`, `aws:RequestTag/<k>` and
/// `aws:PrincipalTag/<k>`. A key may hold several values (`kms:EncryptionContextKeys`,
/// `aws:TagKeys`, `kms:GrantOperations`); a key with no values counts as absent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConditionContext {
    values: HashMap<String, Vec<String>>,
}

impl ConditionContext {
    /// An empty context.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `key` to the single `value`, replacing earlier values.
    pub fn set(&mut self, key: &str, value: impl Into<String>) {
        self.values.insert(normalize_key(key), vec![value.into()]);
    }

    /// Sets `key` to `values`, replacing earlier values.
    pub fn set_many(&mut self, key: &str, values: Vec<String>) {
        self.values.insert(normalize_key(key), values);
    }

    /// Adds one value to `key`.
    pub fn push(&mut self, key: &str, value: impl Into<String>) {
        self.values
            .entry(normalize_key(key))
            .or_default()
            .push(value.into());
    }

    /// Removes `key`.
    pub fn remove(&mut self, key: &str) {
        self.values.remove(&normalize_key(key));
    }

    /// The values of `key`, if set.
    pub fn get(&self, key: &str) -> Option<&[String]> {
        if is_normalized(key) {
            self.get_normalized(key)
        } else {
            self.get_normalized(&normalize_key(key))
        }
    }

    /// Lookup by an already normalised key (no allocation).
    fn get_normalized(&self, key: &str) -> Option<&[String]> {
        self.values.get(key).map(Vec::as_slice)
    }

    /// Iterates over (normalised key, values).
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[String])> {
        self.values.iter().map(|(k, v)| (k.as_str(), v.as_slice()))
    }
}

/// How a principal element matched the caller.
#[derive(Debug, Clone, Copy, Default)]
struct PrincipalMatch {
    direct: bool,
    account: bool,
}

fn match_principals(p: &Principals, caller: &Principal) -> PrincipalMatch {
    let mut m = PrincipalMatch {
        direct: p.any,
        account: false,
    };
    if p.accounts.contains(&caller.account) {
        if caller.is_root() {
            m.direct = true;
        } else {
            m.account = true;
        }
    }
    if !m.direct && identity_listed(p, caller) {
        m.direct = true;
    }
    m
}

/// Whether the caller's own identity (ARN, or its role ARN for sessions) is listed.
fn identity_listed(p: &Principals, caller: &Principal) -> bool {
    p.arns
        .iter()
        .any(|a| *a == caller.arn || caller.role_arn.as_deref() == Some(a.as_str()))
}

/// Whether a NotPrincipal element excludes the caller (see the module docs).
fn not_principal_excludes(p: &Principals, caller: &Principal) -> bool {
    if p.any {
        return true;
    }
    let account_listed = p.accounts.contains(&caller.account);
    account_listed && (caller.is_root() || identity_listed(p, caller))
}

impl Policy {
    /// Parses and validates a policy document. `PolicyKind::Key` requires a Principal or
    /// NotPrincipal in every statement; `PolicyKind::Identity` forbids them. The error message
    /// names the problem, e.g. `Statement 2: Effect must be "Allow" or "Deny", not "allow"`.
    pub fn parse(text: &str, kind: PolicyKind) -> Result<Policy, PolicyError> {
        Ok(Policy {
            statements: parse::parse(text, kind)?,
            kind,
        })
    }

    /// The kind of document this was parsed as.
    pub fn kind(&self) -> PolicyKind {
        self.kind
    }

    /// Number of statements.
    pub fn statement_count(&self) -> usize {
        self.statements.len()
    }

    /// Whether any statement has a condition on `key` (any case), so callers can skip
    /// computing costly context values no statement reads.
    pub fn uses_condition_key(&self, key: &str) -> bool {
        let key = normalize_key(key);
        self.statements
            .iter()
            .any(|st| st.conditions.iter().any(|c| c.key() == key))
    }

    /// Whether evaluating this policy reads the request's condition context at all (a
    /// statement has a Condition, or a Resource with a policy variable). When no evaluated
    /// policy does, callers can skip building the context.
    pub fn reads_context(&self) -> bool {
        self.statements.iter().any(|st| {
            !st.conditions.is_empty() || st.resource.patterns.iter().any(|p| p.has_variables())
        })
    }

    /// Evaluates the statements that apply to this request (all of them: the result does not
    /// depend on statement order except which Deny is reported).
    pub fn evaluate(&self, req: &Request<'_>) -> Evaluation {
        let mut out = Evaluation::default();
        for st in &self.statements {
            let Some(how) = applies(st, req) else {
                continue;
            };
            match st.effect {
                Effect::Deny => {
                    if out.explicit_deny.is_none() {
                        out.explicit_deny = Some(st.label.clone());
                    }
                }
                Effect::Allow => match how {
                    None => out.allow = true,
                    Some(m) => {
                        out.allow_principal |= m.direct;
                        out.allow_account |= m.account;
                    }
                },
            }
        }
        out
    }
}

/// Whether the statement applies; `Some(None)` when it has no Principal element,
/// `Some(Some(match))` with how the Principal matched.
fn applies(st: &Statement, req: &Request<'_>) -> Option<Option<PrincipalMatch>> {
    let action_hit = st.action.any
        || st
            .action
            .patterns
            .iter()
            .any(|p| p.matches(req.action, req.context));
    if action_hit == st.action.negated {
        return None;
    }
    let resource_hit = st.resource.any
        || st
            .resource
            .patterns
            .iter()
            .any(|p| p.matches(req.resource, req.context));
    if resource_hit == st.resource.negated {
        return None;
    }
    let how = match &st.principal {
        PrincipalElem::Absent => None,
        PrincipalElem::Is(p) => {
            let m = match_principals(p, req.principal);
            if !m.direct && !m.account {
                return None;
            }
            Some(m)
        }
        PrincipalElem::Not(p) => {
            if not_principal_excludes(p, req.principal) {
                return None;
            }
            Some(PrincipalMatch {
                direct: true,
                account: false,
            })
        }
    };
    if !st.conditions.iter().all(|c| c.evaluate(req.context)) {
        return None;
    }
    Some(how)
}
