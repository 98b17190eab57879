//! Parsing and validation of policy documents.

use std::collections::HashSet;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use super::condition::{Condition, Operator};
use super::glob::{ArnPattern, Pattern, Syntax};
use super::{normalize_key, PolicyError, PolicyKind};

/// `Allow` or `Deny`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Effect {
    Allow,
    Deny,
}

/// One entry of the `AWS` list of a Principal element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AwsPrincipal {
    /// `*`: everyone.
    Any,
    /// A 12-digit account id or `arn:<partition>:iam::<acct>:root`: the account.
    Account(String),
    /// A user, role, assumed-role session or federated user ARN: that exact principal.
    Arn(String),
}

/// The principals of a Principal or NotPrincipal element.
#[derive(Debug, Clone, Default)]
pub(crate) struct Principals {
    /// `"Principal": "*"` or `{"AWS": "*"}` among the entries.
    pub any: bool,
    /// Accounts (12 digits).
    pub accounts: Vec<String>,
    /// Exact principal ARNs.
    pub arns: Vec<String>,
}

/// Who a statement is about.
#[derive(Debug, Clone)]
pub(crate) enum PrincipalElem {
    /// No Principal element (identity policies).
    Absent,
    /// `Principal`.
    Is(Principals),
    /// `NotPrincipal`.
    Not(Principals),
}

/// A list of patterns, possibly negated (`NotAction`, `NotResource`).
#[derive(Debug, Clone)]
pub(crate) struct Matcher<P> {
    pub negated: bool,
    pub any: bool,
    pub patterns: Vec<P>,
}

/// One parsed statement.
#[derive(Debug, Clone)]
pub(crate) struct Statement {
    /// `Sid`, or `statement N` (1-based) without one.
    pub label: String,
    pub effect: Effect,
    pub principal: PrincipalElem,
    pub action: Matcher<Pattern>,
    pub resource: Matcher<ArnPattern>,
    pub conditions: Vec<Condition>,
}

/// A JSON value read with duplicate object keys rejected (serde_json keeps the last one
/// silently, which for a policy could hide a second `Effect`).
struct StrictValue(Value);

impl<'de> Deserialize<'de> for StrictValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(StrictValue)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(StrictValue(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(k) = map.next_key::<String>()? {
            if out.contains_key(&k) {
                return Err(de::Error::custom(format!("duplicate member \"{k}\"")));
            }
            let StrictValue(v) = map.next_value()?;
            out.insert(k, v);
        }
        Ok(Value::Object(out))
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Reads a "string or non-empty array of strings" element.
fn string_list<'a>(v: &'a Value, what: &str) -> Result<Vec<&'a str>, String> {
    match v {
        Value::String(s) => Ok(vec![s.as_str()]),
        Value::Array(items) if items.is_empty() => {
            Err(format!("{what} must not be an empty array"))
        }
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                item.as_str().ok_or_else(|| {
                    format!(
                        "{what} element {} must be a string, not {}",
                        i + 1,
                        type_name(item)
                    )
                })
            })
            .collect(),
        other => Err(format!(
            "{what} must be a string or an array of strings, not {}",
            type_name(other)
        )),
    }
}

/// Reads a condition value: a string, number or boolean, or a non-empty array of them.
fn condition_values(v: &Value, what: &str) -> Result<Vec<String>, String> {
    let scalar = |v: &Value| -> Option<String> {
        match v {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    };
    match v {
        Value::Array(items) if items.is_empty() => {
            Err(format!("{what} must not be an empty array"))
        }
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                scalar(item).ok_or_else(|| {
                    format!(
                        "{what} element {} must be a string, number or boolean, not {}",
                        i + 1,
                        type_name(item)
                    )
                })
            })
            .collect(),
        other => scalar(other).map(|s| vec![s]).ok_or_else(|| {
            format!(
                "{what} must be a string, number, boolean or an array of them, not {}",
                type_name(other)
            )
        }),
    }
}

