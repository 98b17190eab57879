//! Condition operators: parsing of operator names and policy values, and evaluation against the
//! request's condition context.
//!
//! Semantics (documented choices):
//! * Without a set prefix, the policy values of one key are ORed: a positive operator is true
//!   when some request value matches some policy value. A negated operator (`StringNotEquals`,
//!   `StringNotEqualsIgnoreCase`, `StringNotLike`, `NumericNotEquals`, `DateNotEquals`,
//!   `ArnNotEquals`, `ArnNotLike`, `NotIpAddress`) is exactly the negation of its positive
//!   form, so it is true when no request value matches any policy value — in particular a
//!   **missing key makes a negated operator true** and a positive operator false.
//! * A key that is present with no values counts as missing.
//! * `...IfExists`: true when the key is missing, otherwise as the base operator.
//! * `ForAnyValue:` true when at least one request value satisfies the operator (for negated
//!   operators: is not matched by any policy value); missing key → false.
//! * `ForAllValues:` true when every request value satisfies the operator; missing key → true.
//! * `Null`: `"true"` → the key must be missing, `"false"` → present. No prefixes, no IfExists.
//! * A request value that does not parse for the operator (not a number, date, IP address,
//!   boolean or base64) matches no policy value.

use std::net::IpAddr;

use base64::Engine as _;

use super::glob::{ArnPattern, Pattern, Syntax};
use super::ConditionContext;

/// How a set operator combines the request values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SetOp {
    /// No prefix.
    Single,
    /// `ForAnyValue:`
    Any,
    /// `ForAllValues:`
    All,
}

/// Ordering comparisons of numbers and dates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cmp {
    Eq,
    Lt,
    Le,
    Gt,
    Ge,
}

impl Cmp {
    fn test<T: PartialOrd>(self, request: T, policy: T) -> bool {
        match self {
            Cmp::Eq => request == policy,
            Cmp::Lt => request < policy,
            Cmp::Le => request <= policy,
            Cmp::Gt => request > policy,
            Cmp::Ge => request >= policy,
        }
    }
}

/// An IP range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cidr {
    V4 { net: u32, len: u8 },
    V6 { net: u128, len: u8 },
}

impl Cidr {
    fn parse(s: &str) -> Option<Cidr> {
        let (addr, len) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l.parse::<u8>().ok()?)),
            None => (s, None),
        };
        match addr.parse::<IpAddr>().ok()? {
            IpAddr::V4(a) => {
                let len = len.unwrap_or(32);
                (len <= 32).then(|| Cidr::V4 {
                    net: u32::from(a) & mask32(len),
                    len,
                })
            }
            IpAddr::V6(a) => {
                let len = len.unwrap_or(128);
                (len <= 128).then(|| Cidr::V6 {
                    net: u128::from(a) & mask128(len),
                    len,
                })
            }
        }
    }

    fn contains(self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self, ip) {
            (Cidr::V4 { net, len }, IpAddr::V4(a)) => u32::from(a) & mask32(len) == net,
            (Cidr::V6 { net, len }, IpAddr::V6(a)) => u128::from(a) & mask128(len) == net,
            _ => false,
        }
    }
}

fn mask32(len: u8) -> u32 {
    if len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(len))
    }
}

fn mask128(len: u8) -> u128 {
    if len == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(len))
    }
}

/// The compiled policy values of one condition.
#[derive(Debug, Clone)]
enum Values {
    Str(Vec<Pattern>),
    Arn(Vec<ArnPattern>),
    Num(Cmp, Vec<f64>),
    Date(Cmp, Vec<i64>),
    Bool(Vec<bool>),
    Binary(Vec<Vec<u8>>),
    Ip(Vec<Cidr>),
    /// `Null`: whether the key must be absent.
    Null(bool),
}

/// One condition: an operator applied to one key.
#[derive(Debug, Clone)]
pub(crate) struct Condition {
    key: String,
    set: SetOp,
    if_exists: bool,
    negated: bool,
    values: Values,
}

