//! The attacks of kmsd issue 12 §3 against the audit files, each as an attacker with write
//! access to the audit directory (and, where said, the signing key) would carry it out.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use kms_audit::{
    anchor, verify, Anchor, AuditFileSet, AuditLine, Retention, SigningKey, TrustedKey,
    VerifyOptions,
};
use serde_json::{json, Value};

/// 2026-01-01T00:00:00Z.
const T0: i64 = 1_767_225_600_000;

fn event(i: u64, name: &str, principal: &str, error: Option<&str>) -> AuditLine {
    let mut v = json!({
        "eventName": name,
        "eventTime": kms_audit::event_time(T0 + i as i64 * 1000),
        "userIdentity": {"arn": format!("arn:aws:iam::111122223333:user/{principal}")},
    });
    if let Some(e) = error {
        v["errorCode"] = json!(e);
    }
    v.into()
}

/// A trail: file 1 (records 1-3, closed), file 2 (records 4-6, open): record 4 is mallory's
/// denied Encrypt, a checkpoint follows record 5, record 6 is not signed yet.
fn trail(dir: &Path) -> SigningKey {
    let key = SigningKey::generate().unwrap();
    let mut set = AuditFileSet::open(dir, key.duplicate(), T0).unwrap();
    for i in 1..=3 {
        set.append(&[event(i, "ListKeys", "admin", None)], T0)
            .unwrap();
    }
    set.close_current(T0 + 3000).unwrap();
    set.append(
        &[event(
            4,
            "Encrypt",
            "mallory",
            Some("AccessDeniedException"),
        )],
        T0 + 4000,
    )
    .unwrap();
    set.append(&[event(5, "ListKeys", "admin", None)], T0 + 5000)
        .unwrap();
    set.checkpoint(T0 + 5000).unwrap();
    set.append(&[event(6, "ListKeys", "admin", None)], T0 + 6000)
        .unwrap();
    set.sync().unwrap();
    key
}

fn file(dir: &Path, n: u64) -> PathBuf {
    dir.join(format!("audit-{n:08}.jsonl"))
}

fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// What an attacker without the key does after editing records: recompute every `prev` so
/// the chain fits again (signed lines are kept or dropped as given), and write the file back.
/// A line left unchanged keeps its bytes (the writer's member order is not serde_json's).
fn rechain(path: &Path, mut prev: String, lines: Vec<Value>) {
    let original: std::collections::HashMap<String, String> = std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (serde_json::to_string(&v).unwrap(), l.to_owned())
        })
        .collect();
    let as_written = |v: &Value| {
        let canonical = serde_json::to_string(v).unwrap();
        original.get(&canonical).cloned().unwrap_or(canonical)
    };
    let mut out = String::new();
    for mut v in lines {
        if v.get("kmsdChain").is_some() {
            v["kmsdChain"]["prev"] = json!(prev);
            let line = as_written(&v);
            prev = hex::encode(kms_crypto::sha256(line.as_bytes()));
            out.push_str(&line);
        } else {
            out.push_str(&as_written(&v));
        }
        out.push('\n');
    }
    std::fs::write(path, out).unwrap();
}

/// The chain head at the end of `path` (hash of its last record line).
fn last_record_hash(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let line = text.lines().rfind(|l| l.contains("\"kmsdChain\"")).unwrap();
    hex::encode(kms_crypto::sha256(line.as_bytes()))
}

fn forge_denied_as_admin_success(v: &mut Value) {
    v["userIdentity"]["arn"] = json!("arn:aws:iam::111122223333:user/admin");
    v.as_object_mut().unwrap().remove("errorCode");
}

fn opts(key: &SigningKey) -> VerifyOptions {
    VerifyOptions {
        key: TrustedKey::Pinned(key.spki.clone()),
        anchor: None,
        max_unsigned_age_ms: None,
        now_ms: T0,
    }
}

#[test]
fn the_intact_trail_verifies_and_reports_its_unsigned_tail() {
    let dir = tempfile::tempdir().unwrap();
    let key = trail(dir.path());
    let r = verify(dir.path(), &opts(&key)).unwrap();
    assert_eq!((r.records, r.last_seq), (6, 6));
    assert_eq!(r.open_file.as_deref(), Some("audit-00000002.jsonl"));
    assert_eq!(r.unprotected_records, 1);
}

#[test]
fn rewriting_a_signed_record_of_the_open_file_is_found() {
    let dir = tempfile::tempdir().unwrap();
    let key = trail(dir.path());
    let open = file(dir.path(), 2);
    let mut l = lines(&open);
    forge_denied_as_admin_success(&mut l[0]);
    rechain(&open, last_record_hash(&file(dir.path(), 1)), l);
    let e = verify(dir.path(), &opts(&key)).unwrap_err();
    assert!(e.starts_with("audit-00000002.jsonl:3:"), "{e}");
    assert!(e.contains("checkpoint"), "{e}");
}

