//! SoftHSM2 tokens, an HSM declaration and a kmsd serving them, for CloudHSM key store tests.
//! Every child process gets its own `SOFTHSM2_CONF`, so tests of one file may run in parallel.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::Value;

use crate::common::Server;

/// The SO PIN of every token.
pub const SO_PIN: &str = "so-secret-1234";
/// SoftHSM2's PKCS#11 module.
pub const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";

/// Tokens in a private SoftHSM2 directory, their declaration, and a data dir.
pub struct HsmLab {
    _tmp: tempfile::TempDir,
    /// The test's directory.
    pub dir: PathBuf,
    /// `SOFTHSM2_CONF` for every process of the test.
    pub softhsm_conf: PathBuf,
    /// The `--hsm-config` file.
    pub hsm_config: PathBuf,
    /// kmsd's data dir.
    pub data: PathBuf,
}

/// Runs a command, failing the test with its output if it fails; returns stdout.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl HsmLab {
    /// Tokens `hsm-<label>` in zone `us-east-1<zone>` for each (label, zone), declared with
    /// subnets in zones a, b and c.
    pub fn new(tokens: &[(&str, &str)]) -> HsmLab {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        std::fs::create_dir_all(dir.join("tokens")).unwrap();
        let softhsm_conf = dir.join("softhsm2.conf");
        std::fs::write(
            &softhsm_conf,
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                dir.join("tokens").display()
            ),
        )
        .unwrap();
        std::fs::write(dir.join("so-pin"), SO_PIN).unwrap();
        let lab = HsmLab {
            hsm_config: dir.join("hsms.toml"),
            data: dir.join("data"),
            softhsm_conf,
            dir,
            _tmp: tmp,
        };
        let mut toml = String::new();
        for (label, zone) in tokens {
            lab.init_token(&format!("hsm-{label}"));
            toml.push_str(&lab.hsm_entry(label, zone));
        }
        for z in ["a", "b", "c"] {
            toml.push_str(&format!(
                "[[subnet]]\nid = \"subnet-0{z}0{z}0{z}0{z}\"\navailability_zone = \"us-east-1{z}\"\n\n"
            ));
        }
        std::fs::write(&lab.hsm_config, toml).unwrap();
        lab
    }

    /// `softhsm2-util --init-token` for a new token labelled `label`.
    pub fn init_token(&self, label: &str) {
        run(Command::new("softhsm2-util")
            .args([
                "--init-token",
                "--free",
                "--label",
                label,
                "--so-pin",
                SO_PIN,
            ])
            .args(["--pin", "initial-user-pin"])
            .env("SOFTHSM2_CONF", &self.softhsm_conf));
    }

    /// The TOML declaring token `hsm-<label>` in zone `us-east-1<zone>`.
    pub fn hsm_entry(&self, label: &str, zone: &str) -> String {
        format!(
            "[[hsm]]\nmodule = \"{MODULE}\"\ntoken_label = \"hsm-{label}\"\navailability_zone = \"us-east-1{zone}\"\nso_pin_file = \"{}\"\n\n",
            self.dir.join("so-pin").display()
        )
    }

    /// A new token `label` declared as a `[[backup_vault]]`.
    pub fn add_backup_vault(&self, label: &str) {
        self.init_token(label);
        let toml = std::fs::read_to_string(&self.hsm_config).unwrap()
            + &format!(
                "[[backup_vault]]\nmodule = \"{MODULE}\"\ntoken_label = \"{label}\"\nso_pin_file = \"{}\"\n\n",
                self.dir.join("so-pin").display()
            );
        std::fs::write(&self.hsm_config, toml).unwrap();
    }

    /// kmsd serving the lab's HSMs.
    pub fn serve(&self) -> Server {
        Server::start_in_env(
            &self.data,
            &["--hsm-config", self.hsm_config.to_str().unwrap()],
            &[("SOFTHSM2_CONF", &self.softhsm_conf)],
        )
    }

    /// `kmsd <args>` with the lab's SoftHSM2 configuration (not checked).
    pub fn kmsd(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_kmsd"))
            .args(args)
            .env("SOFTHSM2_CONF", &self.softhsm_conf)
            .output()
            .unwrap()
    }

    /// `kmsd hsm <command> --data-dir .. [--store ..] --hsm-config .. --cluster-id <cluster>
    /// <rest>`: (success, stdout + stderr).
    pub fn hsm(&self, command: &str, cluster: &str, rest: &[&str]) -> (bool, String) {
        let store = crate::common::store_args_of(&self.data);
        let mut args = vec!["hsm", command, "--data-dir", self.data.to_str().unwrap()];
        args.extend(store.iter().map(String::as_str));
        args.extend_from_slice(&[
            "--hsm-config",
            self.hsm_config.to_str().unwrap(),
            "--cluster-id",
            cluster,
        ]);
        args.extend_from_slice(rest);
        let o = self.kmsd(&args);
        (
            o.status.success(),
            String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr),
        )
    }

    /// The `aws` CLI against `server`, signed with its admin's credentials; the JSON answer.
    pub fn aws(&self, server: &Server, args: &[&str]) -> Value {
        let out = run(Command::new("aws")
            .args([
                "--endpoint-url",
                &server.endpoint(),
                "--region",
                "us-east-1",
            ])
            .args(["--output", "json"])
            .args(args)
            .env(
                "AWS_SHARED_CREDENTIALS_FILE",
                server.data_dir.join("admin-credentials"),
            )
            .env("AWS_CONFIG_FILE", "/dev/null")
            .env_remove("AWS_PROFILE"));
        if out.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&out).unwrap()
        }
    }

    /// `aws cloudhsmv2 create-hsm`: the new HSM.
    pub fn create_hsm(&self, server: &Server, cluster: &str, zone: &str) -> Value {
        let az = format!("us-east-1{zone}");
        self.aws(
            server,
            &[
                "cloudhsmv2",
                "create-hsm",
                "--cluster-id",
                cluster,
                "--availability-zone",
                &az,
            ],
        )["Hsm"]
            .clone()
    }

    /// A cluster on subnets a, b and c with HSMs in `zones`, initialised with a CA made by
    /// `openssl` (written to `<dir>/<cluster>/customerCA.crt`) and, when `user` is given, its
    /// crypto user (password `kmsPswd123`). Returns (cluster id, trust anchor PEM).
    pub fn cluster(&self, server: &Server, zones: &[&str], user: Option<&str>) -> (String, String) {
        let c = self.aws(
            server,
            &[
                "cloudhsmv2",
                "create-cluster",
                "--hsm-type",
                "hsm1.medium",
                "--subnet-ids",
                "subnet-0a0a0a0a",
                "subnet-0b0b0b0b",
                "subnet-0c0c0c0c",
            ],
        );
        let cluster = c["Cluster"]["ClusterId"].as_str().unwrap().to_owned();
        for z in zones {
            assert_eq!(self.create_hsm(server, &cluster, z)["State"], "ACTIVE");
        }
        let csr = c["Cluster"]["Certificates"]["ClusterCsr"]
            .as_str()
            .unwrap()
            .to_owned();
        let (signed, anchor) = self.sign_csr(&cluster, &csr);
        let init = self.aws(
            server,
            &[
                "cloudhsmv2",
                "initialize-cluster",
                "--cluster-id",
                &cluster,
                "--signed-cert",
                &signed,
                "--trust-anchor",
                &anchor,
            ],
        );
        assert_eq!(init["State"], "INITIALIZED");
        if let Some(user) = user {
            let (ok, out) = self.hsm("create-user", &cluster, &[user, "kmsPswd123"]);
            assert!(ok, "{out}");
        }
        (cluster, anchor)
    }

    /// Signs a cluster CSR with a new `openssl` CA: (cluster certificate, CA certificate).
    fn sign_csr(&self, cluster: &str, csr: &str) -> (String, String) {
        let dir = self.dir.join(cluster);
        std::fs::create_dir_all(&dir).unwrap();
        sign_csr(&dir, csr)
    }

    /// `kmsd audit query` of a cluster's own log (after checking it verifies).
    pub fn cluster_log(&self, cluster: &str) -> String {
        let log = self.data.join("hsm-audit").join(cluster);
        let verify = self.kmsd(&[
            "audit",
            "verify",
            log.to_str().unwrap(),
            "--public-key",
            self.data
                .join("audit-signing-key.pub.der")
                .to_str()
                .unwrap(),
        ]);
        assert!(verify.status.success(), "{verify:?}");
        let q = self.kmsd(&["audit", "query", log.to_str().unwrap()]);
        assert!(q.status.success(), "{q:?}");
        String::from_utf8_lossy(&q.stdout).into_owned()
    }
}

