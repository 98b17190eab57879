//! CreateAlias, UpdateAlias, DeleteAlias, ListAliases.

use kms_types::*;

use super::keys::invalid_state;
use super::paging::{decode_marker, encode_marker, page_limit};
use super::{internal, ts, Service};
use crate::context::Caller;
use crate::model::AliasRecord;
use crate::store::WriteOp;

/// Aliases per key.
const MAX_ALIASES_PER_KEY: usize = 50;

/// CreateAlias's name rules, with AWS's errors: the `alias/` prefix (ValidationException, AWS's
/// recorded text), then only letters, digits, `/`, `_` and `-` (the model's pattern also allows
/// `:`, AWS refuses it), then a non-empty name outside the reserved `alias/aws/`.
fn check_alias_name(name: &str) -> Result<(), KmsError> {
    let Some(rest) = name.strip_prefix("alias/") else {
        return Err(KmsError::new(
            ErrorCode::ValidationException,
            "Alias must start with the prefix \"alias/\". Please see https://docs.aws.amazon.com/kms/latest/developerguide/kms-alias.html",
        ));
    };
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'_' | b'-'))
    {
        return Err(KmsError::new(
            ErrorCode::ValidationException,
            format!("{name} contains invalid characters for an alias"),
        ));
    }
    if rest.is_empty() {
        return Err(KmsError::new(
            ErrorCode::InvalidAliasNameException,
            "The alias name after 'alias/' must not be empty",
        ));
    }
    if name.starts_with("alias/aws/") {
        return Err(KmsError::new(
            ErrorCode::InvalidAliasNameException,
            format!("Alias '{name}' uses the prefix 'alias/aws/', which is reserved for AWS managed keys"),
        ));
    }
    Ok(())
}

impl Service {
    /// Resolves an alias target for Create/UpdateAlias: key id or key ARN of a customer key that
    /// is not pending deletion.
    fn alias_target_key(
        &self,
        caller: &Caller,
        target: &str,
    ) -> Result<crate::model::KeyRecord, KmsError> {
        let id = self.resolve(caller, target, false)?;
        let k = self
            .registry
            .load_key(&caller.region, &id)?
            .ok_or_else(|| super::key_not_found(&caller.region, &caller.account, &id))?;
        if k.state == "PendingDeletion" {
            return Err(invalid_state(&k, "PendingDeletion"));
        }
        Ok(k)
    }

    fn alias_count(&self, caller: &Caller, key_id: &str) -> Result<usize, KmsError> {
        Ok(self
            .store
            .list_aliases(
                &caller.account,
                &caller.region,
                Some(key_id),
                None,
                MAX_ALIASES_PER_KEY + 1,
            )
            .map_err(internal)?
            .len())
    }

    /// CreateAlias.
    pub async fn create_alias(
        &self,
        caller: &Caller,
        r: CreateAliasRequest,
    ) -> Result<(), KmsError> {
        let name = r.alias_name.unwrap_or_default();
        check_alias_name(&name)?;
        let alias_arn = format!("arn:aws:kms:{}:{}:{name}", caller.region, caller.account);
        // Alias operations need the permission on the alias (identity policy) and on the key.
        self.authorize(caller, "kms:CreateAlias", None, &alias_arn)?;
        let _guard = self.write_section().await?;
        let key = self.alias_target_key(caller, r.target_key_id.as_deref().unwrap_or_default())?;
        if self
            .store
            .get_alias(&caller.account, &caller.region, &name)
            .map_err(internal)?
            .is_some()
        {
            return Err(KmsError::new(
                ErrorCode::AlreadyExistsException,
                format!(
                    "An alias with the name arn:aws:kms:{}:{}:{name} already exists",
                    caller.region, caller.account
                ),
            ));
        }
        if self.alias_count(caller, &key.key_id)? >= MAX_ALIASES_PER_KEY {
            return Err(KmsError::new(
                ErrorCode::LimitExceededException,
                format!("{} already has {MAX_ALIASES_PER_KEY} aliases", key.arn()),
            ));
        }
        let now = self.now_ms();
        self.commit(vec![WriteOp::PutAlias(AliasRecord {
            account: caller.account.clone(),
            region: caller.region.clone(),
            name,
            target_key_id: key.key_id,
            created_ms: now,
            updated_ms: now,
        })])
        .await
    }

