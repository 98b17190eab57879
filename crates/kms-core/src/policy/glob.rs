//! Compiled string patterns: literal text, the wildcards `*` and `?`, and policy variables
//! (`${aws:username}`), matched without allocating.

use super::ConditionContext;

/// One piece of a compiled pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    /// Literal text (lowercased when the pattern folds case).
    Lit(String),
    /// `*`: any run of characters, including none.
    Star,
    /// `?`: exactly one character.
    One,
    /// A policy variable; its value is matched literally (wildcards in it have no meaning).
    Var {
        /// Normalised condition key.
        key: String,
        /// Value used when the key is absent (`${key, 'default'}`).
        default: Option<String>,
    },
}

/// How a pattern source string is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Syntax {
    /// `*` and `?` are wildcards (otherwise literal).
    pub wildcards: bool,
    /// `${...}` are policy variables (policy version 2012-10-17).
    pub variables: bool,
    /// Compare case-insensitively.
    pub fold: bool,
}

/// A compiled pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pattern {
    pieces: Vec<Piece>,
    fold: bool,
}

fn chars_eq_fold(a: char, b: char) -> bool {
    a == b
        || (a.is_ascii() && b.is_ascii() && a.eq_ignore_ascii_case(&b))
        || (!(a.is_ascii() && b.is_ascii()) && a.to_lowercase().eq(b.to_lowercase()))
}

/// Whether `text` starts with `pat`; returns the number of bytes of `text` consumed.
fn prefix_len(pat: &str, text: &str, fold: bool) -> Option<usize> {
    if !fold {
        return text.starts_with(pat).then_some(pat.len());
    }
    let mut it = text.char_indices();
    for pc in pat.chars() {
        let (_, tc) = it.next()?;
        if !chars_eq_fold(pc, tc) {
            return None;
        }
    }
    Some(it.next().map_or(text.len(), |(i, _)| i))
}

/// Length in bytes of the character starting at byte `i` of `s` (which must be < s.len()).
fn char_len_at(s: &str, i: usize) -> usize {
    s[i..].chars().next().map_or(1, char::len_utf8)
}

/// Resolves a policy variable against the request context: the key's single value, else the
/// default. Multi-valued and absent keys (without default) resolve to nothing.
fn resolve<'a>(key: &str, default: Option<&'a str>, ctx: &'a ConditionContext) -> Option<&'a str> {
    match ctx.get_normalized(key) {
        Some([one]) => Some(one.as_str()),
        _ => default,
    }
}

impl Pattern {
    /// Compiles `src`. Fails only on a malformed policy variable default.
    pub(crate) fn compile(src: &str, syntax: Syntax) -> Result<Pattern, String> {
        let mut pieces = Vec::new();
        let mut lit = String::new();
        let flush = |lit: &mut String, pieces: &mut Vec<Piece>| {
            if !lit.is_empty() {
                let text = if syntax.fold {
                    lit.to_lowercase()
                } else {
                    std::mem::take(lit)
                };
                lit.clear();
                pieces.push(Piece::Lit(text));
            }
        };
        let mut rest = src;
        while let Some(c) = rest.chars().next() {
            if syntax.variables && rest.starts_with("${") {
                if let Some(end) = rest.find('}') {
                    let inner = rest[2..end].trim();
                    rest = &rest[end + 1..];
                    match inner {
                        "*" | "?" | "$" => lit.push_str(inner),
                        _ => {
                            flush(&mut lit, &mut pieces);
                            let (key, default) = match inner.split_once(',') {
                                None => (inner, None),
                                Some((k, d)) => {
                                    let d = d.trim();
                                    let unq =
                                        d.strip_prefix('\'').and_then(|d| d.strip_suffix('\''));
                                    match unq {
                                        Some(v) => (k.trim(), Some(if syntax.fold { v.to_lowercase() } else { v.to_owned() })),
                                        None => return Err(format!("policy variable default value must be in single quotes in \"{src}\"")),
                                    }
                                }
                            };
                            if key.is_empty() || key.contains(char::is_whitespace) {
                                return Err(format!("invalid policy variable \"${{{inner}}}\""));
                            }
                            pieces.push(Piece::Var {
                                key: super::normalize_key(key),
                                default,
                            });
                        }
                    }
                    continue;
                }
            }
            rest = &rest[c.len_utf8()..];
            match c {
                '*' if syntax.wildcards => {
                    flush(&mut lit, &mut pieces);
                    // Consecutive stars are one star.
                    if pieces.last() != Some(&Piece::Star) {
                        pieces.push(Piece::Star);
                    }
                }
                '?' if syntax.wildcards => {
                    flush(&mut lit, &mut pieces);
                    pieces.push(Piece::One);
                }
                _ => lit.push(c),
            }
        }
        flush(&mut lit, &mut pieces);
        Ok(Pattern {
            pieces,
            fold: syntax.fold,
        })
    }

