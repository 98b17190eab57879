//! TagResource, UntagResource, ListResourceTags, and the tag rules CreateKey shares.

use std::collections::BTreeMap;

use kms_types::*;

use super::keys::reject_pending_deletion;
use super::paging::{decode_marker, page_limit, page_of};
use super::Service;
use crate::context::Caller;

/// Tags per key.
const MAX_TAGS: usize = 50;

/// Merges `new` into `existing` with AWS's rules and recorded messages: no duplicate keys in one
/// request, no `aws:` prefix, at most 50 tags per key.
pub(super) fn check_new_tags(
    existing: &BTreeMap<String, String>,
    new: &[Tag],
) -> Result<BTreeMap<String, String>, KmsError> {
    let mut merged = existing.clone();
    let mut seen = std::collections::HashSet::new();
    for t in new {
        let k = t.tag_key.clone().unwrap_or_default();
        if !seen.insert(k.clone()) {
            return Err(KmsError::new(ErrorCode::TagException, "Duplicate tag keys"));
        }
        if k.to_ascii_lowercase().starts_with("aws:") {
            return Err(KmsError::new(
                ErrorCode::TagException,
                "Tags beginning with aws: are reserved",
            ));
        }
        merged.insert(k, t.tag_value.clone().unwrap_or_default());
    }
    if merged.len() > MAX_TAGS {
        return Err(KmsError::new(ErrorCode::TagException, "Too many tags"));
    }
    Ok(merged)
}

impl Service {
    /// TagResource: adds or replaces tags.
    pub async fn tag_resource(
        &self,
        caller: &Caller,
        r: TagResourceRequest,
    ) -> Result<(), KmsError> {
        let new = r.tags.unwrap_or_default();
        self.update_key(caller, r.key_id.as_deref().unwrap_or_default(), |k| {
            reject_pending_deletion(k)?;
            k.tags = check_new_tags(&k.tags, &new)?;
            Ok(vec![])
        })
        .await
        .map(|_| ())
    }

    /// UntagResource: removes tags; absent keys are ignored.
    pub async fn untag_resource(
        &self,
        caller: &Caller,
        r: UntagResourceRequest,
    ) -> Result<(), KmsError> {
        let keys = r.tag_keys.unwrap_or_default();
        self.update_key(caller, r.key_id.as_deref().unwrap_or_default(), |k| {
            reject_pending_deletion(k)?;
            for key in &keys {
                k.tags.remove(key);
            }
            Ok(vec![])
        })
        .await
        .map(|_| ())
    }

    /// ListResourceTags, sorted by tag key.
    pub async fn list_resource_tags(
        &self,
        caller: &Caller,
        r: ListResourceTagsRequest,
    ) -> Result<ListResourceTagsResponse, KmsError> {
        let limit = page_limit(r.limit, 50, 50)?;
        let after = decode_marker(r.marker.as_deref())?;
        let k = self.resolve_cached(caller, r.key_id.as_deref().unwrap_or_default(), false)?;
        let tags: Vec<(String, String)> = k
            .record
            .tags
            .iter()
            .map(|(a, b)| (a.clone(), b.clone()))
            .collect();
        let (page, next) = page_of(tags, after.as_deref(), limit, |t| t.0.clone());
        Ok(ListResourceTagsResponse {
            truncated: Some(next.is_some()),
            next_marker: next,
            tags: Some(
                page.into_iter()
                    .map(|(k, v)| Tag {
                        tag_key: Some(k),
                        tag_value: Some(v),
                    })
                    .collect(),
            ),
        })
    }
}
