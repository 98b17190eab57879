//! One audit record serialised once, on the caller's side: the writer thread only splices the
//! chain link (and the node id) into the bytes, hashes and writes them.

use serde::Serialize;
use serde_json::Value;

use crate::bound::{self, MAX_MESSAGE_BYTES};

/// Members the writer adds itself; a record's own members of these names are dropped.
const WRITER_MEMBERS: [&str; 2] = ["kmsdChain", "kmsdNodeId"];

/// A record as the JSON object it is written as (without `kmsdChain`/`kmsdNodeId`), already
/// bounded in size (see [`crate::bound`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditLine {
    json: Vec<u8>,
    /// A retention record (does not make a file roll by age).
    pub(crate) retention: bool,
}

impl AuditLine {
    /// Serialises `record` (it must serialise as a JSON object without `kmsdChain` or
    /// `kmsdNodeId` members). A record whose JSON is at most [`MAX_MESSAGE_BYTES`] long holds
    /// no string the bounds would cut and is kept as serialised; a longer one is bounded as a
    /// [`Value`].
    pub fn from_serialize<T: Serialize + ?Sized>(record: &T) -> Result<Self, String> {
        // An API call's record is about 1 KiB: one allocation, no regrowth.
        let mut json = Vec::with_capacity(1536);
        serde_json::to_writer(&mut json, record).map_err(|e| e.to_string())?;
        if json.len() <= MAX_MESSAGE_BYTES && json.first() == Some(&b'{') {
            return Ok(AuditLine {
                json,
                retention: false,
            });
        }
        let value: Value = serde_json::from_slice(&json).map_err(|e| e.to_string())?;
        Ok(Self::from_value(value))
    }

    /// Bounds and serialises a record given as a [`Value`] (a non-object becomes
    /// `{"kmsdNotAnObject":true}`).
    pub fn from_value(mut record: Value) -> Self {
        if let Value::Object(m) = &mut record {
            for name in WRITER_MEMBERS {
                m.remove(name);
            }
        }
        let retention = record.get("kmsdRetention").is_some();
        let json = bound::bounded_line(&mut record)
            .unwrap_or_else(|_| br#"{"kmsdNotSerialisable":true}"#.to_vec());
        AuditLine { json, retention }
    }

    /// The record's JSON, as it will be written before the writer's members are spliced in.
    pub fn as_bytes(&self) -> &[u8] {
        &self.json
    }

    /// Appends the record to `out` with `members` (each `"name":value`, already JSON) spliced
    /// in as its last members, without a newline.
    pub(crate) fn write_with(&self, members: &[&[u8]], out: &mut Vec<u8>) {
        // `json` is an object: `{}` or `{...}`.
        let body = &self.json[..self.json.len().saturating_sub(1)];
        out.extend_from_slice(body);
        let mut first = body == b"{";
        for m in members {
            if !first {
                out.push(b',');
            }
            out.extend_from_slice(m);
            first = false;
        }
        out.push(b'}');
    }
}

impl From<Value> for AuditLine {
    fn from(v: Value) -> Self {
        AuditLine::from_value(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spliced(line: &AuditLine) -> Value {
        let mut out = Vec::new();
        line.write_with(&[br#""kmsdChain":{"seq":1}"#], &mut out);
        serde_json::from_slice(&out).unwrap()
    }

    #[test]
    fn members_are_spliced_into_the_object() {
        let l = AuditLine::from_value(json!({"eventName": "Encrypt", "kmsdChain": "forged"}));
        assert_eq!(
            spliced(&l),
            json!({"eventName": "Encrypt", "kmsdChain": {"seq": 1}})
        );
        assert_eq!(
            spliced(&AuditLine::from_value(json!({}))),
            json!({"kmsdChain": {"seq": 1}})
        );
        assert_eq!(
            spliced(&AuditLine::from_value(json!([1]))),
            json!({"kmsdNotAnObject": true, "kmsdChain": {"seq": 1}})
        );
    }

    #[test]
    fn a_long_serialised_record_is_bounded_like_a_value() {
        #[derive(Serialize)]
        struct R {
            #[serde(rename = "errorMessage")]
            error_message: String,
        }
        let r = R {
            error_message: "e".repeat(10_000),
        };
        let line = AuditLine::from_serialize(&r).unwrap();
        let expected = AuditLine::from_value(json!({"errorMessage": "e".repeat(10_000)}));
        assert_eq!(line, expected);
        assert!(line.as_bytes().len() < 5000);
        let short = AuditLine::from_serialize(&R {
            error_message: "short".into(),
        })
        .unwrap();
        assert_eq!(short.as_bytes(), br#"{"errorMessage":"short"}"#);
    }
}