    /// Whether the pattern is the single wildcard `*`.
    pub(crate) fn is_star(&self) -> bool {
        self.pieces == [Piece::Star]
    }

    /// Whether matching reads the request context (the pattern has a policy variable).
    pub(crate) fn has_variables(&self) -> bool {
        self.pieces.iter().any(|p| matches!(p, Piece::Var { .. }))
    }

    /// Whether `text` matches the whole pattern.
    pub(crate) fn matches(&self, text: &str, ctx: &ConditionContext) -> bool {
        let pieces = self.pieces.as_slice();
        // Fast paths for the common shapes.
        match pieces {
            [] => return text.is_empty(),
            [Piece::Star] => return true,
            [Piece::Lit(l)] => return prefix_len(l, text, self.fold) == Some(text.len()),
            [Piece::Lit(l), Piece::Star] => return prefix_len(l, text, self.fold).is_some(),
            _ => {}
        }
        let (mut pi, mut ti) = (0usize, 0usize);
        // After the last star seen: (piece index following it, text index it has absorbed up to).
        let mut star: Option<(usize, usize)> = None;
        loop {
            if let Some(piece) = pieces.get(pi) {
                let step = match piece {
                    Piece::Star => {
                        pi += 1;
                        star = Some((pi, ti));
                        continue;
                    }
                    Piece::One => (ti < text.len()).then(|| char_len_at(text, ti)),
                    Piece::Lit(l) => prefix_len(l, &text[ti..], self.fold),
                    Piece::Var { key, default } => match resolve(key, default.as_deref(), ctx) {
                        Some(v) => prefix_len(v, &text[ti..], self.fold),
                        // A missing variable makes the value match nothing.
                        None => return false,
                    },
                };
                if let Some(n) = step {
                    ti += n;
                    pi += 1;
                    continue;
                }
            } else if ti == text.len() {
                return true;
            }
            // Mismatch: let the last star absorb one more character and retry.
            match star {
                Some((spi, sti)) if sti < text.len() => {
                    let nti = sti + char_len_at(text, sti);
                    star = Some((spi, nti));
                    pi = spi;
                    ti = nti;
                }
                _ => return false,
            }
        }
    }
}

/// A pattern for ARNs: a pattern starting with `arn:` must have all six components
/// (`arn:partition:service:region:account:resource`) and is compared component-wise, so a
/// wildcard never spans a `:`; any other pattern (e.g. `"*"`) is compared as one string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ArnPattern {
    whole: Pattern,
    parts: Option<Vec<Pattern>>,
}

impl ArnPattern {
    /// Compiles `src` (case-sensitive, with wildcards).
    pub(crate) fn compile(src: &str, variables: bool) -> Result<ArnPattern, String> {
        let syntax = Syntax {
            wildcards: true,
            variables,
            fold: false,
        };
        let whole = Pattern::compile(src, syntax)?;
        let mut parts: Vec<Vec<Piece>> = vec![Vec::new()];
        for piece in &whole.pieces {
            match piece {
                Piece::Lit(s) => {
                    let mut rest = s.as_str();
                    while parts.len() < 6 {
                        let Some(i) = rest.find(':') else { break };
                        if i > 0 {
                            push_piece(&mut parts, Piece::Lit(rest[..i].to_owned()));
                        }
                        parts.push(Vec::new());
                        rest = &rest[i + 1..];
                    }
                    if !rest.is_empty() {
                        push_piece(&mut parts, Piece::Lit(rest.to_owned()));
                    }
                }
                other => push_piece(&mut parts, other.clone()),
            }
        }
        let parts = if parts.len() == 6 {
            Some(
                parts
                    .into_iter()
                    .map(|pieces| Pattern {
                        pieces,
                        fold: false,
                    })
                    .collect(),
            )
        } else if src.starts_with("arn:") {
            return Err(format!("\"{src}\" is not a valid ARN: expected arn:partition:service:region:account:resource"));
        } else {
            None
        };
        Ok(ArnPattern { whole, parts })
    }

    /// Whether the pattern is the single wildcard `*`.
    pub(crate) fn is_star(&self) -> bool {
        self.whole.is_star()
    }

    /// Whether matching reads the request context (the pattern has a policy variable).
    pub(crate) fn has_variables(&self) -> bool {
        self.whole.has_variables()
    }

    /// Whether `text` matches.
    pub(crate) fn matches(&self, text: &str, ctx: &ConditionContext) -> bool {
        match &self.parts {
            None => self.whole.matches(text, ctx),
            Some(parts) => {
                let mut it = text.splitn(6, ':');
                for p in parts {
                    match it.next() {
                        Some(component) if p.matches(component, ctx) => {}
                        _ => return false,
                    }
                }
                true
            }
        }
    }
}

