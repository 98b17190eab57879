//! Bounds on what one record may hold, so that no request can grow the trail by more than a
//! fixed amount (a signed request carrying a 1 MiB invalid value must not cost 1–2 MB of trail).
//!
//! - a string nested in a record (a request parameter, a response element, an event detail) is
//!   kept up to [`MAX_VALUE_BYTES`] (the longest legal KMS value, a key policy, fits);
//! - a top-level string (`errorMessage`, `userAgent`, `eventName`, ...) up to
//!   [`MAX_MESSAGE_BYTES`];
//! - longer strings (and object member names) keep their first bytes followed by
//!   `…[truncated by kmsd: N bytes]`, N being the original length in bytes;
//! - a record still longer than [`MAX_RECORD_BYTES`] then has its largest members replaced,
//!   largest first, by `{"kmsdTruncated": true, "length": N}`, N being the member's JSON length.

use serde_json::{json, Map, Value};

/// Longest string kept whole inside a record's members.
pub const MAX_VALUE_BYTES: usize = 32 * 1024;
/// Longest top-level string kept whole (error messages, user agents, ...).
pub const MAX_MESSAGE_BYTES: usize = 4 * 1024;
/// Longest record line (before its `kmsdChain` member is added).
pub const MAX_RECORD_BYTES: usize = 64 * 1024;

fn truncated(s: &str, max: usize) -> Option<String> {
    if s.len() <= max {
        return None;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    Some(format!(
        "{}…[truncated by kmsd: {} bytes]",
        &s[..end],
        s.len()
    ))
}

fn bound_value(v: &mut Value, max: usize) {
    match v {
        Value::String(s) => {
            if let Some(t) = truncated(s, max) {
                *s = t;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|i| bound_value(i, max)),
        Value::Object(m) => {
            if m.keys().any(|k| k.len() > max) {
                let old = std::mem::take(m);
                *m = old
                    .into_iter()
                    .map(|(k, v)| (truncated(&k, max).unwrap_or(k), v))
                    .collect::<Map<String, Value>>();
            }
            m.values_mut().for_each(|i| bound_value(i, max));
        }
        _ => {}
    }
}

/// Caps every string of `record` (see the module documentation).
pub(crate) fn bound_strings(record: &mut Value) {
    match record {
        Value::Object(m) => {
            for v in m.values_mut() {
                match v {
                    Value::String(_) => bound_value(v, MAX_MESSAGE_BYTES),
                    other => bound_value(other, MAX_VALUE_BYTES),
                }
            }
        }
        other => bound_value(other, MAX_MESSAGE_BYTES),
    }
}

/// The record's JSON line, within [`MAX_RECORD_BYTES`] (a non-object record becomes
/// `{"kmsdNotAnObject":true}`). The writer adds its own members (the chain link) after this.
pub(crate) fn bounded_line(record: &mut Value) -> Result<Vec<u8>, String> {
    if !record.is_object() {
        *record = json!({"kmsdNotAnObject": true});
    }
    bound_strings(record);
    loop {
        let line = serde_json::to_vec(&*record).map_err(|e| e.to_string())?;
        let Value::Object(m) = record else {
            return Ok(line);
        };
        if line.len() <= MAX_RECORD_BYTES {
            return Ok(line);
        }
        // Replace the largest member not yet replaced.
        let largest = m
            .iter()
            .filter(|(_, v)| v.get("kmsdTruncated").is_none())
            .map(|(k, v)| (k.clone(), serde_json::to_vec(v).map_or(0, |b| b.len())))
            .max_by_key(|(_, n)| *n);
        match largest {
            Some((k, n)) if n > 64 => {
                m.insert(k, json!({"kmsdTruncated": true, "length": n}));
            }
            _ => return Ok(line),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_strings_keep_a_prefix_and_their_length() {
        let mut r = json!({
            "errorMessage": "e".repeat(10_000),
            "requestParameters": {"keyId": "k".repeat(100_000), "short": "ok", "a".repeat(40_000): 1},
        });
        bound_strings(&mut r);
        let msg = r["errorMessage"].as_str().unwrap();
        assert!(msg.starts_with(&"e".repeat(MAX_MESSAGE_BYTES)));
        assert!(msg.ends_with("…[truncated by kmsd: 10000 bytes]"), "{msg}");
        let key = r["requestParameters"]["keyId"].as_str().unwrap();
        assert!(key.ends_with("…[truncated by kmsd: 100000 bytes]"));
        assert!(key.len() < MAX_VALUE_BYTES + 64);
        assert_eq!(r["requestParameters"]["short"], "ok");
        assert!(r["requestParameters"]
            .as_object()
            .unwrap()
            .keys()
            .all(|k| k.len() < MAX_VALUE_BYTES + 64));
    }

    #[test]
    fn a_multibyte_string_is_cut_on_a_character_boundary() {
        let mut r = json!({"userAgent": "é".repeat(5000)});
        bound_strings(&mut r);
        assert!(r["userAgent"]
            .as_str()
            .unwrap()
            .ends_with("[truncated by kmsd: 10000 bytes]"));
    }

    #[test]
    fn many_small_values_are_bounded_by_the_record_cap() {
        let context: Map<String, Value> = (0..20_000)
            .map(|i| (format!("k{i}"), json!("value")))
            .collect();
        let mut r = json!({
            "eventName": "Encrypt",
            "requestParameters": {"encryptionContext": context},
        });
        let line = bounded_line(&mut r).unwrap();
        assert!(line.len() <= MAX_RECORD_BYTES, "{}", line.len());
        assert_eq!(r["eventName"], "Encrypt");
        assert_eq!(r["requestParameters"]["kmsdTruncated"], true);
        assert!(r["requestParameters"]["length"].as_u64().unwrap() > 200_000);
    }
}
