//! `kmsd audit ...`: verify, anchor, public-key, query.

use std::path::{Path, PathBuf};

use clap::Subcommand;
use kms_audit::{Anchor, TrustedKey, VerifyOptions};

/// Default `--max-unsigned-secs`.
const DEFAULT_MAX_UNSIGNED_SECS: u64 = 60;

/// The key options shared by `verify` and `anchor`.
#[derive(clap::Args, Debug)]
pub struct KeyArgs {
    /// The audit signing public key, PEM or DER (print it on the kmsd host with `kmsd audit
    /// public-key` and keep a copy off that host). Required unless --trust-embedded-key.
    #[arg(long)]
    pub public_key: Option<PathBuf>,
    /// Check signatures with the key the trail itself names instead of a pinned one. This only
    /// shows that the files are consistent with each other: anyone able to write the audit
    /// directory can replace the whole trail by one signed with their own key, and it verifies.
    #[arg(long, conflicts_with = "public_key")]
    pub trust_embedded_key: bool,
}

impl KeyArgs {
    fn trusted_key(&self) -> Result<TrustedKey, String> {
        match (&self.public_key, self.trust_embedded_key) {
            (Some(path), _) => read_public_key(path).map(TrustedKey::Pinned),
            (None, true) => Ok(TrustedKey::Embedded),
            (None, false) => Err("give --public-key FILE (the audit signing public key: `kmsd audit public-key` prints it), or --trust-embedded-key to accept whatever key the trail names, which anyone able to write the audit directory can choose".into()),
        }
    }
}

/// `kmsd audit ...`
#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    /// Check that no record was removed, reordered or altered: the hash chain, every signed
    /// checkpoint and digest (with the pinned public key), gaps left by retention, and an anchor
    /// kept elsewhere if given. Names the first file and line that do not fit. Exit status 0
    /// only when the trail is intact.
    Verify {
        /// The audit directory (DATA_DIR/audit by default), or a directory whose subdirectories
        /// are several nodes' audit directories (each is verified).
        dir: PathBuf,
        /// Which key signatures are checked with.
        #[command(flatten)]
        key: KeyArgs,
        /// An anchor printed earlier by `kmsd audit anchor` and kept elsewhere: the trail must
        /// still hold the record it pins (detects records cut off the end, and rewrites even by
        /// someone holding the signing key).
        #[arg(long)]
        anchor: Option<PathBuf>,
        /// Fail if the newest file has records older than this that no signed checkpoint
        /// covers (kmsd signs records within a second; old unsigned records mean removed
        /// checkpoints, or a crashed kmsd not restarted yet). 0: no limit.
        #[arg(long, default_value_t = DEFAULT_MAX_UNSIGNED_SECS)]
        max_unsigned_secs: u64,
    },
    /// Verify the trail and print its newest signed checkpoint or digest as one line (sequence
    /// number, record hash, signature). Ship it off the host: `verify --anchor FILE` later
    /// proves the trail still holds that record and everything before it.
    Anchor {
        /// The audit directory.
        dir: PathBuf,
        /// Which key signatures are checked with.
        #[command(flatten)]
        key: KeyArgs,
    },
    /// Print the audit signing public key (PEM) and its SHA-256 fingerprint.
    PublicKey {
        /// The server's data directory.
        #[arg(long, env = "KMSD_DATA_DIR", default_value = "./kmsd-data")]
        data_dir: PathBuf,
    },
    /// Print the records (JSON lines) that match every given filter.
    Query {
        /// The audit directory, or a directory whose subdirectories are several nodes' audit
        /// directories (their records merged by time).
        dir: PathBuf,
        /// Records at or after this time (e.g. 2026-11-23T18:00:00Z).
        #[arg(long)]
        since: Option<String>,
        /// Records before this time.
        #[arg(long)]
        until: Option<String>,
        /// Records about this key (key id or key ARN).
        #[arg(long)]
        key: Option<String>,
        /// Records of this principal ARN.
        #[arg(long)]
        principal: Option<String>,
        /// Records of this operation (eventName), e.g. Decrypt.
        #[arg(long)]
        event_name: Option<String>,
    },
}

/// Reads a public key file: PEM (`PUBLIC KEY`) or DER.
fn read_public_key(path: &Path) -> Result<Vec<u8>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    if !bytes.starts_with(b"-----BEGIN") {
        return Ok(bytes);
    }
    let p = pem::parse(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    if p.tag() != "PUBLIC KEY" {
        return Err(format!(
            "{}: a PUBLIC KEY PEM block was expected, not {}",
            path.display(),
            p.tag()
        ));
    }
    Ok(p.contents().to_vec())
}

