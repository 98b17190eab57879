//! The audit files: appending hash-chained records and closing files with a signed digest.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use kms_crypto::asymmetric::{self, AsymmetricSpec, SignInput, SigningAlgorithm};
use serde_json::{json, Value};

use crate::FILE_PREFIX;

/// The audit signing key (ECDSA P-256): PKCS#8 private key and SPKI public key.
pub struct SigningKey {
    /// PKCS#8 DER (secret; zeroized on drop).
    pub pkcs8: kms_crypto::SecretBytes,
    /// SubjectPublicKeyInfo DER.
    pub spki: Vec<u8>,
}

impl SigningKey {
    /// A new random key.
    pub fn generate() -> Result<Self, String> {
        let pkcs8 = asymmetric::generate_private_key(AsymmetricSpec::EccNistP256)
            .map_err(|e| e.to_string())?;
        let spki = asymmetric::public_key_spki(AsymmetricSpec::EccNistP256, &pkcs8)
            .map_err(|e| e.to_string())?;
        Ok(SigningKey { pkcs8, spki })
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, String> {
        asymmetric::sign(
            AsymmetricSpec::EccNistP256,
            &self.pkcs8,
            SigningAlgorithm::EcdsaSha256,
            SignInput::Raw(message),
        )
        .map_err(|e| e.to_string())
    }
}

/// What a digest line signs.
pub(crate) fn digest_message(d: &Value) -> String {
    format!(
        "kmsd-audit-digest-v1\n{}\n{}\n{}\n{}\n{}\n{}\n{}",
        d["file"].as_str().unwrap_or_default(),
        d["firstSeq"],
        d["lastSeq"],
        d["records"],
        d["lastRecordSha256"].as_str().unwrap_or_default(),
        d["fileSha256"].as_str().unwrap_or_default(),
        d["closedAt"].as_str().unwrap_or_default(),
    )
}

/// Zero hash: the `prev` of the very first record.
pub(crate) const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The set of audit files in a directory, with the one being appended to.
pub struct AuditFileSet {
    dir: PathBuf,
    key: SigningKey,
    file: Option<OpenFile>,
    next_file_number: u64,
    next_seq: u64,
    last_hash: String,
}

struct OpenFile {
    name: String,
    file: File,
    bytes: u64,
    records: u64,
    first_seq: u64,
    hasher: kms_crypto::Sha256Context,
    opened_ms: i64,
}

/// Audit file names in order.
pub(crate) fn list_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(FILE_PREFIX) && n.ends_with(".jsonl"))
        })
        .collect();
    files.sort();
    Ok(files)
}

fn file_number(path: &Path) -> Option<u64> {
    path.file_name()?
        .to_str()?
        .strip_prefix(FILE_PREFIX)?
        .strip_suffix(".jsonl")?
        .parse()
        .ok()
}