impl Condition {
    /// The condition key, normalised (see [`crate::policy::normalize_key`]).
    pub(crate) fn key(&self) -> &str {
        &self.key
    }
}

/// The base operators: name, negated, and what kind of values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    StrExact,
    StrFold,
    StrLike,
    Num(Cmp),
    Date(Cmp),
    Bool,
    Binary,
    Ip,
    Arn,
    Null,
}

const OPERATORS: &[(&str, Kind, bool)] = &[
    ("StringEquals", Kind::StrExact, false),
    ("StringNotEquals", Kind::StrExact, true),
    ("StringEqualsIgnoreCase", Kind::StrFold, false),
    ("StringNotEqualsIgnoreCase", Kind::StrFold, true),
    ("StringLike", Kind::StrLike, false),
    ("StringNotLike", Kind::StrLike, true),
    ("NumericEquals", Kind::Num(Cmp::Eq), false),
    ("NumericNotEquals", Kind::Num(Cmp::Eq), true),
    ("NumericLessThan", Kind::Num(Cmp::Lt), false),
    ("NumericLessThanEquals", Kind::Num(Cmp::Le), false),
    ("NumericGreaterThan", Kind::Num(Cmp::Gt), false),
    ("NumericGreaterThanEquals", Kind::Num(Cmp::Ge), false),
    ("DateEquals", Kind::Date(Cmp::Eq), false),
    ("DateNotEquals", Kind::Date(Cmp::Eq), true),
    ("DateLessThan", Kind::Date(Cmp::Lt), false),
    ("DateLessThanEquals", Kind::Date(Cmp::Le), false),
    ("DateGreaterThan", Kind::Date(Cmp::Gt), false),
    ("DateGreaterThanEquals", Kind::Date(Cmp::Ge), false),
    ("Bool", Kind::Bool, false),
    ("BinaryEquals", Kind::Binary, false),
    ("IpAddress", Kind::Ip, false),
    ("NotIpAddress", Kind::Ip, true),
    ("ArnEquals", Kind::Arn, false),
    ("ArnLike", Kind::Arn, false),
    ("ArnNotEquals", Kind::Arn, true),
    ("ArnNotLike", Kind::Arn, true),
    ("Null", Kind::Null, false),
];

/// A parsed operator name.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Operator {
    kind: Kind,
    negated: bool,
    set: SetOp,
    if_exists: bool,
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

fn strip_suffix_ci<'a>(s: &'a str, suffix: &str) -> Option<&'a str> {
    let at = s.len().checked_sub(suffix.len())?;
    let tail = s.get(at..)?;
    tail.eq_ignore_ascii_case(suffix).then(|| &s[..at])
}

impl Operator {
    /// Parses an operator name such as `ForAllValues:StringLikeIfExists` (names are matched
    /// case-insensitively).
    pub(crate) fn parse(name: &str) -> Result<Operator, String> {
        let unknown = || format!("unknown condition operator {name}");
        let (set, rest) = if let Some(r) = strip_prefix_ci(name, "ForAnyValue:") {
            (SetOp::Any, r)
        } else if let Some(r) = strip_prefix_ci(name, "ForAllValues:") {
            (SetOp::All, r)
        } else {
            (SetOp::Single, name)
        };
        let lookup = |n: &str| {
            OPERATORS
                .iter()
                .find(|(op, _, _)| op.eq_ignore_ascii_case(n))
                .copied()
        };
        let (base, if_exists) = match lookup(rest) {
            Some(found) => (found, false),
            None => match strip_suffix_ci(rest, "IfExists").and_then(lookup) {
                Some(found) => (found, true),
                None => return Err(unknown()),
            },
        };
        let (_, kind, negated) = base;
        if kind == Kind::Null && if_exists {
            return Err(format!(
                "condition operator {name} is not allowed: Null cannot take IfExists"
            ));
        }
        if kind == Kind::Null && set != SetOp::Single {
            return Err(format!("condition operator {name} is not allowed: Null cannot take ForAnyValue/ForAllValues"));
        }
        Ok(Operator {
            kind,
            negated,
            set,
            if_exists,
        })
    }
}

