//! Parsing of the identifiers a request may use for a key: key id, key ARN, alias name, alias ARN.

use kms_types::{ErrorCode, KmsError};

/// A key reference as the request gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyRef {
    /// Bare key id (UUID or `mrk-...`).
    Id(String),
    /// `arn:aws:kms:<region>:<account>:key/<id>`.
    KeyArn {
        /// Region in the ARN.
        region: String,
        /// Account in the ARN.
        account: String,
        /// Key id.
        key_id: String,
    },
    /// `alias/<name>`.
    AliasName(String),
    /// `arn:aws:kms:<region>:<account>:alias/<name>`.
    AliasArn {
        /// Region in the ARN.
        region: String,
        /// Account in the ARN.
        account: String,
        /// `alias/<name>`.
        name: String,
    },
}

/// True for a lowercase-hex UUID or an `mrk-` id.
pub fn is_key_id(s: &str) -> bool {
    if let Some(hex) = s.strip_prefix("mrk-") {
        return hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit());
    }
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

fn invalid_key_id(s: &str) -> KmsError {
    KmsError::new(ErrorCode::NotFoundException, format!("Invalid keyId '{s}'"))
}

/// Parses a `KeyId`-type member. `allow_alias`: whether this operation accepts aliases.
pub fn parse_key_ref(s: &str, allow_alias: bool) -> Result<KeyRef, KmsError> {
    let r = if let Some(rest) = s.strip_prefix("arn:") {
        // arn:<partition>:kms:<region>:<account>:<resource>
        let parts: Vec<&str> = rest.splitn(5, ':').collect();
        let [partition, service, region, account, resource] = parts[..] else {
            return Err(KmsError::new(
                ErrorCode::InvalidArnException,
                format!("Invalid ARN '{s}'"),
            ));
        };
        if !partition.starts_with("aws")
            || service != "kms"
            || region.is_empty()
            || account.len() != 12
            || !account.bytes().all(|c| c.is_ascii_digit())
        {
            return Err(KmsError::new(
                ErrorCode::InvalidArnException,
                format!("Invalid ARN '{s}'"),
            ));
        }
        if let Some(id) = resource.strip_prefix("key/") {
            if !is_key_id(id) {
                return Err(invalid_key_id(s));
            }
            KeyRef::KeyArn {
                region: region.into(),
                account: account.into(),
                key_id: id.into(),
            }
        } else if resource.starts_with("alias/") {
            KeyRef::AliasArn {
                region: region.into(),
                account: account.into(),
                name: resource.into(),
            }
        } else {
            return Err(KmsError::new(
                ErrorCode::InvalidArnException,
                format!("Invalid ARN '{s}'"),
            ));
        }
    } else if s.starts_with("alias/") {
        KeyRef::AliasName(s.into())
    } else if is_key_id(s) {
        KeyRef::Id(s.to_ascii_lowercase())
    } else {
        return Err(invalid_key_id(s));
    };
    if !allow_alias && matches!(r, KeyRef::AliasName(_) | KeyRef::AliasArn { .. }) {
        return Err(KmsError::new(
            ErrorCode::NotFoundException,
            format!("Invalid keyId '{s}': this operation takes a key ID or key ARN, not an alias"),
        ));
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_identifier_form() {
        let id = "1234abcd-12ab-34cd-56ef-1234567890ab";
        assert_eq!(parse_key_ref(id, false).unwrap(), KeyRef::Id(id.into()));
        assert_eq!(
            parse_key_ref(
                &format!("arn:aws:kms:us-east-2:111122223333:key/{id}"),
                false
            )
            .unwrap(),
            KeyRef::KeyArn {
                region: "us-east-2".into(),
                account: "111122223333".into(),
                key_id: id.into()
            }
        );
        assert_eq!(
            parse_key_ref("alias/x", true).unwrap(),
            KeyRef::AliasName("alias/x".into())
        );
        assert_eq!(
            parse_key_ref("arn:aws:kms:us-east-2:111122223333:alias/x", true).unwrap(),
            KeyRef::AliasArn {
                region: "us-east-2".into(),
                account: "111122223333".into(),
                name: "alias/x".into()
            }
        );
        assert!(parse_key_ref("mrk-1234abcd12ab34cd56ef1234567890ab", false).is_ok());
    }

    #[test]
    fn rejects_what_aws_rejects() {
        assert_eq!(
            parse_key_ref("alias/x", false).unwrap_err().code,
            ErrorCode::NotFoundException
        );
        assert_eq!(
            parse_key_ref("not-a-key", true).unwrap_err().code,
            ErrorCode::NotFoundException
        );
        assert_eq!(
            parse_key_ref("arn:aws:kms:us-east-1:12:key/x", true)
                .unwrap_err()
                .code,
            ErrorCode::InvalidArnException
        );
        assert_eq!(
            parse_key_ref("arn:aws:s3:::bucket", true).unwrap_err().code,
            ErrorCode::InvalidArnException
        );
    }
}