impl AuditFileSet {
    /// Opens the directory (creating it). A last file without a digest (a crash) is closed with
    /// one now, so every record written before is covered by a signature.
    pub fn open(dir: &Path, key: SigningKey, now_ms: i64) -> Result<Self, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let files = list_files(dir).map_err(|e| e.to_string())?;
        let mut set = AuditFileSet {
            dir: dir.to_path_buf(),
            key,
            file: None,
            next_file_number: files
                .last()
                .and_then(|p| file_number(p))
                .map_or(1, |n| n + 1),
            next_seq: 1,
            last_hash: GENESIS.to_owned(),
        };
        if let Some(last) = files.last() {
            let (seq, hash, digested, bytes, records, first_seq) = scan(last)?;
            set.next_seq = seq + 1;
            set.last_hash = hash;
            if !digested {
                // Resume the file to close it: recompute its running hash.
                let content = std::fs::read(last).map_err(|e| e.to_string())?;
                let mut hasher = kms_crypto::Sha256Context::new();
                hasher.update(&content);
                let file = OpenOptions::new()
                    .append(true)
                    .open(last)
                    .map_err(|e| e.to_string())?;
                set.file = Some(OpenFile {
                    name: last
                        .file_name()
                        .and_then(|n| n.to_str())
                        .unwrap_or_default()
                        .to_owned(),
                    file,
                    bytes,
                    records,
                    first_seq,
                    hasher,
                    opened_ms: now_ms,
                });
                set.close_current(now_ms)?;
            }
        }
        Ok(set)
    }

    fn open_new(&mut self, now_ms: i64) -> Result<(), String> {
        let name = format!("{FILE_PREFIX}{:08}.jsonl", self.next_file_number);
        self.next_file_number += 1;
        let path = self.dir.join(&name);
        let file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)
            .map_err(|e| format!("creating {}: {e}", path.display()))?;
        if let Ok(d) = File::open(&self.dir) {
            let _ = d.sync_all();
        }
        self.file = Some(OpenFile {
            name,
            file,
            bytes: 0,
            records: 0,
            first_seq: self.next_seq,
            hasher: kms_crypto::Sha256Context::new(),
            opened_ms: now_ms,
        });
        Ok(())
    }

    /// Appends records (each a JSON object, which gets its `kmsdChain` member here, in place) to
    /// the current file; call [`Self::sync`] to make them durable.
    pub fn append(&mut self, records: &mut [Value], now_ms: i64) -> Result<(), String> {
        if self.file.is_none() {
            self.open_new(now_ms)?;
        }
        let Some(f) = self.file.as_mut() else {
            return Err("no audit file".into());
        };
        let mut buf = Vec::with_capacity(records.len() * 1024);
        for r in records.iter_mut() {
            r["kmsdChain"] = json!({"seq": self.next_seq, "prev": self.last_hash});
            let line = serde_json::to_vec(&*r).map_err(|e| e.to_string())?;
            self.last_hash = hex::encode(kms_crypto::sha256(&line));
            self.next_seq += 1;
            f.records += 1;
            buf.extend_from_slice(&line);
            buf.push(b'\n');
        }
        f.file
            .write_all(&buf)
            .map_err(|e| format!("writing audit file: {e}"))?;
        f.hasher.update(&buf);
        f.bytes += buf.len() as u64;
        Ok(())
    }

    /// fsyncs the current file.
    pub fn sync(&mut self) -> Result<(), String> {
        match &self.file {
            Some(f) => f
                .file
                .sync_data()
                .map_err(|e| format!("fsync of audit file: {e}")),
            None => Ok(()),
        }
    }

    /// Closes the current file with a signed digest if it is larger than `max_bytes` or older
    /// than `max_age_ms`.
    pub fn maybe_roll(
        &mut self,
        max_bytes: u64,
        max_age_ms: i64,
        now_ms: i64,
    ) -> Result<(), String> {
        let due = self.file.as_ref().is_some_and(|f| {
            f.records > 0 && (f.bytes >= max_bytes || now_ms - f.opened_ms >= max_age_ms)
        });
        if due {
            self.close_current(now_ms)?;
        }
        Ok(())
    }

    /// Writes the signed digest line and closes the current file (durably).
    pub fn close_current(&mut self, now_ms: i64) -> Result<(), String> {
        let Some(mut f) = self.file.take() else {
            return Ok(());
        };
        let file_sha = hex::encode(f.hasher.clone().finish());
        let mut digest = json!({
            "version": 1,
            "file": f.name,
            "firstSeq": f.first_seq,
            "lastSeq": self.next_seq - 1,
            "records": f.records,
            "lastRecordSha256": self.last_hash,
            "fileSha256": file_sha,
            "closedAt": crate::event_time(now_ms),
            "publicKey": base64::engine::general_purpose::STANDARD.encode(&self.key.spki),
        });
        let sig = self.key.sign(digest_message(&digest).as_bytes())?;
        digest["signature"] = json!(base64::engine::general_purpose::STANDARD.encode(sig));
        let mut line =
            serde_json::to_vec(&json!({"kmsdDigest": digest})).map_err(|e| e.to_string())?;
        line.push(b'\n');
        f.file.write_all(&line).map_err(|e| e.to_string())?;
        f.file.sync_all().map_err(|e| e.to_string())?;
        Ok(())
    }

    /// Sequence number the next record gets.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }
}

/// Reads a file: (last seq, last record hash, has digest, bytes before digest, records, first seq).
fn scan(path: &Path) -> Result<(u64, String, bool, u64, u64, u64), String> {
    let f = File::open(path).map_err(|e| e.to_string())?;
    let mut last_seq = 0;
    let mut last_hash = GENESIS.to_owned();
    let mut digested = false;
    let mut bytes = 0u64;
    let mut records = 0;
    let mut first_seq = 0;
    for line in BufReader::new(f).split(b'\n') {
        let line = line.map_err(|e| e.to_string())?;
        if line.is_empty() {
            continue;
        }
        let v: Value = serde_json::from_slice(&line)
            .map_err(|e| format!("{}: unreadable line: {e}", path.display()))?;
        if v.get("kmsdDigest").is_some() {
            digested = true;
            continue;
        }
        let seq = v["kmsdChain"]["seq"].as_u64().unwrap_or(0);
        if records == 0 {
            first_seq = seq;
        }
        last_seq = seq;
        last_hash = hex::encode(kms_crypto::sha256(&line));
        bytes += line.len() as u64 + 1;
        records += 1;
    }
    Ok((last_seq, last_hash, digested, bytes, records, first_seq))
}