impl Condition {
    /// Compiles one condition: `op` applied to `key` (already normalised) with the policy
    /// `values` (as strings). `variables` enables policy variables in string and ARN values.
    pub(crate) fn compile(
        op_name: &str,
        op: Operator,
        key: String,
        values: &[String],
        variables: bool,
    ) -> Result<Condition, String> {
        let bad =
            |v: &str, what: &str| format!("{op_name} value \"{v}\" for key {key} is not {what}");
        let str_syntax = |wildcards: bool, fold: bool| Syntax {
            wildcards,
            variables,
            fold,
        };
        let compiled = match op.kind {
            Kind::StrExact | Kind::StrFold | Kind::StrLike => {
                let syntax = str_syntax(op.kind == Kind::StrLike, op.kind == Kind::StrFold);
                Values::Str(
                    values
                        .iter()
                        .map(|v| Pattern::compile(v, syntax))
                        .collect::<Result<_, _>>()?,
                )
            }
            Kind::Arn => Values::Arn(
                values
                    .iter()
                    .map(|v| {
                        ArnPattern::compile(v, variables)
                            .map_err(|e| format!("{op_name} value for key {key}: {e}"))
                    })
                    .collect::<Result<_, _>>()?,
            ),
            Kind::Num(cmp) => Values::Num(
                cmp,
                values
                    .iter()
                    .map(|v| parse_number(v).ok_or_else(|| bad(v, "a number")))
                    .collect::<Result<_, _>>()?,
            ),
            Kind::Date(cmp) => Values::Date(
                cmp,
                values
                    .iter()
                    .map(|v| {
                        parse_date(v).ok_or_else(|| bad(v, "a date (ISO 8601 or epoch seconds)"))
                    })
                    .collect::<Result<_, _>>()?,
            ),
            Kind::Bool => Values::Bool(
                values
                    .iter()
                    .map(|v| parse_bool(v).ok_or_else(|| bad(v, "\"true\" or \"false\"")))
                    .collect::<Result<_, _>>()?,
            ),
            Kind::Binary => Values::Binary(
                values
                    .iter()
                    .map(|v| decode_b64(v).ok_or_else(|| bad(v, "base64")))
                    .collect::<Result<_, _>>()?,
            ),
            Kind::Ip => Values::Ip(
                values
                    .iter()
                    .map(|v| Cidr::parse(v).ok_or_else(|| bad(v, "an IP address or CIDR range")))
                    .collect::<Result<_, _>>()?,
            ),
            Kind::Null => match values {
                [v] => Values::Null(parse_bool(v).ok_or_else(|| bad(v, "\"true\" or \"false\""))?),
                _ => {
                    return Err(format!(
                        "{op_name} for key {key} takes exactly one value, \"true\" or \"false\""
                    ))
                }
            },
        };
        Ok(Condition {
            key,
            set: op.set,
            if_exists: op.if_exists,
            negated: op.negated,
            values: compiled,
        })
    }

    /// Whether one request value is matched by some policy value (the positive operator).
    fn matches_value(&self, value: &str, ctx: &ConditionContext) -> bool {
        match &self.values {
            Values::Str(p) => p.iter().any(|p| p.matches(value, ctx)),
            Values::Arn(p) => p.iter().any(|p| p.matches(value, ctx)),
            Values::Num(cmp, p) => {
                parse_number(value).is_some_and(|r| p.iter().any(|&v| cmp.test(r, v)))
            }
            Values::Date(cmp, p) => {
                parse_date(value).is_some_and(|r| p.iter().any(|&v| cmp.test(r, v)))
            }
            Values::Bool(p) => parse_bool(value).is_some_and(|r| p.contains(&r)),
            Values::Binary(p) => decode_b64(value).is_some_and(|r| p.contains(&r)),
            Values::Ip(p) => value
                .trim()
                .parse::<IpAddr>()
                .is_ok_and(|ip| p.iter().any(|c| c.contains(ip))),
            Values::Null(_) => false,
        }
    }

