//! AWS Signature Version 4, shared by kmsd, its XKS client and xks-proxy: verification of
//! incoming requests (header auth, `AWS4-HMAC-SHA256`) and signing.
//!
//! The canonical request is rebuilt from whatever `SignedHeaders` lists. Over HTTP/2 there is no
//! `Host` header, so the URI authority stands in for it.

use kms_crypto::{constant_time_eq, hmac_sha256, sha256};
use kms_types::{ErrorCode, KmsError};
use zeroize::Zeroizing;

/// Allowed clock skew between `X-Amz-Date` and the server.
pub const MAX_SKEW_SECS: i64 = 300;

/// The parts of an `Authorization` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedAuth {
    /// Access key id.
    pub access_key_id: String,
    /// Scope date `YYYYMMDD`.
    pub date: String,
    /// Scope region.
    pub region: String,
    /// Scope service.
    pub service: String,
    /// Signed header names, lowercase, in the order given.
    pub signed_headers: Vec<String>,
    /// Hex signature.
    pub signature: String,
}

fn incomplete(msg: impl Into<String>) -> KmsError {
    KmsError::new(ErrorCode::IncompleteSignatureException, msg)
}

/// Parses `AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=...`.
pub fn parse_authorization(value: &str) -> Result<ParsedAuth, KmsError> {
    let rest = value.strip_prefix("AWS4-HMAC-SHA256 ").ok_or_else(|| {
        incomplete(format!(
            "Authorization header requires the AWS4-HMAC-SHA256 algorithm. Authorization={value}"
        ))
    })?;
    let mut credential = None;
    let mut signed = None;
    let mut signature = None;
    for part in rest.split(',') {
        let part = part.trim();
        if let Some(v) = part.strip_prefix("Credential=") {
            credential = Some(v);
        } else if let Some(v) = part.strip_prefix("SignedHeaders=") {
            signed = Some(v);
        } else if let Some(v) = part.strip_prefix("Signature=") {
            signature = Some(v);
        }
    }
    let (Some(credential), Some(signed), Some(signature)) = (credential, signed, signature) else {
        return Err(incomplete(
            "Authorization header requires 'Credential', 'SignedHeaders' and 'Signature' parameters.",
        ));
    };
    let scope: Vec<&str> = credential.split('/').collect();
    let [akid, date, region, service, terminator] = scope[..] else {
        return Err(incomplete(format!(
            "Credential should be scoped to a valid Region, not '{credential}'."
        )));
    };
    if terminator != "aws4_request" || akid.is_empty() || date.len() != 8 || region.is_empty() {
        return Err(incomplete(format!("Credential should be scoped with a valid terminator: 'aws4_request', not '{credential}'.")));
    }
    if signature.len() != 64 || !signature.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(incomplete(
            "The Signature must be 64 hexadecimal characters.",
        ));
    }
    if !is_region_name(region) {
        return Err(KmsError::new(
            ErrorCode::InvalidSignatureException,
            "Credential should be scoped to a valid region.",
        ));
    }
    Ok(ParsedAuth {
        access_key_id: akid.into(),
        date: date.into(),
        region: region.into(),
        service: service.into(),
        signed_headers: signed.split(';').map(|s| s.to_ascii_lowercase()).collect(),
        // Kept as sent: AWS compares the lowercase hex form, so uppercase hex does not match.
        signature: signature.to_owned(),
    })
}

/// Whether `s` is a well-formed AWS Region name: two lowercase letters, one or more lowercase
/// words, and a number of one or two digits, joined by `-` (`us-east-1`, `us-gov-west-1`,
/// `cn-north-1`, `us-isob-east-1`), as AWS's pattern `^[a-z]{2}(-[a-z]+)+-\d{1,2}$`. The
/// credential scope's Region becomes part of every ARN kmsd makes, so nothing else is accepted.
pub fn is_region_name(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    let (Some(first), Some(last)) = (parts.first(), parts.last()) else {
        return false;
    };
    parts.len() >= 3
        && s.len() <= 32
        && first.len() == 2
        && first.bytes().all(|b| b.is_ascii_lowercase())
        && (1..=2).contains(&last.len())
        && last.bytes().all(|b| b.is_ascii_digit())
        && parts[1..parts.len() - 1]
            .iter()
            .all(|w| !w.is_empty() && w.bytes().all(|b| b.is_ascii_lowercase()))
}

