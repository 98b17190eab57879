//! Authentication: turns a signed request into a [`Caller`], or the AWS error for why not.

use std::net::IpAddr;

use kms_core::{Caller, Service};
use kms_types::{ErrorCode, KmsError};

use crate::sigv4::{self, RequestParts};

/// How signatures are checked.
#[derive(Debug, Clone)]
pub enum AuthMode {
    /// Access keys are looked up and signatures verified.
    Verify,
    /// `--dev`: any access key is accepted and acts as the admin of this account; the
    /// Authorization header's format and the date are still checked, the signature value is not.
    Dev {
        /// The account every caller acts in.
        account: String,
    },
}

/// The request's `Authorization` header, parsed: the checks that need neither the body nor a
/// key lookup. A request that fails them is answered without its body being read.
pub fn authorization(headers: &[(String, String)]) -> Result<sigv4::ParsedAuth, KmsError> {
    let header = headers
        .iter()
        .find(|(n, _)| n == "authorization")
        .map(|(_, v)| v.as_str())
        .ok_or_else(|| {
            KmsError::new(
                ErrorCode::MissingAuthenticationTokenException,
                "Missing Authentication Token",
            )
        })?;
    sigv4::parse_authorization(header)
}

/// Authenticates a request for SigV4 service `service` (`kms` or `sts`) whose Authorization
/// header parsed as `auth` (see [`authorization`]).
#[allow(clippy::too_many_arguments)]
pub fn authenticate(
    svc: &Service,
    mode: &AuthMode,
    parts: &RequestParts<'_>,
    auth: &sigv4::ParsedAuth,
    service: &str,
    now_secs: i64,
    source_ip: Option<IpAddr>,
    request_id: &str,
    secure_transport: bool,
) -> Result<Caller, KmsError> {
    if auth.service != service {
        return Err(KmsError::new(
            ErrorCode::InvalidSignatureException,
            format!("Credential should be scoped to correct service: '{service}'."),
        ));
    }
    let amz_date = sigv4::check_date(parts, auth, now_secs)?;
    require_signed(parts, auth, &["x-amz-target", "content-type"])?;
    let caller = |account: String, arn: String, user_id: String| Caller {
        account,
        region: auth.region.clone(),
        principal_arn: arn,
        user_id,
        access_key_id: auth.access_key_id.clone(),
        source_ip,
        request_id: request_id.to_owned(),
        operation: String::new(),
        resources: Default::default(),
        secure_transport,
        ..Default::default()
    };
    match mode {
        AuthMode::Dev { account } => Ok(caller(
            account.clone(),
            format!("arn:aws:iam::{account}:user/admin"),
            format!(
                "AIDADEV{}",
                auth.access_key_id
                    .chars()
                    .filter(char::is_ascii_alphanumeric)
                    .take(16)
                    .collect::<String>()
                    .to_ascii_uppercase()
            ),
        )),
        AuthMode::Verify => {
            let key = svc.access_key_secret(&auth.access_key_id)?.ok_or_else(|| {
                KmsError::new(
                    ErrorCode::UnrecognizedClientException,
                    "The security token included in the request is invalid.",
                )
            })?;
            sigv4::verify(parts, auth, &amz_date, &key.secret)?;
            let token = parts
                .headers
                .iter()
                .find(|(n, _)| n == "x-amz-security-token")
                .map(|(_, v)| v.as_str());
            match (&key.record.session_token_sha256, token) {
                (None, None) => {}
                (Some(expected), Some(given)) => {
                    let given = hex::encode(kms_crypto::sha256(given.as_bytes()));
                    if !kms_crypto::constant_time_eq(given.as_bytes(), expected.as_bytes()) {
                        return Err(KmsError::new(
                            ErrorCode::UnrecognizedClientException,
                            "The security token included in the request is invalid.",
                        ));
                    }
                    if key.record.expires_ms.is_some_and(|e| e <= now_secs * 1000) {
                        return Err(KmsError::new(
                            ErrorCode::ExpiredTokenException,
                            "The security token included in the request is expired",
                        ));
                    }
                }
                _ => {
                    return Err(KmsError::new(
                        ErrorCode::UnrecognizedClientException,
                        "The security token included in the request is invalid.",
                    ));
                }
            }
            Ok(caller(
                key.record.account.clone(),
                key.record.principal_arn.clone(),
                key.record.user_id.clone(),
            ))
        }
    }
}

/// Refuses a request that carries one of `names` without signing it: the operation
/// (`X-Amz-Target`) and the body's framing (`Content-Type`) must not be swappable in transit.
fn require_signed(
    parts: &RequestParts<'_>,
    auth: &sigv4::ParsedAuth,
    names: &[&str],
) -> Result<(), KmsError> {
    for name in names {
        let present = parts.headers.iter().any(|(n, _)| n == name);
        if present && !auth.signed_headers.iter().any(|h| h == name) {
            return Err(KmsError::new(
                ErrorCode::InvalidSignatureException,
                format!("The {name} header must be signed."),
            ));
        }
    }
    Ok(())
}
