//! Smithy RPC v2 CBOR for the CloudHSM v2 API: botocore 1.44 and later (and the AWS CLI built
//! on it) call `POST /service/BaldrApiService/operation/<Op>` with a CBOR body and the header
//! `smithy-protocol: rpc-v2-cbor` instead of JSON 1.1. kmsd converts the request body to the JSON
//! document the JSON 1.1 path takes and the answer back to CBOR, so both protocols share one
//! implementation.
//!
//! Mapping (the Smithy spec): maps, arrays, text, booleans and numbers map one to one; byte
//! strings are blobs (base64 in JSON); timestamps are tag 1 (epoch seconds) around a number.
//! CloudHSM v2 has no blobs, and its timestamps are exactly the members named in
//! [`TIMESTAMP_MEMBERS`].

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderValue};
use axum::response::Response;
use base64::Engine as _;
use ciborium::Value as Cbor;
use serde_json::Value as Json;

/// The request path prefix of the CloudHSM v2 API in RPC v2 CBOR.
const PATH_PREFIX: &str = "/service/BaldrApiService/operation/";

/// Members of the CloudHSM v2 model whose shape is a timestamp.
pub const TIMESTAMP_MEMBERS: &[&str] = &[
    "CopyTimestamp",
    "CreateTimestamp",
    "DeleteTimestamp",
    "HsmTypeRollbackExpiration",
];

/// The operation an RPC v2 CBOR CloudHSM request names by its path, if it is one.
pub fn operation_of(path: &str) -> Option<&str> {
    path.strip_prefix(PATH_PREFIX)
        .filter(|op| !op.is_empty() && op.bytes().all(|b| b.is_ascii_alphanumeric()))
}

/// A CBOR request body as the JSON document of the JSON 1.1 protocol (an empty body is `{}`).
pub fn request_to_json(body: &[u8]) -> Result<Vec<u8>, String> {
    if body.is_empty() {
        return Ok(b"{}".to_vec());
    }
    let value: Cbor = ciborium::from_reader(body).map_err(|e| format!("invalid CBOR: {e}"))?;
    serde_json::to_vec(&to_json(value)?).map_err(|e| e.to_string())
}

fn to_json(v: Cbor) -> Result<Json, String> {
    Ok(match v {
        Cbor::Null => Json::Null,
        Cbor::Bool(b) => Json::Bool(b),
        Cbor::Integer(i) => {
            let i = i128::from(i);
            match (i64::try_from(i), u64::try_from(i)) {
                (Ok(n), _) => Json::from(n),
                (_, Ok(n)) => Json::from(n),
                _ => return Err(format!("integer {i} out of range")),
            }
        }
        Cbor::Float(f) => serde_json::Number::from_f64(f)
            .map(Json::Number)
            .ok_or("a float that is not finite")?,
        Cbor::Text(s) => Json::String(s),
        Cbor::Bytes(b) => Json::String(base64::engine::general_purpose::STANDARD.encode(b)),
        Cbor::Array(a) => Json::Array(a.into_iter().map(to_json).collect::<Result<_, _>>()?),
        Cbor::Map(m) => {
            let mut out = serde_json::Map::new();
            for (k, v) in m {
                let Cbor::Text(k) = k else {
                    return Err("map keys must be text".into());
                };
                out.insert(k, to_json(v)?);
            }
            Json::Object(out)
        }
        Cbor::Tag(1, inner) => to_json(*inner)?,
        Cbor::Tag(t, _) => return Err(format!("CBOR tag {t} is not supported")),
        _ => return Err("unsupported CBOR value".into()),
    })
}