fn push_piece(parts: &mut [Vec<Piece>], piece: Piece) {
    if let Some(last) = parts.last_mut() {
        last.push(piece);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pat(src: &str, wildcards: bool, fold: bool) -> Pattern {
        Pattern::compile(
            src,
            Syntax {
                wildcards,
                variables: true,
                fold,
            },
        )
        .unwrap()
    }

    #[test]
    fn policy_glob_table() {
        let ctx = {
            let mut c = ConditionContext::new();
            c.set("aws:username", "alice");
            c.set_many("aws:TagKeys", vec!["a".into(), "b".into()]);
            c
        };
        // (pattern, wildcards, fold, text, expected)
        let rows: &[(&str, bool, bool, &str, bool)] = &[
            ("*", true, false, "", true),
            ("*", true, false, "anything", true),
            ("", true, false, "", true),
            ("", true, false, "x", false),
            ("kms:*", true, true, "KMS:Encrypt", true),
            ("kms:*", true, true, "kmsx", false),
            ("kms:ReEncrypt*", true, true, "kms:reencryptfrom", true),
            ("kms:ReEncrypt*", true, true, "kms:Encrypt", false),
            (
                "kms:GenerateDataKey*",
                true,
                true,
                "kms:GenerateDataKeyPairWithoutPlaintext",
                true,
            ),
            ("kms:Get?eyPolicy", true, true, "kms:GetKeyPolicy", true),
            ("kms:Get?eyPolicy", true, true, "kms:GetKKeyPolicy", false),
            ("a*b*c", true, false, "aXXbYYbZc", true),
            ("a*b*c", true, false, "aXXbYYbZ", false),
            ("*a*a*a", true, false, "aaaa", true),
            ("*a*a*a", true, false, "aa", false),
            ("??", true, false, "é!", true),
            ("??", true, false, "é", false),
            ("a*", false, false, "a*", true),
            ("a*", false, false, "ab", false),
            ("ÄB", false, true, "äb", true),
            ("Exact", false, false, "exact", false),
            ("Exact", false, true, "eXACT", true),
            ("home/${aws:username}/*", true, false, "home/alice/x", true),
            ("home/${aws:username}/*", true, false, "home/bob/x", false),
            ("home/${aws:missing}/*", true, false, "home//x", false),
            (
                "home/${aws:missing, 'dflt'}/*",
                true,
                false,
                "home/dflt/x",
                true,
            ),
            ("t/${aws:TagKeys}", true, false, "t/a", false), // multi-valued: not a variable value
            ("lit${*}${?}${$}", true, false, "lit*?$", true),
            ("lit${*}", true, false, "litX", false),
            ("${", true, false, "${", true),
        ];
        for (p, w, f, text, want) in rows {
            assert_eq!(
                pat(p, *w, *f).matches(text, &ctx),
                *want,
                "pattern {p:?} text {text:?}"
            );
        }
    }

    #[test]
    fn policy_arn_pattern_table() {
        let ctx = ConditionContext::new();
        let rows: &[(&str, &str, bool)] = &[
            (
                "arn:aws:kms:*:111122223333:key/*",
                "arn:aws:kms:us-east-1:111122223333:key/1234",
                true,
            ),
            (
                "arn:aws:kms:*:111122223333:key/*",
                "arn:aws:kms:us-east-1:444455556666:key/1234",
                false,
            ),
            (
                "arn:aws:kms:*:*:key/*",
                "arn:aws:kms:us-east-1:111122223333:key/1",
                true,
            ),
            // A wildcard does not cross a component boundary.
            (
                "arn:aws:kms:*:*:*",
                "arn:aws:kms:us-east-1:111122223333:key/a:b:c",
                true,
            ),
            (
                "arn:aws:kms:us-*:*:key/*",
                "arn:aws:kms:eu-west-1:111122223333:key/us-x",
                false,
            ),
            (
                "arn:aws:kms:*:*:alias/*",
                "arn:aws:kms:eu-west-1:111122223333:alias/a:b",
                true,
            ),
            (
                "arn:aws:iam::*:role/R?",
                "arn:aws:iam::111122223333:role/R1",
                true,
            ),
            (
                "arn:aws:iam::*:role/R?",
                "arn:aws:iam::111122223333:role/R12",
                false,
            ),
            ("*", "whatever", true),
            (
                "arn:aws:kms:us-east-1:111122223333:key/abc",
                "arn:aws:kms:us-east-1:111122223333:key/abc",
                true,
            ),
            (
                "arn:aws:kms:us-east-1:111122223333:key/abc",
                "arn:aws:kms:us-east-1:111122223333:key/ABC",
                false,
            ),
            (
                "arn:aws:kms:us-east-1:111122223333:key/abc",
                "not-an-arn",
                false,
            ),
        ];
        for (p, text, want) in rows {
            assert_eq!(
                ArnPattern::compile(p, true).unwrap().matches(text, &ctx),
                *want,
                "pattern {p:?} text {text:?}"
            );
        }
        for bad in ["arn:aws:kms:*:key/*", "arn:*", "arn:aws:kms"] {
            assert!(ArnPattern::compile(bad, true).is_err(), "{bad}");
        }
    }
}