/// Connects the store, then returns (ConnectionState, ConnectionErrorCode) as described.
pub async fn connect(kms: &aws_sdk_kms::Client, store: &str) -> (String, Option<String>) {
    kms.connect_custom_key_store()
        .custom_key_store_id(store)
        .send()
        .await
        .unwrap();
    describe(kms, store).await
}

/// (ConnectionState, ConnectionErrorCode) of a store.
pub async fn describe(kms: &aws_sdk_kms::Client, store: &str) -> (String, Option<String>) {
    let d = kms
        .describe_custom_key_stores()
        .custom_key_store_id(store)
        .send()
        .await
        .unwrap();
    let s = &d.custom_key_stores()[0];
    (
        s.connection_state().unwrap().as_str().to_owned(),
        s.connection_error_code().map(|c| c.as_str().to_owned()),
    )
}

/// DisconnectCustomKeyStore.
pub async fn disconnect(kms: &aws_sdk_kms::Client, store: &str) {
    kms.disconnect_custom_key_store()
        .custom_key_store_id(store)
        .send()
        .await
        .unwrap();
}

/// A new key store on `cluster` with password `kmsPswd123`.
pub async fn create_store(
    kms: &aws_sdk_kms::Client,
    name: &str,
    cluster: &str,
    anchor: &str,
) -> String {
    kms.create_custom_key_store()
        .custom_key_store_name(name)
        .cloud_hsm_cluster_id(cluster)
        .trust_anchor_certificate(anchor)
        .key_store_password("kmsPswd123")
        .send()
        .await
        .unwrap()
        .custom_key_store_id()
        .unwrap()
        .to_owned()
}

