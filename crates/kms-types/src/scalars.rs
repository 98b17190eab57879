//! Scalar wire types: base64 blobs, epoch-second timestamps, and sensitive strings.

use base64::Engine as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use zeroize::{Zeroize, Zeroizing};

/// A blob member: standard padded base64 on the wire, bytes in memory.
///
/// The bytes are zeroized on drop because blobs carry plaintexts and data keys, and `Debug`
/// prints only the length so a blob never reaches a log.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Blob(Zeroizing<Vec<u8>>);

impl Blob {
    /// Wraps bytes.
    pub fn new(bytes: Vec<u8>) -> Self {
        Blob(Zeroizing::new(bytes))
    }
    /// The bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
    /// Number of bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }
    /// True when there are no bytes.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<Vec<u8>> for Blob {
    fn from(v: Vec<u8>) -> Self {
        Blob::new(v)
    }
}

impl std::fmt::Debug for Blob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Blob(<{} bytes>)", self.0.len())
    }
}

impl Serialize for Blob {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut text = base64::engine::general_purpose::STANDARD.encode(self.as_bytes());
        let r = s.serialize_str(&text);
        text.zeroize();
        r
    }
}

impl<'de> Deserialize<'de> for Blob {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = Zeroizing::new(String::deserialize(d)?);
        base64::engine::general_purpose::STANDARD
            .decode(text.as_bytes())
            .map(Blob::new)
            .map_err(|_| serde::de::Error::custom("a blob member is not valid base64"))
    }
}

/// A timestamp member: seconds since the Unix epoch as a JSON number (fraction allowed).
#[derive(Clone, Copy, Debug, PartialEq, PartialOrd, Default)]
pub struct Timestamp(pub f64);

impl Timestamp {
    /// From whole milliseconds since the epoch.
    pub fn from_millis(ms: i64) -> Self {
        Timestamp(ms as f64 / 1000.0)
    }
    /// Whole milliseconds since the epoch.
    pub fn as_millis(self) -> i64 {
        (self.0 * 1000.0).round() as i64
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(self.0)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = f64::deserialize(d)?;
        if v.is_finite() {
            Ok(Timestamp(v))
        } else {
            Err(serde::de::Error::custom(
                "a timestamp member is not a finite number",
            ))
        }
    }
}

/// A string member the model marks sensitive (passwords, XKS credentials): zeroized on drop and
/// never printed by `Debug`.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct SensitiveString(Zeroizing<String>);

impl Serialize for SensitiveString {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.expose())
    }
}

impl<'de> Deserialize<'de> for SensitiveString {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(SensitiveString::new)
    }
}

impl SensitiveString {
    /// Wraps a string.
    pub fn new(s: String) -> Self {
        SensitiveString(Zeroizing::new(s))
    }
    /// The text.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for SensitiveString {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SensitiveString(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_round_trips_as_padded_base64() {
        let b = Blob::new(b"hello".to_vec());
        let j = serde_json::to_string(&b).unwrap();
        assert_eq!(j, "\"aGVsbG8=\"");
        let back: Blob = serde_json::from_str(&j).unwrap();
        assert_eq!(back.as_bytes(), b"hello");
        assert!(serde_json::from_str::<Blob>("\"not base64!\"").is_err());
        assert_eq!(format!("{b:?}"), "Blob(<5 bytes>)");
    }

    #[test]
    fn timestamp_accepts_int_float_and_exponent() {
        for (text, want) in [
            ("1700000000", 1.7e9),
            ("1.7E9", 1.7e9),
            ("1700000000.5", 1_700_000_000.5),
        ] {
            let t: Timestamp = serde_json::from_str(text).unwrap();
            assert_eq!(t.0, want);
        }
    }
}