    /// Evaluates the condition against the request context.
    pub(crate) fn evaluate(&self, ctx: &ConditionContext) -> bool {
        let values = ctx.get_normalized(&self.key).unwrap_or(&[]);
        if let Values::Null(must_be_absent) = self.values {
            return values.is_empty() == must_be_absent;
        }
        if values.is_empty() && self.if_exists {
            return true;
        }
        match self.set {
            SetOp::Single => values.iter().any(|v| self.matches_value(v, ctx)) != self.negated,
            SetOp::Any => values
                .iter()
                .any(|v| self.matches_value(v, ctx) != self.negated),
            SetOp::All => values
                .iter()
                .all(|v| self.matches_value(v, ctx) != self.negated),
        }
    }
}

fn parse_number(s: &str) -> Option<f64> {
    s.trim().parse::<f64>().ok().filter(|f| f.is_finite())
}

fn parse_bool(s: &str) -> Option<bool> {
    let s = s.trim();
    if s.eq_ignore_ascii_case("true") {
        Some(true)
    } else if s.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

fn decode_b64(s: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD
        .decode(s.trim())
        .ok()
}

/// A tiny cursor over ASCII digits and punctuation.
struct Cursor<'a> {
    s: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    fn digits(&mut self, n: usize) -> Option<i64> {
        let d = self.s.get(self.i..self.i + n)?;
        if !d.iter().all(u8::is_ascii_digit) {
            return None;
        }
        self.i += n;
        Some(d.iter().fold(0i64, |acc, b| acc * 10 + i64::from(b - b'0')))
    }

    fn eat(&mut self, c: u8) -> bool {
        if self.s.get(self.i) == Some(&c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn done(&self) -> bool {
        self.i == self.s.len()
    }
}

/// Days from 1970-01-01 to the given civil date (proleptic Gregorian).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

/// Parses a date as milliseconds since the Unix epoch: epoch seconds (`1767225600`, optionally
/// with a fraction), or ISO 8601 — `2026-01-01`, `2026-01-01T00:00:00Z`, with optional
/// fractional seconds, optional seconds, a `Z` or `±hh:mm`/`±hhmm`/`±hh` offset (none = UTC),
/// and the basic form `20260101T000000Z`.
pub(crate) fn parse_date(s: &str) -> Option<i64> {
    let s = s.trim();
    let b = s.as_bytes();
    let body = b.strip_prefix(b"-").unwrap_or(b);
    if !body.is_empty() && body.iter().all(|c| c.is_ascii_digit() || *c == b'.') && body[0] != b'.'
    {
        let secs = s.parse::<f64>().ok()?;
        let ms = secs * 1000.0;
        return (ms.is_finite() && ms.abs() < 1e17).then(|| ms.round() as i64);
    }
    let mut c = Cursor { s: b, i: 0 };
    let year = c.digits(4)?;
    let basic = !c.eat(b'-');
    let month = c.digits(2)?;
    if !basic && !c.eat(b'-') {
        return None;
    }
    let day = c.digits(2)?;
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    let mut ms = days_from_civil(year, month, day) * 86_400_000;
    if c.done() {
        return Some(ms);
    }
    if !(c.eat(b'T') || c.eat(b't') || c.eat(b' ')) {
        return None;
    }
    let hour = c.digits(2)?;
    if !basic && !c.eat(b':') {
        return None;
    }
    let minute = c.digits(2)?;
    let mut second = 0;
    let mut frac_ms = 0;
    let has_seconds = if basic {
        c.peek().is_some_and(|d| d.is_ascii_digit())
    } else {
        c.eat(b':')
    };
    if has_seconds {
        second = c.digits(2)?;
        if c.eat(b'.') || c.eat(b',') {
            let start = c.i;
            while c.peek().is_some_and(|d| d.is_ascii_digit()) {
                c.i += 1;
            }
            let frac = &b[start..c.i];
            if frac.is_empty() {
                return None;
            }
            frac_ms = frac.iter().take(3).enumerate().fold(0i64, |acc, (k, d)| {
                acc + i64::from(d - b'0') * [100, 10, 1][k]
            });
        }
    }
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    ms += ((hour * 60 + minute) * 60 + second) * 1000 + frac_ms;
    if c.done() || c.eat(b'Z') || c.eat(b'z') {
        return c.done().then_some(ms);
    }
    let sign = if c.eat(b'+') {
        1
    } else if c.eat(b'-') {
        -1
    } else {
        return None;
    };
    let oh = c.digits(2)?;
    let om = if c.done() {
        0
    } else {
        c.eat(b':');
        c.digits(2)?
    };
    if !c.done() || oh > 23 || om > 59 {
        return None;
    }
    Some(ms - sign * (oh * 60 + om) * 60_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_date_parsing() {
        let rows: &[(&str, Option<i64>)] = &[
            ("0", Some(0)),
            ("1767225600", Some(1_767_225_600_000)),
            ("1767225600.5", Some(1_767_225_600_500)),
            ("2026-01-01T00:00:00Z", Some(1_767_225_600_000)),
            ("2026-01-01", Some(1_767_225_600_000)),
            ("2026-01-01T00:00Z", Some(1_767_225_600_000)),
            ("2026-01-01T00:00:00", Some(1_767_225_600_000)),
            ("2026-01-01T00:00:00.123Z", Some(1_767_225_600_123)),
            ("2026-01-01T00:00:00.1234567Z", Some(1_767_225_600_123)),
            ("2026-01-01T02:00:00+02:00", Some(1_767_225_600_000)),
            ("2025-12-31T19:00:00-0500", Some(1_767_225_600_000)),
            ("20260101T000000Z", Some(1_767_225_600_000)),
            ("1970-01-01T00:00:00Z", Some(0)),
            ("1969-12-31T23:59:59Z", Some(-1000)),
            ("2024-02-29T12:00:00Z", Some(1_709_208_000_000)),
            ("2025-02-29T12:00:00Z", None),
            ("2026-13-01T00:00:00Z", None),
            ("2026-01-01T24:00:00Z", None),
            ("2026-01-01T00:00:00ZZ", None),
            ("2026-01-01X", None),
            ("yesterday", None),
            ("", None),
        ];
        for (s, want) in rows {
            assert_eq!(parse_date(s), *want, "{s}");
        }
    }

    #[test]
    fn policy_cidr_parsing() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let c = Cidr::parse("192.0.2.0/24").unwrap();
        assert!(c.contains(ip("192.0.2.255")));
        assert!(c.contains(ip("::ffff:192.0.2.7")));
        assert!(!c.contains(ip("192.0.3.0")));
        assert!(!c.contains(ip("2001:db8::1")));
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains(ip("8.8.8.8")));
        assert!(Cidr::parse("10.1.2.3").unwrap().contains(ip("10.1.2.3")));
        assert!(!Cidr::parse("10.1.2.3").unwrap().contains(ip("10.1.2.4")));
        assert!(Cidr::parse("2001:DB8:1234:5678::/64")
            .unwrap()
            .contains(ip("2001:db8:1234:5678:ffff::1")));
        assert!(Cidr::parse("::/0").unwrap().contains(ip("2001:db8::1")));
        for bad in [
            "192.0.2.0/33",
            "2001:db8::/129",
            "192.0.2/24",
            "abc",
            "10.0.0.0/x",
            "",
        ] {
            assert!(Cidr::parse(bad).is_none(), "{bad}");
        }
    }
}