fn is_account_id(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

/// Classifies one `AWS` principal string.
fn aws_principal(s: &str) -> Result<AwsPrincipal, String> {
    if s == "*" {
        return Ok(AwsPrincipal::Any);
    }
    if is_account_id(s) {
        return Ok(AwsPrincipal::Account(s.to_owned()));
    }
    let invalid = |why: &str| format!("invalid AWS principal \"{s}\": {why}");
    let parts: Vec<&str> = s.splitn(6, ':').collect();
    let [arn, partition, service, region, account, resource] = parts.as_slice() else {
        return Err(invalid(
            "expected \"*\", a 12-digit account id or an IAM/STS ARN",
        ));
    };
    if *arn != "arn" || partition.is_empty() {
        return Err(invalid(
            "expected \"*\", a 12-digit account id or an IAM/STS ARN",
        ));
    }
    if s.contains(['*', '?']) {
        return Err(invalid("wildcards are not allowed in principal ARNs (use \"*\" with a condition on aws:PrincipalArn)"));
    }
    if !region.is_empty() {
        return Err(invalid("IAM/STS ARNs have an empty region"));
    }
    if !is_account_id(account) {
        return Err(invalid("the account must be 12 digits"));
    }
    let (kind, name) = resource.split_once('/').unwrap_or((resource, ""));
    let ok = match (*service, kind) {
        ("iam", "root") => return Ok(AwsPrincipal::Account((*account).to_owned())),
        ("iam", "user" | "role") => !name.is_empty(),
        ("sts", "assumed-role") => name
            .split_once('/')
            .is_some_and(|(r, sess)| !r.is_empty() && !sess.is_empty()),
        ("sts", "federated-user") => !name.is_empty(),
        _ => false,
    };
    if ok {
        Ok(AwsPrincipal::Arn(s.to_owned()))
    } else {
        Err(invalid(
            "expected an account root, user, role or assumed-role ARN",
        ))
    }
}

fn principal_elem(v: &Value, name: &str) -> Result<Principals, String> {
    let mut out = Principals::default();
    let obj = match v {
        Value::String(s) if s == "*" => {
            out.any = true;
            return Ok(out);
        }
        Value::Object(o) => o,
        other => {
            return Err(format!(
                "{name} must be \"*\" or an object such as {{\"AWS\": ...}}, not {}",
                describe(other)
            ))
        }
    };
    if obj.is_empty() {
        return Err(format!("{name} must not be an empty object"));
    }
    for (typ, list) in obj {
        let what = format!("{name}.{typ}");
        let items = string_list(list, &what)?;
        match typ.as_str() {
            "AWS" => {
                for item in items {
                    match aws_principal(item).map_err(|e| format!("{name}: {e}"))? {
                        AwsPrincipal::Any => out.any = true,
                        AwsPrincipal::Account(a) => out.accounts.push(a),
                        AwsPrincipal::Arn(a) => out.arns.push(a),
                    }
                }
            }
            // Service, federated and canonical-user principals are accepted but never match an
            // IAM caller of this server.
            "Service" | "Federated" | "CanonicalUser" => {
                if let Some(empty) = items.iter().position(|s| s.trim().is_empty()) {
                    return Err(format!("{what} element {} must not be empty", empty + 1));
                }
            }
            other => return Err(format!("{name} has unknown principal type \"{other}\" (expected AWS, Service, Federated or CanonicalUser)")),
        }
    }
    Ok(out)
}

fn describe(v: &Value) -> String {
    match v {
        Value::String(s) => format!("\"{s}\""),
        other => type_name(other).to_owned(),
    }
}

fn action_patterns(v: &Value, name: &str) -> Result<Matcher<Pattern>, String> {
    let items = string_list(v, name)?;
    let mut patterns = Vec::with_capacity(items.len());
    let mut any = false;
    for a in items {
        if a == "*" {
            any = true;
        } else {
            let valid = a
                .split_once(':')
                .is_some_and(|(svc, op)| !svc.is_empty() && !op.is_empty() && !op.contains(':'))
                && !a.contains(char::is_whitespace);
            if !valid {
                return Err(format!("{name} \"{a}\" is invalid: expected \"*\" or \"service:Operation\" such as \"kms:Encrypt\""));
            }
        }
        patterns.push(Pattern::compile(
            a,
            Syntax {
                wildcards: true,
                variables: false,
                fold: true,
            },
        )?);
    }
    Ok(Matcher {
        negated: name == "NotAction",
        any,
        patterns,
    })
}

fn resource_patterns(
    v: &Value,
    name: &str,
    variables: bool,
) -> Result<Matcher<ArnPattern>, String> {
    let items = string_list(v, name)?;
    let mut patterns = Vec::with_capacity(items.len());
    for r in items {
        if r != "*" && !r.starts_with("arn:") {
            return Err(format!(
                "{name} \"{r}\" is invalid: expected \"*\" or an ARN"
            ));
        }
        patterns.push(ArnPattern::compile(r, variables).map_err(|e| format!("{name} {e}"))?);
    }
    let any = patterns.iter().any(ArnPattern::is_star);
    Ok(Matcher {
        negated: name == "NotResource",
        any,
        patterns,
    })
}

/// A policy condition key must look like `prefix:name`.
fn valid_condition_key(k: &str) -> bool {
    k.split_once(':')
        .is_some_and(|(p, n)| !p.is_empty() && !n.is_empty())
        && !k.contains(char::is_whitespace)
}

fn conditions(v: &Value, variables: bool) -> Result<Vec<Condition>, String> {
    let obj = v
        .as_object()
        .ok_or_else(|| format!("Condition must be an object, not {}", type_name(v)))?;
    let mut out = Vec::new();
    for (op_name, block) in obj {
        let op = Operator::parse(op_name)?;
        let keys = block.as_object().ok_or_else(|| {
            format!(
                "Condition operator {op_name} must map to an object of condition keys, not {}",
                type_name(block)
            )
        })?;
        if keys.is_empty() {
            return Err(format!(
                "Condition operator {op_name} has no condition keys"
            ));
        }
        for (key, values) in keys {
            if !valid_condition_key(key) {
                return Err(format!("invalid condition key \"{key}\" in {op_name}: expected \"prefix:name\" such as \"kms:CallerAccount\""));
            }
            let values = condition_values(values, &format!("{op_name} value for key {key}"))?;
            out.push(Condition::compile(
                op_name,
                op,
                normalize_key(key),
                &values,
                variables,
            )?);
        }
    }
    Ok(out)
}

const STATEMENT_MEMBERS: &[&str] = &[
    "Sid",
    "Effect",
    "Principal",
    "NotPrincipal",
    "Action",
    "NotAction",
    "Resource",
    "NotResource",
    "Condition",
];

/// Exactly one of `a` / `b`, or an error naming the problem.
fn one_of<'a>(
    st: &'a Map<String, Value>,
    n: usize,
    a: &'a str,
    b: &'a str,
    required: bool,
) -> Result<Option<(&'a str, &'a Value)>, String> {
    match (st.get(a), st.get(b)) {
        (Some(_), Some(_)) => Err(format!("Statement {n} has both {a} and {b}")),
        (Some(v), None) => Ok(Some((a, v))),
        (None, Some(v)) => Ok(Some((b, v))),
        (None, None) if required => Err(format!("Statement {n} is missing {a} (or {b})")),
        (None, None) => Ok(None),
    }
}

