//! The audit files: appending hash-chained records, signing the chain head (checkpoints) while a
//! file is written, closing files with a signed digest, and removing old files by retention.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::line::AuditLine;

use crate::private_fs;
use crate::retention::{self, Retention};
use crate::signed::{signed_line, Covered, SignedKind, SigningKey};
use crate::verify::{check_file, KeyState, TrustedKey};
use crate::FILE_PREFIX;

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
    last_checkpoint_ms: i64,
    /// `"kmsdNodeId":"..."`, spliced into every record, if set.
    node_member: Option<Vec<u8>>,
}

struct OpenFile {
    name: String,
    file: File,
    bytes: u64,
    records: u64,
    first_seq: u64,
    /// Every byte written to the file so far (records and checkpoints).
    hasher: kms_crypto::Sha256Context,
    opened_ms: i64,
    /// Records written since the last signed line.
    unsigned: u64,
    /// Records other than kmsd's own retention records: a file holding only those does not
    /// roll by age (else an idle node would roll, and remove, files forever).
    rollable: u64,
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

fn file_name(path: &Path) -> String {
    path.file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_owned()
}

impl AuditFileSet {
    /// Opens the directory (creating it 0700; existing audit files are made 0600). A last file
    /// without a digest (a crash) is closed with one now, so every record written before is
    /// covered by a signature, but only if it still matches its own signed checkpoints: a file
    /// altered while kmsd was down is left without a digest (and `verify` reports it).
    pub fn open(dir: &Path, key: SigningKey, now_ms: i64) -> Result<Self, String> {
        private_fs::create_private_dir(dir)
            .map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let files = list_files(dir).map_err(|e| e.to_string())?;
        for f in &files {
            private_fs::make_private(f).map_err(|e| format!("{}: {e}", f.display()))?;
        }
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
            last_checkpoint_ms: i64::MIN,
            node_member: None,
        };
        let Some(last) = files.last() else {
            return Ok(set);
        };
        let (seq, hash, digested, bytes, records, first_seq) = scan(last)?;
        set.next_seq = seq + 1;
        set.last_hash = hash;
        if digested {
            return Ok(set);
        }
        let mut keys = KeyState::new(&TrustedKey::Pinned(set.key.spki.clone()));
        if let Err(e) = check_file(last, None, &mut keys, None) {
            tracing::error!(file = %last.display(), error = %e, "the unfinished audit file no longer matches its signed checkpoints: leaving it unsigned (kmsd audit verify will report it) and starting a new file");
            return Ok(set);
        }
        // Resume the file to close it: recompute its running hash.
        let content = std::fs::read(last).map_err(|e| e.to_string())?;
        let mut hasher = kms_crypto::Sha256Context::new();
        hasher.update(&content);
        let file = OpenOptions::new()
            .append(true)
            .open(last)
            .map_err(|e| e.to_string())?;
        set.file = Some(OpenFile {
            name: file_name(last),
            file,
            bytes,
            records,
            first_seq,
            hasher,
            opened_ms: now_ms,
            unsigned: records,
            rollable: records,
        });
        set.close_current(now_ms)?;
        Ok(set)
    }

