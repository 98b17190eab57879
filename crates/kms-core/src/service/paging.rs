//! Pagination: `Limit` ranges per operation and opaque markers.

use base64::Engine as _;
use kms_types::{ErrorCode, KmsError};

/// Applies the operation's documented Limit range and default.
pub(crate) fn page_limit(limit: Option<i32>, max: i32, default: i32) -> Result<usize, KmsError> {
    let l = limit.unwrap_or(default);
    if !(1..=max).contains(&l) {
        return Err(KmsError::new(
            ErrorCode::ValidationException,
            format!("1 validation error detected: Value '{l}' at 'limit' failed to satisfy constraint: Member must have value between 1 and {max} (inclusive)"),
        ));
    }
    Ok(l as usize)
}

const MARKER_PREFIX: &str = "kmsd1:";

/// Makes an opaque marker from the last item's sort key.
pub(crate) fn encode_marker(last: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{MARKER_PREFIX}{last}"))
}

/// Reads a marker back; anything kmsd did not make is `InvalidMarkerException`.
pub(crate) fn decode_marker(marker: Option<&str>) -> Result<Option<String>, KmsError> {
    let Some(m) = marker else { return Ok(None) };
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(m)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| s.strip_prefix(MARKER_PREFIX).map(str::to_owned))
        .map(Some)
        .ok_or_else(|| KmsError::new(ErrorCode::InvalidMarkerException, "The request was rejected because the marker that specifies where pagination should next begin is not valid."))
}

/// Cuts a page out of a sorted list of items: (page, next marker).
pub(crate) fn page_of<T>(
    items: Vec<T>,
    after: Option<&str>,
    limit: usize,
    sort_key: impl Fn(&T) -> String,
) -> (Vec<T>, Option<String>) {
    let mut rest: Vec<T> = items
        .into_iter()
        .filter(|i| after.is_none_or(|a| sort_key(i).as_str() > a))
        .collect();
    let truncated = rest.len() > limit;
    rest.truncate(limit);
    let next = if truncated {
        rest.last().map(|i| encode_marker(&sort_key(i)))
    } else {
        None
    };
    (rest, next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_round_trip_and_foreign_ones_fail() {
        let m = encode_marker("abc");
        assert_eq!(decode_marker(Some(&m)).unwrap().as_deref(), Some("abc"));
        assert_eq!(
            decode_marker(Some("garbage!")).unwrap_err().code,
            ErrorCode::InvalidMarkerException
        );
        assert_eq!(
            page_limit(Some(0), 100, 50).unwrap_err().code,
            ErrorCode::ValidationException
        );
        assert_eq!(page_limit(None, 100, 50).unwrap(), 50);
        let (p, next) = page_of(vec!["a", "b", "c"], Some("a"), 1, |s| s.to_string());
        assert_eq!(p, vec!["b"]);
        assert_eq!(
            decode_marker(next.as_deref()).unwrap().as_deref(),
            Some("b")
        );
    }
}