fn statement(
    v: &Value,
    n: usize,
    kind: PolicyKind,
    variables: bool,
    sids: &mut HashSet<String>,
) -> Result<Statement, String> {
    let st = v
        .as_object()
        .ok_or_else(|| format!("Statement {n} must be an object, not {}", type_name(v)))?;
    if let Some(unknown) = st.keys().find(|k| !STATEMENT_MEMBERS.contains(&k.as_str())) {
        return Err(format!(
            "Statement {n} has unknown member \"{unknown}\" (expected {})",
            STATEMENT_MEMBERS.join(", ")
        ));
    }
    let ctx = |e: String| format!("Statement {n}: {e}");
    let sid = match st.get("Sid") {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => {
            return Err(ctx(format!(
                "Sid must be a string, not {}",
                type_name(other)
            )))
        }
    };
    if let Some(s) = sid.as_deref().filter(|s| !s.is_empty()) {
        if !sids.insert(s.to_owned()) {
            return Err(ctx(format!(
                "duplicate Sid \"{s}\" (statement ids must be unique)"
            )));
        }
    }
    let effect = match st.get("Effect") {
        None => return Err(format!("Statement {n} is missing Effect")),
        Some(Value::String(s)) if s == "Allow" => Effect::Allow,
        Some(Value::String(s)) if s == "Deny" => Effect::Deny,
        Some(other) => {
            return Err(ctx(format!(
                "Effect must be \"Allow\" or \"Deny\", not {}",
                describe(other)
            )))
        }
    };
    let principal = match one_of(st, n, "Principal", "NotPrincipal", false)? {
        None if kind == PolicyKind::Key => {
            return Err(format!("Statement {n} is missing Principal (or NotPrincipal): every key policy statement must name its principals"));
        }
        None => PrincipalElem::Absent,
        Some((name, _)) if kind == PolicyKind::Identity => {
            return Err(ctx(format!("{name} is not allowed in an identity policy (the policy applies to the identity it is attached to)")));
        }
        Some(("Principal", p)) => PrincipalElem::Is(principal_elem(p, "Principal").map_err(ctx)?),
        Some((_, p)) => {
            if effect == Effect::Allow {
                return Err(ctx(
                    "NotPrincipal can only be used with \"Effect\": \"Deny\"".to_owned(),
                ));
            }
            PrincipalElem::Not(principal_elem(p, "NotPrincipal").map_err(ctx)?)
        }
    };
    let action = match one_of(st, n, "Action", "NotAction", true)? {
        Some((name, v)) => action_patterns(v, name).map_err(ctx)?,
        None => return Err(format!("Statement {n} is missing Action")),
    };
    let resource = match one_of(st, n, "Resource", "NotResource", true)? {
        Some((name, v)) => resource_patterns(v, name, variables).map_err(ctx)?,
        None => return Err(format!("Statement {n} is missing Resource")),
    };
    let conditions = match st.get("Condition") {
        None => Vec::new(),
        Some(c) => conditions(c, variables).map_err(ctx)?,
    };
    let label = sid
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| format!("statement {n}"));
    Ok(Statement {
        label,
        effect,
        principal,
        action,
        resource,
        conditions,
    })
}