    fn open_new(&mut self, now_ms: i64) -> Result<(), String> {
        let name = format!("{FILE_PREFIX}{:08}.jsonl", self.next_file_number);
        self.next_file_number += 1;
        let path = self.dir.join(&name);
        let file = private_fs::create_private_append(&path)
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
            unsigned: 0,
            rollable: 0,
        });
        Ok(())
    }

    /// Writes `kmsdNodeId: id` into every record appended from now on.
    pub fn set_node_id(&mut self, id: Option<&str>) {
        self.node_member = id.map(|id| {
            let mut m = br#""kmsdNodeId":"#.to_vec();
            m.extend_from_slice(&serde_json::to_vec(id).unwrap_or_else(|_| b"\"\"".to_vec()));
            m
        });
    }

    /// Appends records to the current file, each with its `kmsdChain` member (and the node id)
    /// spliced in; call [`Self::sync`] to make them durable.
    pub fn append(&mut self, records: &[AuditLine], now_ms: i64) -> Result<(), String> {
        if records.is_empty() {
            return Ok(());
        }
        if self.file.is_none() {
            self.open_new(now_ms)?;
        }
        let Some(f) = self.file.as_mut() else {
            return Err("no audit file".into());
        };
        let mut buf = Vec::with_capacity(records.iter().map(|r| r.as_bytes().len() + 160).sum());
        let mut link = Vec::with_capacity(128);
        for r in records {
            link.clear();
            link.extend_from_slice(br#""kmsdChain":{"seq":"#);
            link.extend_from_slice(self.next_seq.to_string().as_bytes());
            link.extend_from_slice(br#","prev":""#);
            link.extend_from_slice(self.last_hash.as_bytes());
            link.extend_from_slice(b"\"}");
            let start = buf.len();
            match &self.node_member {
                Some(node) => r.write_with(&[node, &link], &mut buf),
                None => r.write_with(&[&link], &mut buf),
            }
            self.last_hash = hex::encode(kms_crypto::sha256(&buf[start..]));
            self.next_seq += 1;
            f.records += 1;
            f.unsigned += 1;
            if !r.retention {
                f.rollable += 1;
            }
            buf.push(b'\n');
        }
        write(f, &buf)
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

    /// Records of the current file not yet covered by a signed line.
    pub fn unsigned_records(&self) -> u64 {
        self.file.as_ref().map_or(0, |f| f.unsigned)
    }

    /// When the current file was opened (ms), if one is open and will roll by age.
    pub fn open_since_ms(&self) -> Option<i64> {
        self.file
            .as_ref()
            .filter(|f| f.rollable > 0)
            .map(|f| f.opened_ms)
    }

    /// When the last checkpoint was written (ms; `i64::MIN` before the first).
    pub fn last_checkpoint_ms(&self) -> i64 {
        self.last_checkpoint_ms
    }

    /// Signs the chain head into the current file (a checkpoint line, fsynced) if records were
    /// written since the last signed line and `interval_ms` has passed since the last checkpoint.
    pub fn maybe_checkpoint(&mut self, interval_ms: i64, now_ms: i64) -> Result<(), String> {
        if self.unsigned_records() > 0
            && now_ms.saturating_sub(self.last_checkpoint_ms) >= interval_ms
        {
            self.checkpoint(now_ms)?;
        }
        Ok(())
    }

    /// Signs the chain head into the current file now (if it has unsigned records).
    pub fn checkpoint(&mut self, now_ms: i64) -> Result<(), String> {
        let Some(f) = self.file.as_mut() else {
            return Ok(());
        };
        if f.unsigned == 0 {
            return Ok(());
        }
        let line = signed_line(
            &self.key,
            SignedKind::Checkpoint,
            &covered(f, self.next_seq, &self.last_hash),
            &crate::event_time(now_ms),
        )?;
        write(f, &line)?;
        f.file
            .sync_data()
            .map_err(|e| format!("fsync of audit file: {e}"))?;
        f.unsigned = 0;
        self.last_checkpoint_ms = now_ms;
        Ok(())
    }

    /// Closes the current file with a signed digest if it is larger than `max_bytes` or older
    /// than `max_age_ms` (and holds more than retention records); returns whether it did.
    pub fn maybe_roll(
        &mut self,
        max_bytes: u64,
        max_age_ms: i64,
        now_ms: i64,
    ) -> Result<bool, String> {
        let due = self.file.as_ref().is_some_and(|f| {
            f.records > 0
                && (f.bytes >= max_bytes || (f.rollable > 0 && now_ms - f.opened_ms >= max_age_ms))
        });
        if due {
            self.close_current(now_ms)?;
        }
        Ok(due)
    }

    /// Writes the signed digest line and closes the current file (durably).
    pub fn close_current(&mut self, now_ms: i64) -> Result<(), String> {
        let Some(mut f) = self.file.take() else {
            return Ok(());
        };
        let line = signed_line(
            &self.key,
            SignedKind::Digest,
            &covered(&f, self.next_seq, &self.last_hash),
            &crate::event_time(now_ms),
        )?;
        f.file.write_all(&line).map_err(|e| e.to_string())?;
        f.file.sync_all().map_err(|e| e.to_string())?;
        Ok(())
    }

    /// Sequence number the next record gets.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Applies `policy`: removes the oldest closed files it selects, after checking that they
    /// are intact (chain and signed digest, with this node's key) and after writing, signing
    /// and syncing a retention record that lists them; returns that record's `kmsdRetention`
    /// member, or `None` if nothing was due. Files that do not verify are never removed.
    pub fn apply_retention(
        &mut self,
        policy: &Retention,
        now_ms: i64,
    ) -> Result<Option<Value>, String> {
        if policy.is_unlimited() {
            return Ok(None);
        }
        let open = self.file.as_ref().map(|f| f.name.clone());
        let files = list_files(&self.dir).map_err(|e| e.to_string())?;
        let mut keys = KeyState::new(&TrustedKey::Pinned(self.key.spki.clone()));
        let removable = retention::select(&files, open.as_deref(), policy, now_ms, &mut keys)?;
        if removable.is_empty() {
            return Ok(None);
        }
        let details = retention::details(policy, &removable);
        let record = [AuditLine::from_value(retention::record(&details, now_ms))];
        self.append(&record, now_ms)?;
        self.checkpoint(now_ms)?;
        for f in &removable {
            if let Err(e) = std::fs::remove_file(&f.path) {
                // Stop here so that what remains is still a suffix of the trail.
                return Err(format!("removing {}: {e}", f.path.display()));
            }
        }
        if let Ok(d) = File::open(&self.dir) {
            let _ = d.sync_all();
        }
        Ok(Some(details))
    }
}

fn covered<'a>(f: &'a OpenFile, next_seq: u64, last_hash: &'a str) -> Covered<'a> {
    Covered {
        file: &f.name,
        first_seq: f.first_seq,
        last_seq: next_seq - 1,
        records: f.records,
        last_hash,
        file_sha256: hex::encode(f.hasher.clone().finish()),
    }
}

fn write(f: &mut OpenFile, bytes: &[u8]) -> Result<(), String> {
    f.file
        .write_all(bytes)
        .map_err(|e| format!("writing audit file: {e}"))?;
    f.hasher.update(bytes);
    f.bytes += bytes.len() as u64;
    Ok(())
}

/// Reads a file: (last seq, last record hash, has digest, bytes, records, first seq).
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
        bytes += line.len() as u64 + 1;
        let v: Value = serde_json::from_slice(&line)
            .map_err(|e| format!("{}: unreadable line: {e}", path.display()))?;
        match SignedKind::of_line(&v) {
            Some((SignedKind::Digest, _)) => digested = true,
            Some((SignedKind::Checkpoint, _)) => {}
            None => {
                let seq = v["kmsdChain"]["seq"].as_u64().unwrap_or(0);
                if records == 0 {
                    first_seq = seq;
                }
                last_seq = seq;
                last_hash = hex::encode(kms_crypto::sha256(&line));
                records += 1;
            }
        }
    }
    Ok((last_seq, last_hash, digested, bytes, records, first_seq))
}
