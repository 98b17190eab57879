//! Wire layer of kmsd: the AWS KMS JSON 1.1 shapes generated from botocore's model,
//! their constraint validation, and the error type every operation answers with.
//!
//! This crate has no behaviour beyond (de)serialisation and validation.

pub mod cloudhsm;
mod error;
pub mod generated;
mod scalars;
pub mod validate;

pub use error::{ErrorCode, KmsError};
pub use generated::*;
pub use scalars::{Blob, SensitiveString, Timestamp};

/// Parses a request body into the operation's input shape and validates it against the model.
///
/// Malformed JSON and wrong member types give `SerializationException`; unknown members give
/// `ValidationException` naming the member (silently dropping one could widen access);
/// constraint violations give AWS's `ValidationException` text.
pub fn parse_request<T>(body: &[u8]) -> Result<T, KmsError>
where
    T: serde::de::DeserializeOwned + validate::Validate,
{
    let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        body
    };
    // serde would also build a struct from a JSON array; the protocol wants an object.
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(KmsError::new(
            ErrorCode::SerializationException,
            "The request body must be a JSON object",
        ));
    }
    let value: T = serde_json::from_slice(body).map_err(|e| {
        let text = e.to_string();
        if let Some(rest) = text.strip_prefix("unknown field ") {
            let name = rest.split(',').next().unwrap_or(rest).trim_matches('`');
            KmsError::new(
                ErrorCode::ValidationException,
                format!("Unknown member '{name}' in the request: kmsd does not support it, so it refuses the request rather than ignore it"),
            )
        } else {
            KmsError::new(
                ErrorCode::SerializationException,
                format!("Could not parse the request body: {}", text),
            )
        }
    })?;
    value.validate()?;
    Ok(value)
}