#[test]
fn stripping_the_checkpoints_leaves_an_old_unsigned_tail_that_verify_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let key = trail(dir.path());
    let open = file(dir.path(), 2);
    let mut l: Vec<Value> = lines(&open)
        .into_iter()
        .filter(|v| v.get("kmsdCheckpoint").is_none())
        .collect();
    forge_denied_as_admin_success(&mut l[0]);
    rechain(&open, last_record_hash(&file(dir.path(), 1)), l);
    let mut o = opts(&key);
    // Verified a minute and a half after the records were written.
    o.max_unsigned_age_ms = Some(60_000);
    o.now_ms = T0 + 90_000;
    let e = verify(dir.path(), &o).unwrap_err();
    assert!(
        e.starts_with("audit-00000002.jsonl:1: record 4") && e.contains("no signed checkpoint"),
        "{e}"
    );
    // Even without the age limit, the report says every record of the file is unprotected.
    let r = verify(dir.path(), &opts(&key)).unwrap();
    assert_eq!(r.unprotected_records, 3);
}

#[test]
fn dropping_the_last_digest_and_newer_files_to_rewrite_a_signed_record_is_found() {
    let dir = tempfile::tempdir().unwrap();
    let key = trail(dir.path());
    let mut set = AuditFileSet::open(dir.path(), key.duplicate(), T0 + 7000).unwrap();
    set.close_current(T0 + 7000).unwrap();
    drop(set);
    // The attacker removes file 2's digest and rewrites record 4, which a checkpoint covers.
    let second = file(dir.path(), 2);
    let mut l: Vec<Value> = lines(&second)
        .into_iter()
        .filter(|v| v.get("kmsdDigest").is_none())
        .collect();
    forge_denied_as_admin_success(&mut l[0]);
    rechain(&second, last_record_hash(&file(dir.path(), 1)), l);
    let e = verify(dir.path(), &opts(&key)).unwrap_err();
    assert!(e.starts_with("audit-00000002.jsonl:3:"), "{e}");
}

#[test]
fn a_trail_signed_with_another_key_fails_against_the_pinned_key() {
    let dir = tempfile::tempdir().unwrap();
    let _node = trail(dir.path());
    let forged = tempfile::tempdir().unwrap();
    let attacker = trail(forged.path());
    let node = SigningKey::generate().unwrap();
    let e = verify(forged.path(), &opts(&node)).unwrap_err();
    assert!(e.contains("different key"), "{e}");
    // Trusting the embedded key accepts the forgery: that is why it must be asked for.
    let mut o = opts(&attacker);
    o.key = TrustedKey::Embedded;
    verify(forged.path(), &o).unwrap();
}

#[test]
fn an_anchor_pins_history_even_against_the_signing_key() {
    let dir = tempfile::tempdir().unwrap();
    let key = trail(dir.path());
    let pinned = TrustedKey::Pinned(key.spki.clone());
    let a = anchor(dir.path(), &pinned).unwrap();
    assert_eq!(a.seq(), 5);
    let a = Anchor::parse(&a.to_line()).unwrap();
    let mut o = opts(&key);
    o.anchor = Some(a.clone());
    verify(dir.path(), &o).unwrap();

    // Someone holding the key rewrites record 4 and re-signs everything: the pinned key
    // accepts it, the anchor does not.
    let forged = tempfile::tempdir().unwrap();
    {
        let mut set = AuditFileSet::open(forged.path(), key.duplicate(), T0).unwrap();
        for i in 1..=3 {
            set.append(&[event(i, "ListKeys", "admin", None)], T0)
                .unwrap();
        }
        set.close_current(T0 + 3000).unwrap();
        set.append(&[event(4, "Encrypt", "admin", None)], T0 + 4000)
            .unwrap();
        set.append(&[event(5, "ListKeys", "admin", None)], T0 + 5000)
            .unwrap();
        set.close_current(T0 + 5000).unwrap();
    }
    verify(forged.path(), &opts(&key)).unwrap();
    let e = verify(forged.path(), &o).unwrap_err();
    assert!(e.contains("record 5 differs from the anchored one"), "{e}");

    // Cutting records off the end is found too.
    let cut = tempfile::tempdir().unwrap();
    std::fs::copy(file(dir.path(), 1), file(cut.path(), 1)).unwrap();
    let e = verify(cut.path(), &o).unwrap_err();
    assert!(e.contains("the trail ends at record 3"), "{e}");

    // An anchor signed by someone else is refused.
    let mut bad = a;
    bad.signed["lastRecordSha256"] = json!("00");
    o.anchor = Some(bad);
    let e = verify(dir.path(), &o).unwrap_err();
    assert!(e.starts_with("anchor:"), "{e}");
}

