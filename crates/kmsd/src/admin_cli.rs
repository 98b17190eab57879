//! `kmsd admin ...`: accounts, users, roles, access keys, identity policies and assumed-role
//! credentials, on a data dir whose server may be running (it sees changes within a second).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::Subcommand;
use kms_core::{ManualClock, Service};

/// `kmsd admin ...`
#[derive(Subcommand, Debug)]
pub enum AdminCommand {
    /// Create an account: its `admin` user (AdministratorAccess) and an access key, printed once.
    CreateAccount {
        /// 12-digit account id.
        account_id: String,
    },
    /// Create a user (no policies, no access key).
    CreateUser {
        /// Account of the user.
        #[arg(long)]
        account_id: String,
        /// User name.
        name: String,
    },
    /// Create a role that the given principals (ARNs or 12-digit account ids) may assume.
    CreateRole {
        /// Account of the role.
        #[arg(long)]
        account_id: String,
        /// Who may assume it (repeatable).
        #[arg(long = "trust", required = true)]
        trusted: Vec<String>,
        /// Role name.
        name: String,
    },
    /// Create an access key for a user; prints it in shared-credentials format.
    CreateAccessKey {
        /// `arn:aws:iam::<acct>:user/<name>`.
        user_arn: String,
    },
    /// Delete an access key.
    DeleteAccessKey {
        /// The access key id.
        access_key_id: String,
    },
    /// Attach (or replace) an identity policy of a user or role.
    PutPolicy {
        /// The user or role ARN.
        principal_arn: String,
        /// Policy name.
        name: String,
        /// The policy document: JSON text, or `file://PATH`.
        document: String,
    },
    /// Remove an identity policy.
    DeletePolicy {
        /// The user or role ARN.
        principal_arn: String,
        /// Policy name.
        name: String,
    },
    /// Tag a user or role (`aws:PrincipalTag/<key>`).
    TagPrincipal {
        /// The user or role ARN.
        principal_arn: String,
        /// Tag key.
        key: String,
        /// Tag value.
        value: String,
    },
    /// Assume a role as a principal the role trusts; prints temporary credentials (with session token).
    AssumeRole {
        /// The role ARN.
        role_arn: String,
        /// Session name.
        session_name: String,
        /// Who assumes it (a user ARN the role trusts).
        #[arg(long = "as")]
        caller_arn: String,
        /// Lifetime (900..43200 seconds).
        #[arg(long, default_value_t = 3600)]
        duration_secs: i64,
    },
}

/// A service for a command-line tool on `data_dir` (its root key) and `store` (default: the
/// data dir's SQLite database; or a `postgres://` URL), checked against the store's root key.
pub(crate) async fn open(data_dir: &Path, store: Option<&str>) -> Result<Service, String> {
    let root = crate::root_key::for_tools(data_dir)?;
    let (spec, dir) = (store.map(str::to_owned), data_dir.to_owned());
    let (store, _) =
        tokio::task::spawn_blocking(move || kms_store::open_store(spec.as_deref(), &dir))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
    let service = Service::new(store, Arc::new(root), Arc::new(ManualClock::default()));
    service.verify_root_key().await.map_err(|e| e.message)?;
    Ok(service)
}

fn print_credentials(akid: &str, secret: &str, token: Option<&str>) {
    println!("[default]\naws_access_key_id = {akid}\naws_secret_access_key = {secret}");
    if let Some(t) = token {
        println!("aws_session_token = {t}");
    }
}

/// Runs `kmsd admin ...` on `data_dir` (its root key) and `store` (default: the data dir's
/// SQLite database; or a `postgres://` URL).
pub async fn run(
    data_dir: PathBuf,
    store: Option<String>,
    cmd: AdminCommand,
) -> Result<(), String> {
    std::fs::create_dir_all(&data_dir).map_err(|e| e.to_string())?;
    let svc = open(&data_dir, store.as_deref()).await?;
    let m = |e: kms_core::KmsError| e.message;
    match cmd {
        AdminCommand::CreateAccount { account_id } => {
            let (akid, secret) = svc.create_account(&account_id).await.map_err(m)?;
            eprintln!(
                "created account {account_id} with user arn:aws:iam::{account_id}:user/admin"
            );
            print_credentials(&akid, &secret, None);
        }
        AdminCommand::CreateUser { account_id, name } => {
            let p = svc.create_user(&account_id, &name).await.map_err(m)?;
            println!("{}", p.arn);
        }
        AdminCommand::CreateRole {
            account_id,
            trusted,
            name,
        } => {
            let p = svc
                .create_role(&account_id, &name, trusted)
                .await
                .map_err(m)?;
            println!("{}", p.arn);
        }
        AdminCommand::CreateAccessKey { user_arn } => {
            let (akid, secret) = svc.create_access_key(&user_arn).await.map_err(m)?;
            print_credentials(&akid, &secret, None);
        }
        AdminCommand::DeleteAccessKey { access_key_id } => {
            svc.delete_access_key(&access_key_id).await.map_err(m)?;
            println!("deleted {access_key_id}");
        }
        AdminCommand::PutPolicy {
            principal_arn,
            name,
            document,
        } => {
            let text = match document.strip_prefix("file://") {
                Some(path) => std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?,
                None => document,
            };
            svc.put_principal_policy(&principal_arn, &name, &text)
                .await
                .map_err(m)?;
            println!("attached {name} to {principal_arn}");
        }
        AdminCommand::DeletePolicy {
            principal_arn,
            name,
        } => {
            svc.delete_principal_policy(&principal_arn, &name)
                .await
                .map_err(m)?;
            println!("removed {name} from {principal_arn}");
        }
        AdminCommand::TagPrincipal {
            principal_arn,
            key,
            value,
        } => {
            svc.tag_principal(&principal_arn, &key, &value)
                .await
                .map_err(m)?;
            println!("tagged {principal_arn}");
        }
        AdminCommand::AssumeRole {
            role_arn,
            session_name,
            caller_arn,
            duration_secs,
        } => {
            let c = svc
                .assume_role(&role_arn, &session_name, &caller_arn, duration_secs)
                .await
                .map_err(m)?;
            eprintln!(
                "assumed {} until {}",
                c.assumed_role_arn,
                kms_audit::event_time(c.expires_ms)
            );
            print_credentials(
                &c.access_key_id,
                &c.secret_access_key,
                Some(&c.session_token),
            );
        }
    }
    Ok(())
}