/// What the canonical request is built from.
pub struct RequestParts<'a> {
    /// HTTP method.
    pub method: &'a str,
    /// Path (no query).
    pub path: &'a str,
    /// Raw query string.
    pub query: &'a str,
    /// Header (lowercase name, value) pairs in arrival order; repeated names allowed.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: &'a [u8],
}

fn uri_encode(s: &str, encode_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b'/' if !encode_slash => out.push('/'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (uri_encode(&k, true), uri_encode(&v, true)))
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

fn canonical_path(path: &str) -> String {
    if path.is_empty() {
        return "/".into();
    }
    let decoded: Vec<String> = path
        .split('/')
        .map(percent_decode)
        .map(|seg| uri_encode(&uri_encode(&seg, true), true))
        .collect();
    decoded.join("/")
}

fn percent_decode(s: &str) -> String {
    form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// Whether `path` is its own canonical form: only unreserved characters and `/`, no empty
/// path (the common `/`). Anything else goes through [`canonical_path`].
fn path_is_canonical(path: &str) -> bool {
    !path.is_empty()
        && path
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/'))
}

/// Appends `value` with leading and trailing whitespace removed and inner runs of whitespace
/// collapsed to one space.
fn push_collapsed(out: &mut String, value: &str) {
    for (i, word) in value.split_whitespace().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(word);
    }
}

/// Builds the canonical request string, in one buffer, from the signed headers only.
pub fn canonical_request(
    parts: &RequestParts<'_>,
    signed_headers: &[String],
) -> Result<String, KmsError> {
    let mut out = String::with_capacity(256 + 64 * signed_headers.len());
    out.push_str(parts.method);
    out.push('\n');
    if path_is_canonical(parts.path) {
        out.push_str(parts.path);
    } else {
        out.push_str(&canonical_path(parts.path));
    }
    out.push('\n');
    if !parts.query.is_empty() {
        out.push_str(&canonical_query(parts.query));
    }
    out.push('\n');
    for name in signed_headers {
        out.push_str(name);
        out.push(':');
        let mut found = false;
        for (_, value) in parts.headers.iter().filter(|(n, _)| n == name) {
            if found {
                out.push(',');
            }
            push_collapsed(&mut out, value);
            found = true;
        }
        if !found {
            return Err(KmsError::new(
                ErrorCode::InvalidSignatureException,
                format!("The request signature we calculated does not match the signature you provided: signed header '{name}' is not in the request."),
            ));
        }
        out.push('\n');
    }
    out.push('\n');
    for (i, name) in signed_headers.iter().enumerate() {
        if i > 0 {
            out.push(';');
        }
        out.push_str(name);
    }
    out.push('\n');
    let declared = parts
        .headers
        .iter()
        .find(|(n, _)| n == "x-amz-content-sha256")
        .map(|(_, v)| {
            let mut collapsed = String::with_capacity(v.len());
            push_collapsed(&mut collapsed, v);
            collapsed
        })
        .filter(|v| v != "UNSIGNED-PAYLOAD");
    match declared {
        Some(hash) => out.push_str(&hash),
        None => out.push_str(&hex::encode(sha256(parts.body))),
    }
    Ok(out)
}

/// The SigV4 signing key for a secret, date, region and service.
pub fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> [u8; 32] {
    let k_date = hmac_sha256(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k_region = hmac_sha256(&k_date, region.as_bytes());
    let k_service = hmac_sha256(&k_region, service.as_bytes());
    hmac_sha256(&k_service, b"aws4_request")
}

/// A derived signing key with what it was derived from (it changes once a day per scope).
struct CachedKey {
    secret: Zeroizing<String>,
    scope: String,
    key: Zeroizing<[u8; 32]>,
}

/// Signing keys derived recently on this thread (most recent first).
const CACHED_KEYS: usize = 8;

thread_local! {
    static SIGNING_KEYS: std::cell::RefCell<Vec<CachedKey>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// [`signing_key`], from a small per-thread cache of the last keys derived (the four chained
/// HMACs are a quarter of a verification's cost and give the same key all day).
pub fn cached_signing_key(
    secret: &str,
    date: &str,
    region: &str,
    service: &str,
) -> Zeroizing<[u8; 32]> {
    let scope_matches = |s: &str| {
        let mut it = s.split('/');
        it.next() == Some(date) && it.next() == Some(region) && it.next() == Some(service)
    };
    SIGNING_KEYS.with(|cell| {
        let Ok(mut keys) = cell.try_borrow_mut() else {
            return Zeroizing::new(signing_key(secret, date, region, service));
        };
        if let Some(i) = keys.iter().position(|k| {
            scope_matches(&k.scope) && constant_time_eq(k.secret.as_bytes(), secret.as_bytes())
        }) {
            let hit = keys.remove(i);
            let key = hit.key.clone();
            keys.insert(0, hit);
            return key;
        }
        let key = Zeroizing::new(signing_key(secret, date, region, service));
        keys.truncate(CACHED_KEYS - 1);
        keys.insert(
            0,
            CachedKey {
                secret: Zeroizing::new(secret.to_owned()),
                scope: format!("{date}/{region}/{service}"),
                key: key.clone(),
            },
        );
        key
    })
}

/// The hex signature of a canonical request.
pub fn signature(key: &[u8; 32], amz_date: &str, scope: &str, canonical_request: &str) -> String {
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex::encode(sha256(canonical_request.as_bytes()))
    );
    hex::encode(hmac_sha256(key, string_to_sign.as_bytes()))
}

/// Parses `YYYYMMDDTHHMMSSZ` to Unix seconds.
pub fn parse_amz_date(s: &str) -> Option<i64> {
    let fmt = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
    time::PrimitiveDateTime::parse(s, fmt)
        .ok()
        .map(|t| t.assume_utc().unix_timestamp())
}

/// Formats Unix seconds as `YYYYMMDDTHHMMSSZ`.
pub fn format_amz_date(secs: i64) -> String {
    let fmt = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| t.format(fmt).ok())
        .unwrap_or_default()
}

/// Checks the date rules: `X-Amz-Date` present and well-formed, equal to the scope date, within
/// the allowed skew of `now_secs`. Returns the `X-Amz-Date` value.
pub fn check_date(
    parts: &RequestParts<'_>,
    auth: &ParsedAuth,
    now_secs: i64,
) -> Result<String, KmsError> {
    let amz_date = parts
        .headers
        .iter()
        .find(|(n, _)| n == "x-amz-date")
        .map(|(_, v)| v.trim().to_owned())
        .ok_or_else(|| incomplete("Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header."))?;
    let when = parse_amz_date(&amz_date).ok_or_else(|| {
        incomplete(format!(
            "X-Amz-Date must be in ISO-8601 basic format, not '{amz_date}'."
        ))
    })?;
    if !auth.signed_headers.iter().any(|h| h == "x-amz-date") {
        return Err(KmsError::new(
            ErrorCode::InvalidSignatureException,
            "The X-Amz-Date header must be signed.",
        ));
    }
    if !amz_date.starts_with(&auth.date) {
        return Err(KmsError::new(
            ErrorCode::InvalidSignatureException,
            format!("Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '{}' != '{}', from '{amz_date}'.", auth.date, &amz_date[..8.min(amz_date.len())]),
        ));
    }
    if when < now_secs - MAX_SKEW_SECS {
        return Err(KmsError::new(
            ErrorCode::InvalidSignatureException,
            format!(
                "Signature expired: {amz_date} is now earlier than {} ({} - 5 min.)",
                format_amz_date(now_secs - MAX_SKEW_SECS),
                format_amz_date(now_secs)
            ),
        ));
    }
    if when > now_secs + MAX_SKEW_SECS {
        return Err(KmsError::new(
            ErrorCode::InvalidSignatureException,
            format!(
                "Signature not yet current: {amz_date} is still later than {} ({} + 5 min.)",
                format_amz_date(now_secs + MAX_SKEW_SECS),
                format_amz_date(now_secs)
            ),
        ));
    }
    if !auth.signed_headers.iter().any(|h| h == "host") {
        return Err(KmsError::new(
            ErrorCode::InvalidSignatureException,
            "The Host header must be signed.",
        ));
    }
    if parts
        .headers
        .iter()
        .any(|(n, _)| n == "x-amz-security-token")
        && !auth
            .signed_headers
            .iter()
            .any(|h| h == "x-amz-security-token")
    {
        return Err(KmsError::new(
            ErrorCode::InvalidSignatureException,
            "The X-Amz-Security-Token header must be signed.",
        ));
    }
    Ok(amz_date)
}

/// Verifies the signature with `secret`.
pub fn verify(
    parts: &RequestParts<'_>,
    auth: &ParsedAuth,
    amz_date: &str,
    secret: &str,
) -> Result<(), KmsError> {
    let canonical = canonical_request(parts, &auth.signed_headers)?;
    let scope = format!(
        "{}/{}/{}/aws4_request",
        auth.date, auth.region, auth.service
    );
    let key = cached_signing_key(secret, &auth.date, &auth.region, &auth.service);
    let expected = signature(&key, amz_date, &scope, &canonical);
    if constant_time_eq(expected.as_bytes(), auth.signature.as_bytes()) {
        Ok(())
    } else {
        Err(KmsError::new(
            ErrorCode::InvalidSignatureException,
            "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.",
        ))
    }
}

/// Signs a request: returns the headers to add (`x-amz-date`, `authorization`). `headers` must
/// already contain `host` and everything else to sign.
pub fn sign(
    parts: &RequestParts<'_>,
    access_key_id: &str,
    secret: &str,
    region: &str,
    service: &str,
    now_secs: i64,
) -> Result<Vec<(String, String)>, KmsError> {
    let amz_date = format_amz_date(now_secs);
    let date = &amz_date[..8];
    let mut headers = parts.headers.clone();
    headers.push(("x-amz-date".into(), amz_date.clone()));
    let mut names: Vec<String> = headers.iter().map(|(n, _)| n.clone()).collect();
    names.sort();
    names.dedup();
    let with_date = RequestParts {
        method: parts.method,
        path: parts.path,
        query: parts.query,
        headers,
        body: parts.body,
    };
    let canonical = canonical_request(&with_date, &names)?;
    let scope = format!("{date}/{region}/{service}/aws4_request");
    let sig = signature(
        &cached_signing_key(secret, date, region, service),
        &amz_date,
        &scope,
        &canonical,
    );
    Ok(vec![
        ("x-amz-date".into(), amz_date),
        (
            "authorization".into(),
            format!("AWS4-HMAC-SHA256 Credential={access_key_id}/{scope}, SignedHeaders={}, Signature={sig}", names.join(";")),
        ),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

    /// `get-vanilla` from the AWS SigV4 test suite.
    #[test]
    fn aws_test_suite_get_vanilla() {
        let parts = RequestParts {
            method: "GET",
            path: "/",
            query: "",
            headers: vec![
                ("host".into(), "example.amazonaws.com".into()),
                ("x-amz-date".into(), "20150830T123600Z".into()),
            ],
            body: b"",
        };
        let auth = parse_authorization("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31").unwrap();
        let date = check_date(&parts, &auth, parse_amz_date("20150830T123600Z").unwrap()).unwrap();
        verify(&parts, &auth, &date, SECRET).unwrap();
        assert_eq!(
            verify(&parts, &auth, &date, "wrong").unwrap_err().code,
            ErrorCode::InvalidSignatureException
        );
    }

    /// `get-vanilla-query-order-key-case` from the AWS SigV4 test suite.
    #[test]
    fn aws_test_suite_query_order() {
        let parts = RequestParts {
            method: "GET",
            path: "/",
            query: "Param2=value2&Param1=value1",
            headers: vec![
                ("host".into(), "example.amazonaws.com".into()),
                ("x-amz-date".into(), "20150830T123600Z".into()),
            ],
            body: b"",
        };
        let auth = parse_authorization("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500").unwrap();
        verify(&parts, &auth, "20150830T123600Z", SECRET).unwrap();
    }

    #[test]
    fn sign_then_verify_and_skew() {
        let now = 1_700_000_000;
        let base = RequestParts {
            method: "POST",
            path: "/",
            query: "",
            headers: vec![
                ("host".into(), "127.0.0.1:1".into()),
                ("x-amz-target".into(), "TrentService.ListKeys".into()),
            ],
            body: b"{}",
        };
        let added = sign(&base, "AKID", "secret", "eu-west-1", "kms", now).unwrap();
        let mut headers = base.headers.clone();
        headers.extend(added.clone());
        let parts = RequestParts { headers, ..base };
        let auth = parse_authorization(&added[1].1).unwrap();
        assert_eq!(auth.region, "eu-west-1");
        let d = check_date(&parts, &auth, now + 10).unwrap();
        verify(&parts, &auth, &d, "secret").unwrap();
        let e = check_date(&parts, &auth, now + 301).unwrap_err();
        assert!(e.message.starts_with("Signature expired"), "{}", e.message);
        let e = check_date(&parts, &auth, now - 301).unwrap_err();
        assert!(
            e.message.starts_with("Signature not yet current"),
            "{}",
            e.message
        );
        let tampered = RequestParts {
            body: b"{\"Limit\":1}",
            ..parts
        };
        assert!(verify(&tampered, &auth, &d, "secret").is_err());
    }

    /// Repeated headers joined in arrival order, whitespace collapsed, unsigned headers left
    /// out, an odd path encoded (the AWS suite's `get-header-key-duplicate` and
    /// `get-header-value-trim` rules together).
    #[test]
    fn canonical_request_form() {
        let parts = RequestParts {
            method: "GET",
            path: "/a b",
            query: "",
            headers: vec![
                ("host".into(), "example.amazonaws.com".into()),
                ("my-header1".into(), "value4".into()),
                ("user-agent".into(), "not signed".into()),
                ("my-header1".into(), "  value1  a   b ".into()),
                ("x-amz-date".into(), "20150830T123600Z".into()),
            ],
            body: b"",
        };
        let signed: Vec<String> = ["host", "my-header1", "x-amz-date"]
            .map(String::from)
            .to_vec();
        assert_eq!(
            canonical_request(&parts, &signed).unwrap(),
            "GET\n/a%2520b\n\nhost:example.amazonaws.com\nmy-header1:value4,value1 a b\nx-amz-date:20150830T123600Z\n\nhost;my-header1;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        let missing: Vec<String> = vec!["host".into(), "x-absent".into()];
        assert_eq!(
            canonical_request(&parts, &missing).unwrap_err().code,
            ErrorCode::InvalidSignatureException
        );
    }

    /// The per-thread key cache never answers for another secret or scope.
    #[test]
    fn cached_signing_keys_follow_secret_and_scope() {
        for _ in 0..2 {
            for (secret, region) in [
                ("s1", "us-east-1"),
                ("s2", "us-east-1"),
                ("s1", "eu-west-1"),
            ] {
                assert_eq!(
                    *cached_signing_key(secret, "20260101", region, "kms"),
                    signing_key(secret, "20260101", region, "kms")
                );
            }
        }
        for i in 0..(2 * CACHED_KEYS) {
            let secret = format!("secret-{i}");
            assert_eq!(
                *cached_signing_key(&secret, "20260102", "us-east-1", "kms"),
                signing_key(&secret, "20260102", "us-east-1", "kms")
            );
        }
    }

    #[test]
    fn malformed_authorization_is_incomplete() {
        for bad in ["Bearer x", "AWS4-HMAC-SHA256 Credential=a/b", "AWS4-HMAC-SHA256 Credential=A/20200101/r/s/aws4_request, SignedHeaders=host, Signature=zz"] {
            assert_eq!(parse_authorization(bad).unwrap_err().code, ErrorCode::IncompleteSignatureException, "{bad}");
        }
    }
}