    /// UpdateAlias: points an existing alias at another key of the same type and usage.
    pub async fn update_alias(
        &self,
        caller: &Caller,
        r: UpdateAliasRequest,
    ) -> Result<(), KmsError> {
        let name = r.alias_name.unwrap_or_default();
        let alias_arn = format!("arn:aws:kms:{}:{}:{name}", caller.region, caller.account);
        self.authorize(
            caller,
            &format!("kms:{}", caller.operation),
            None,
            &alias_arn,
        )?;
        let _guard = self.write_section().await?;
        let mut alias = self
            .store
            .get_alias(&caller.account, &caller.region, &name)
            .map_err(internal)?
            .ok_or_else(|| {
                KmsError::new(
                    ErrorCode::NotFoundException,
                    format!(
                        "Alias arn:aws:kms:{}:{}:{name} is not found.",
                        caller.region, caller.account
                    ),
                )
            })?;
        let key = self.alias_target_key(caller, r.target_key_id.as_deref().unwrap_or_default())?;
        if let Some(old) = self
            .registry
            .load_key(&caller.region, &alias.target_key_id)?
        {
            self.authorize(caller, "kms:UpdateAlias", Some(&old), &old.arn())?;
            if old.key_usage != key.key_usage
                || old.key_spec.starts_with("HMAC") != key.key_spec.starts_with("HMAC")
                || (old.key_spec == "SYMMETRIC_DEFAULT") != (key.key_spec == "SYMMETRIC_DEFAULT")
            {
                return Err(KmsError::new(
                    ErrorCode::ValidationException,
                    format!("{name} points to a {} {} key; the new target {} is a {} {} key. An alias can only move between keys of the same type and usage.",
                        old.key_spec, old.key_usage, key.arn(), key.key_spec, key.key_usage),
                ));
            }
        }
        if alias.target_key_id != key.key_id
            && self.alias_count(caller, &key.key_id)? >= MAX_ALIASES_PER_KEY
        {
            return Err(KmsError::new(
                ErrorCode::LimitExceededException,
                format!("{} already has {MAX_ALIASES_PER_KEY} aliases", key.arn()),
            ));
        }
        alias.target_key_id = key.key_id;
        alias.updated_ms = self.now_ms();
        self.commit(vec![WriteOp::PutAlias(alias)]).await
    }

    /// DeleteAlias.
    pub async fn delete_alias(
        &self,
        caller: &Caller,
        r: DeleteAliasRequest,
    ) -> Result<(), KmsError> {
        let name = r.alias_name.unwrap_or_default();
        let alias_arn = format!("arn:aws:kms:{}:{}:{name}", caller.region, caller.account);
        self.authorize(
            caller,
            &format!("kms:{}", caller.operation),
            None,
            &alias_arn,
        )?;
        let _guard = self.write_section().await?;
        let alias = self
            .store
            .get_alias(&caller.account, &caller.region, &name)
            .map_err(internal)?
            .ok_or_else(|| {
                KmsError::new(
                    ErrorCode::NotFoundException,
                    format!(
                        "Alias arn:aws:kms:{}:{}:{name} is not found.",
                        caller.region, caller.account
                    ),
                )
            })?;
        if let Some(key) = self
            .registry
            .load_key(&caller.region, &alias.target_key_id)?
        {
            self.authorize(caller, "kms:DeleteAlias", Some(&key), &key.arn())?;
        }
        self.commit(vec![WriteOp::DeleteAlias {
            account: caller.account.clone(),
            region: caller.region.clone(),
            name,
        }])
        .await
    }

    /// ListAliases, sorted by name, optionally for one key.
    pub async fn list_aliases(
        &self,
        caller: &Caller,
        r: ListAliasesRequest,
    ) -> Result<ListAliasesResponse, KmsError> {
        let limit = page_limit(r.limit, 100, 50)?;
        let after = decode_marker(r.marker.as_deref())?;
        let target = match r.key_id.as_deref() {
            Some(id) => Some(self.resolve(caller, id, false)?),
            None => None,
        };
        let mut aliases = self
            .store
            .list_aliases(
                &caller.account,
                &caller.region,
                target.as_deref(),
                after.as_deref(),
                limit + 1,
            )
            .map_err(internal)?;
        let truncated = aliases.len() > limit;
        aliases.truncate(limit);
        Ok(ListAliasesResponse {
            next_marker: if truncated {
                aliases.last().map(|a| encode_marker(&a.name))
            } else {
                None
            },
            truncated: Some(truncated),
            aliases: Some(
                aliases
                    .iter()
                    .map(|a| AliasListEntry {
                        alias_arn: Some(a.arn()),
                        alias_name: Some(a.name.clone()),
                        target_key_id: Some(a.target_key_id.clone()),
                        creation_date: Some(ts(a.created_ms)),
                        last_updated_date: Some(ts(a.updated_ms)),
                    })
                    .collect(),
            ),
        })
    }
}