fn to_cbor(v: Json, timestamp: bool) -> Cbor {
    match v {
        Json::Null => Cbor::Null,
        Json::Bool(b) => Cbor::Bool(b),
        Json::Number(n) if timestamp => {
            Cbor::Tag(1, Box::new(Cbor::Float(n.as_f64().unwrap_or_default())))
        }
        Json::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Cbor::Integer(i.into()),
            (_, Some(u)) => Cbor::Integer(u.into()),
            _ => Cbor::Float(n.as_f64().unwrap_or_default()),
        },
        Json::String(s) => Cbor::Text(s),
        Json::Array(a) => Cbor::Array(a.into_iter().map(|v| to_cbor(v, false)).collect()),
        Json::Object(m) => Cbor::Map(
            m.into_iter()
                .map(|(k, v)| {
                    let ts = TIMESTAMP_MEMBERS.contains(&k.as_str());
                    (Cbor::Text(k), to_cbor(v, ts))
                })
                .collect(),
        ),
    }
}

/// A JSON document (a response or error body of the JSON 1.1 path) as CBOR.
pub fn json_to_cbor(body: &[u8]) -> Result<Vec<u8>, String> {
    let json: Json = if body.is_empty() {
        Json::Object(Default::default())
    } else {
        serde_json::from_slice(body).map_err(|e| e.to_string())?
    };
    let mut out = Vec::new();
    ciborium::into_writer(&to_cbor(json, false), &mut out).map_err(|e| e.to_string())?;
    Ok(out)
}

/// Re-encodes a JSON 1.1 response (success or `{"__type", "message"}` error) as RPC v2 CBOR,
/// keeping its status and headers.
pub async fn into_cbor_response(r: Response) -> Response {
    let (mut parts, body) = r.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_else(|_| Bytes::new());
    let cbor = match json_to_cbor(&bytes) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "could not re-encode a CloudHSM response as CBOR");
            parts.status = axum::http::StatusCode::INTERNAL_SERVER_ERROR;
            json_to_cbor(br#"{"__type":"CloudHsmInternalFailureException","message":"kmsd could not encode the response"}"#)
                .unwrap_or_default()
        }
    };
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/cbor"),
    );
    parts
        .headers
        .insert("smithy-protocol", HeaderValue::from_static("rpc-v2-cbor"));
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(cbor))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operation_from_the_path() {
        assert_eq!(
            operation_of("/service/BaldrApiService/operation/DescribeClusters"),
            Some("DescribeClusters")
        );
        assert_eq!(operation_of("/service/BaldrApiService/operation/"), None);
        assert_eq!(operation_of("/service/BaldrApiService/operation/a/b"), None);
        assert_eq!(operation_of("/"), None);
    }

    /// The Smithy protocol test `RpcV2CborDateTimeWithFractionalSeconds`: a map
    /// `{"datetime": 1(946845296.123)}` (body `v2hkYXRldGltZcH7Qcw32zgPvnf/`, an indefinite map).
    #[test]
    fn smithy_vector_timestamp_with_fraction() {
        let body = base64::engine::general_purpose::STANDARD
            .decode("v2hkYXRldGltZcH7Qcw32zgPvnf/")
            .unwrap();
        let json: Json = serde_json::from_slice(&request_to_json(&body).unwrap()).unwrap();
        assert_eq!(json, serde_json::json!({"datetime": 946845296.123}));
    }

    #[test]
    fn timestamps_are_tagged_and_the_rest_maps_one_to_one() {
        let json = br#"{"Backups":[{"BackupId":"backup-abc","CreateTimestamp":1700000000.5,"NeverExpires":false}],"NextToken":"1","n":-3}"#;
        let cbor = json_to_cbor(json).unwrap();
        let v: Cbor = ciborium::from_reader(cbor.as_slice()).unwrap();
        let backups = v.as_map().unwrap()[0].1.as_array().unwrap();
        let entry = backups[0].as_map().unwrap();
        let created = entry
            .iter()
            .find(|(k, _)| k.as_text() == Some("CreateTimestamp"))
            .unwrap();
        assert_eq!(created.1, Cbor::Tag(1, Box::new(Cbor::Float(1700000000.5))));
        // And back: the same JSON document.
        let back: Json = serde_json::from_slice(&request_to_json(&cbor).unwrap()).unwrap();
        assert_eq!(back, serde_json::from_slice::<Json>(json).unwrap());
        assert_eq!(request_to_json(b"").unwrap(), b"{}");
        assert!(request_to_json(b"\xff\x00").is_err());
    }
}