fn now_ms() -> i64 {
    use kms_core::Clock as _;
    kms_core::SystemClock.now_ms()
}

/// Prints what `verify` found about one trail (`prefix` names the node, if several).
fn print_report(
    prefix: &str,
    report: &kms_audit::VerifyReport,
    key: &KeyArgs,
    anchor: Option<&Anchor>,
) {
    println!(
        "{prefix}audit trail intact: {} files, {} records, sequence {}..{}, last record sha256 {}",
        report.files, report.records, report.first_seq, report.last_seq, report.last_hash
    );
    if key.trust_embedded_key {
        let fp = report
            .public_key
            .as_deref()
            .map(|k| hex::encode(kms_crypto::sha256(k)))
            .unwrap_or_default();
        println!("{prefix}signatures checked with the key the trail names (sha256 {fp}), not a pinned one: a trail rewritten and re-signed with another key would pass too");
    }
    if report.first_seq > 1 {
        println!(
            "{prefix}records before {} were removed by retention (a signed retention record says so)",
            report.first_seq
        );
    }
    if let Some(a) = anchor {
        println!("{prefix}the anchored record {} is in the trail", a.seq());
    }
    if let Some(open) = &report.open_file {
        println!(
            "{prefix}{open} is still open: {} record(s) after its last signed checkpoint are not protected yet (whoever can write the file can rewrite them; kmsd signs them within a second)",
            report.unprotected_records
        );
    }
}

/// Runs `kmsd audit ...`.
pub fn audit_command(cmd: AuditCommand) -> Result<(), String> {
    match cmd {
        AuditCommand::Verify {
            dir,
            key,
            anchor,
            max_unsigned_secs,
        } => {
            let anchor = anchor
                .map(|p| {
                    std::fs::read_to_string(&p)
                        .map_err(|e| format!("reading {}: {e}", p.display()))
                        .and_then(|t| Anchor::parse(&t))
                })
                .transpose()?;
            let trails = kms_audit::node_trails(&dir)?;
            if trails.len() > 1 && anchor.is_some() {
                return Err(format!(
                    "{} holds {} nodes' trails: an anchor pins one trail, give that node's directory",
                    dir.display(),
                    trails.len()
                ));
            }
            let options = VerifyOptions {
                key: key.trusted_key()?,
                anchor: anchor.clone(),
                max_unsigned_age_ms: (max_unsigned_secs > 0)
                    .then(|| max_unsigned_secs.saturating_mul(1000)),
                now_ms: now_ms(),
            };
            let mut failed = Vec::new();
            for (node, trail) in &trails {
                let prefix = if node.is_empty() {
                    String::new()
                } else {
                    format!("{node}: ")
                };
                match kms_audit::verify(trail, &options) {
                    Ok(report) => print_report(&prefix, &report, &key, anchor.as_ref()),
                    Err(e) if trails.len() > 1 => {
                        println!("{prefix}NOT intact: {e}");
                        failed.push(node.clone());
                    }
                    Err(e) => return Err(e),
                }
            }
            if failed.is_empty() {
                Ok(())
            } else {
                Err(format!(
                    "the trails of {} are not intact",
                    failed.join(", ")
                ))
            }
        }
        AuditCommand::Anchor { dir, key } => {
            let a = kms_audit::anchor(&dir, &key.trusted_key()?)?;
            println!("{}", a.to_line());
            Ok(())
        }
        AuditCommand::PublicKey { data_dir } => {
            let path = data_dir.join(crate::audit::PUBLIC_KEY_FILE);
            let spki = std::fs::read(&path).map_err(|e| {
                format!(
                    "reading {}: {e} (kmsd writes it at its first start)",
                    path.display()
                )
            })?;
            let lf = pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF);
            print!(
                "{}",
                pem::encode_config(&pem::Pem::new("PUBLIC KEY", spki.clone()), lf)
            );
            eprintln!(
                "sha256 fingerprint: {}",
                hex::encode(kms_crypto::sha256(&spki))
            );
            Ok(())
        }
        AuditCommand::Query {
            dir,
            since,
            until,
            key,
            principal,
            event_name,
        } => {
            let filter = kms_audit::QueryFilter {
                since,
                until,
                key,
                principal,
                event_name,
                ..Default::default()
            };
            for record in kms_audit::query_trails(&dir, &filter)? {
                println!("{record}");
            }
            Ok(())
        }
    }
}