/// Parses and validates a policy document into its statements.
pub(crate) fn parse(text: &str, kind: PolicyKind) -> Result<Vec<Statement>, PolicyError> {
    let err = |s: String| PolicyError(s);
    let StrictValue(doc) =
        serde_json::from_str(text).map_err(|e| err(format!("policy is not valid JSON: {e}")))?;
    let top = doc.as_object().ok_or_else(|| {
        err(format!(
            "policy must be a JSON object, not {}",
            type_name(&doc)
        ))
    })?;
    if let Some(unknown) = top
        .keys()
        .find(|k| !matches!(k.as_str(), "Version" | "Id" | "Statement"))
    {
        return Err(err(format!(
            "policy has unknown top-level member \"{unknown}\" (expected Version, Id, Statement)"
        )));
    }
    // Policy variables are only interpreted in version 2012-10-17 documents.
    let variables = match top.get("Version") {
        None => false,
        Some(Value::String(v)) if v == "2012-10-17" => true,
        Some(Value::String(v)) if v == "2008-10-17" => false,
        Some(other) => {
            return Err(err(format!(
                "Version must be \"2012-10-17\" or \"2008-10-17\", not {}",
                describe(other)
            )))
        }
    };
    if let Some(id) = top.get("Id") {
        if !id.is_string() {
            return Err(err(format!("Id must be a string, not {}", type_name(id))));
        }
    }
    let items: Vec<&Value> = match top.get("Statement") {
        None => return Err(err("policy is missing Statement".to_owned())),
        Some(Value::Array(a)) if a.is_empty() => {
            return Err(err("Statement must not be an empty array".to_owned()))
        }
        Some(Value::Array(a)) => a.iter().collect(),
        Some(o @ Value::Object(_)) => vec![o],
        Some(other) => {
            return Err(err(format!(
                "Statement must be an object or an array of objects, not {}",
                type_name(other)
            )))
        }
    };
    let mut sids = HashSet::new();
    items
        .iter()
        .enumerate()
        .map(|(i, v)| statement(v, i + 1, kind, variables, &mut sids).map_err(err))
        .collect()
}