#[cfg(unix)]
#[test]
fn audit_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("audit");
    trail(&dir);
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&file(&dir, 1)), 0o600);
    assert_eq!(mode(&file(&dir, 2)), 0o600);
    // Files left world-readable by an older version are made private on open.
    std::fs::set_permissions(file(&dir, 1), std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    AuditFileSet::open(&dir, SigningKey::generate().unwrap(), T0).unwrap();
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&file(&dir, 1)), 0o600);
}

/// Five closed files of two records each, the first three closed long ago.
fn aged_trail(dir: &Path) -> (SigningKey, AuditFileSet) {
    let key = SigningKey::generate().unwrap();
    let mut set = AuditFileSet::open(dir, key.duplicate(), T0).unwrap();
    for f in 0..5u64 {
        let closed = if f < 3 { T0 } else { T0 + 40 * 86_400_000 };
        for i in 0..2 {
            set.append(&[event(f * 2 + i, "ListKeys", "admin", None)], closed)
                .unwrap();
        }
        set.close_current(closed).unwrap();
    }
    (key, set)
}

#[test]
fn retention_removes_old_verified_files_and_says_so_in_the_trail() {
    let dir = tempfile::tempdir().unwrap();
    let (key, mut set) = aged_trail(dir.path());
    let now = T0 + 41 * 86_400_000;
    let policy = Retention {
        max_age_days: Some(30),
        max_total_bytes: None,
    };
    let removed = set.apply_retention(&policy, now).unwrap().unwrap();
    assert_eq!(removed["removedFiles"].as_array().unwrap().len(), 3);
    assert!(set.apply_retention(&policy, now).unwrap().is_none());
    set.close_current(now).unwrap();
    for n in 1..=3 {
        assert!(!file(dir.path(), n).exists());
    }
    let r = verify(dir.path(), &opts(&key)).unwrap();
    assert_eq!((r.first_seq, r.last_seq), (7, 11));
    let q = kms_audit::query(dir.path(), &Default::default()).unwrap();
    assert_eq!(q.last().unwrap()["eventName"], "AuditFilesRemoved");

    // Removing one more file is not covered by the retention record.
    std::fs::remove_file(file(dir.path(), 4)).unwrap();
    let e = verify(dir.path(), &opts(&key)).unwrap_err();
    assert!(e.contains("the trail starts at record 9"), "{e}");
}

#[test]
fn retention_by_size_keeps_the_newest_files() {
    let dir = tempfile::tempdir().unwrap();
    let (key, mut set) = aged_trail(dir.path());
    let size = std::fs::metadata(file(dir.path(), 5)).unwrap().len();
    let policy = Retention {
        max_age_days: None,
        max_total_bytes: Some(size * 2 + size / 2),
    };
    set.apply_retention(&policy, T0).unwrap().unwrap();
    set.close_current(T0).unwrap();
    assert!(!file(dir.path(), 3).exists() && file(dir.path(), 4).exists());
    verify(dir.path(), &opts(&key)).unwrap();
}

#[test]
fn retention_refuses_to_remove_files_that_do_not_verify() {
    let dir = tempfile::tempdir().unwrap();
    let (_key, mut set) = aged_trail(dir.path());
    let first = file(dir.path(), 1);
    let text = std::fs::read_to_string(&first).unwrap();
    std::fs::write(&first, text.replacen("ListKeys", "ListAliases", 1)).unwrap();
    let policy = Retention {
        max_age_days: Some(30),
        max_total_bytes: None,
    };
    let e = set
        .apply_retention(&policy, T0 + 41 * 86_400_000)
        .unwrap_err();
    assert!(
        e.starts_with("retention stopped: audit-00000001.jsonl:"),
        "{e}"
    );
    assert!(first.exists());
}

#[test]
fn a_forged_retention_record_in_the_unsigned_tail_does_not_excuse_missing_files() {
    let dir = tempfile::tempdir().unwrap();
    let key = trail(dir.path());
    let first_hash = last_record_hash(&file(dir.path(), 1));
    std::fs::remove_file(file(dir.path(), 1)).unwrap();
    let open = file(dir.path(), 2);
    let mut l = lines(&open);
    let mut forged = json!({"eventName": "AuditFilesRemoved", "eventTime": kms_audit::event_time(T0 + 7000),
        "kmsdRetention": {"removedFiles": [{"lastSeq": 3, "lastRecordSha256": first_hash}]},
        "kmsdChain": {"seq": 7, "prev": ""}});
    l.push(forged.take());
    rechain(&open, first_hash, l);
    let e = verify(dir.path(), &opts(&key)).unwrap_err();
    assert!(
        e.starts_with("audit-00000002.jsonl:1: the trail starts at record 4"),
        "{e}"
    );
}