/// A new symmetric key in CloudHSM key store `store`: its id.
pub async fn create_key(kms: &aws_sdk_kms::Client, store: &str) -> String {
    let key = kms
        .create_key()
        .origin(aws_sdk_kms::types::OriginType::AwsCloudhsm)
        .custom_key_store_id(store);
    crate::common::created_key_id(key.send().await.unwrap())
}

/// UpdateCustomKeyStore with a new KeyStorePassword.
pub async fn set_store_password(kms: &aws_sdk_kms::Client, store: &str, password: &str) {
    kms.update_custom_key_store()
        .custom_key_store_id(store)
        .key_store_password(password)
        .send()
        .await
        .unwrap();
}

/// Signs a cluster CSR with a new `openssl` CA made in `dir`: (cluster certificate, CA
/// certificate), as the AWS guide has the customer do.
pub fn sign_csr(dir: &std::path::Path, csr: &str) -> (String, String) {
    std::fs::write(dir.join("cluster.csr"), csr).unwrap();
    let o = |args: &[&str]| run(Command::new("openssl").args(args).current_dir(dir));
    o(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "customerCA.key",
        "-out",
        "customerCA.crt",
        "-days",
        "3",
        "-subj",
        "/CN=customer CA",
    ]);
    o(&[
        "x509",
        "-req",
        "-days",
        "3",
        "-in",
        "cluster.csr",
        "-CA",
        "customerCA.crt",
        "-CAkey",
        "customerCA.key",
        "-CAcreateserial",
        "-out",
        "cluster.crt",
    ]);
    (
        std::fs::read_to_string(dir.join("cluster.crt")).unwrap(),
        std::fs::read_to_string(dir.join("customerCA.crt")).unwrap(),
    )
}
