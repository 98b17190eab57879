//! The root key protected by a PKCS#11 HSM (SoftHSM2): `kmsd serve --root-key-pkcs11` and
//! `kmsd root-key rewrap`, with the real binary.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "common/hsm_lab.rs"]
mod hsm_lab;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use aws_sdk_kms::primitives::Blob;
use common::Server;
use hsm_lab::{HsmLab, MODULE};

const PIN: &str = "initial-user-pin";

/// A SoftHSM2 token `root-tok` (user PIN [`PIN`]) and a PIN file.
fn lab() -> (HsmLab, PathBuf, String) {
    let lab = HsmLab::new(&[]);
    lab.init_token("root-tok");
    let pin_file = lab.dir.join("root-pin");
    std::fs::write(&pin_file, format!("{PIN}\n")).unwrap();
    let location = format!("{MODULE},root-tok,kmsd-root-wrap");
    (lab, pin_file, location)
}

fn serve(lab: &HsmLab, location: &str, pin_file: &Path) -> Server {
    Server::start_in_env(
        &lab.data,
        &[
            "--root-key-pkcs11",
            location,
            "--root-key-pin-file",
            pin_file.to_str().unwrap(),
        ],
        &[("SOFTHSM2_CONF", &lab.softhsm_conf)],
    )
}

/// `kmsd serve` that is expected to stop at start: its stderr.
fn failed_serve(lab: &HsmLab, extra: &[&str], env: &[(&str, &str)]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_kmsd"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&lab.data)
        .args(extra)
        .env("SOFTHSM2_CONF", &lab.softhsm_conf)
        .env_remove("KMSD_ROOT_KEY_PIN")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(!out.status.success(), "serve should have failed");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn rewrap(lab: &HsmLab, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kmsd"))
        .args(["root-key", "rewrap", "--data-dir"])
        .arg(&lab.data)
        .args(args)
        .env("SOFTHSM2_CONF", &lab.softhsm_conf)
        .output()
        .unwrap()
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

async fn encrypt(server: &Server) -> (String, Vec<u8>) {
    let kms = server.client();
    let key = kms.create_key().send().await.unwrap();
    let key_id = key.key_metadata().unwrap().key_id().to_owned();
    let ct = kms
        .encrypt()
        .key_id(&key_id)
        .plaintext(Blob::new(b"kept across restarts".to_vec()))
        .send()
        .await
        .unwrap();
    (key_id, ct.ciphertext_blob().unwrap().as_ref().to_vec())
}

async fn decrypts(server: &Server, ct: &[u8]) {
    let out = server
        .client()
        .decrypt()
        .ciphertext_blob(Blob::new(ct.to_vec()))
        .send()
        .await
        .unwrap();
    assert_eq!(out.plaintext().unwrap().as_ref(), b"kept across restarts");
}

#[tokio::test]
async fn serve_with_an_hsm_wrapped_root_key_survives_a_restart_and_refuses_a_wrong_pin() {
    let (lab, pin_file, location) = lab();
    let mut server = serve(&lab, &location, &pin_file);
    assert!(lab.data.join("root.key.wrapped").exists());
    assert!(!lab.data.join("root.key").exists(), "no plaintext root key");
    let (_key, ct) = encrypt(&server).await;
    server.terminate();

    // Later starts unwrap the same root key (here with the PIN from the environment).
    let mut again = Server::start_in_env(
        &lab.data,
        &["--root-key-pkcs11", &location],
        &[
            ("SOFTHSM2_CONF", &lab.softhsm_conf),
            ("KMSD_ROOT_KEY_PIN", Path::new(PIN)),
        ],
    );
    decrypts(&again, &ct).await;
    again.terminate();

    // A wrong PIN, no PIN, a missing token, a missing key, a plaintext start: clear refusals.
    let wrong = lab.dir.join("wrong-pin");
    std::fs::write(&wrong, "not-the-pin").unwrap();
    let err = failed_serve(
        &lab,
        &[
            "--root-key-pkcs11",
            &location,
            "--root-key-pin-file",
            wrong.to_str().unwrap(),
        ],
        &[],
    );
    assert!(
        err.contains("wrong PIN for PKCS#11 token \"root-tok\""),
        "{err}"
    );
    let err = failed_serve(&lab, &["--root-key-pkcs11", &location], &[]);
    assert!(err.contains("needs the token's user PIN"), "{err}");
    let err = failed_serve(
        &lab,
        &[
            "--root-key-pkcs11",
            &format!("{MODULE},no-such-token,kmsd-root-wrap"),
        ],
        &[("KMSD_ROOT_KEY_PIN", PIN)],
    );
    assert!(
        err.contains("PKCS#11 token \"no-such-token\"") && err.contains("not found"),
        "{err}"
    );
    let err = failed_serve(
        &lab,
        &["--root-key-pkcs11", &format!("{MODULE},root-tok,other-key")],
        &[("KMSD_ROOT_KEY_PIN", PIN)],
    );
    assert!(
        err.contains("has no AES key labelled \"other-key\""),
        "{err}"
    );
    let err = failed_serve(&lab, &[], &[]);
    assert!(
        err.contains("is wrapped by an HSM") && err.contains(&location),
        "{err}"
    );
    assert!(
        !lab.data.join("root.key").exists(),
        "a refused start must not create a plaintext root key"
    );

    // `kmsd admin` finds the token from root.key.wrapped and takes the PIN from the environment.
    let out = Command::new(env!("CARGO_BIN_EXE_kmsd"))
        .args(["admin", "--data-dir"])
        .arg(&lab.data)
        .args(["create-account", "444455556666"])
        .env("SOFTHSM2_CONF", &lab.softhsm_conf)
        .env("KMSD_ROOT_KEY_PIN", PIN)
        .output()
        .unwrap();
    assert!(ok(&out).contains("aws_access_key_id"));
    assert!(!lab.data.join("root.key").exists());
}

#[tokio::test]
async fn rewrap_moves_the_root_key_file_to_hsm_and_back_keeping_the_data() {
    let (lab, pin_file, location) = lab();
    let pin = pin_file.to_str().unwrap();
    let mut server = Server::start_in_env(&lab.data, &[], &[("SOFTHSM2_CONF", &lab.softhsm_conf)]);
    let (_key, ct) = encrypt(&server).await;

    // Refused while the server holds the data dir.
    let out = rewrap(
        &lab,
        &[
            "--to",
            "pkcs11",
            "--root-key-pkcs11",
            &location,
            "--root-key-pin-file",
            pin,
        ],
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is already serving data dir"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(lab.data.join("root.key").exists());
    server.terminate();

    let plain = std::fs::read(lab.data.join("root.key")).unwrap();
    ok(&rewrap(
        &lab,
        &[
            "--to",
            "pkcs11",
            "--root-key-pkcs11",
            &location,
            "--root-key-pin-file",
            pin,
        ],
    ));
    assert!(!lab.data.join("root.key").exists());
    let wrapped = std::fs::read(lab.data.join("root.key.wrapped")).unwrap();
    assert!(!wrapped.windows(plain.len()).any(|w| w == plain.as_slice()));

    // A plaintext start is refused now; an HSM start decrypts the old ciphertext.
    let err = failed_serve(&lab, &[], &[]);
    assert!(err.contains("is wrapped by an HSM"), "{err}");
    let mut server = serve(&lab, &location, &pin_file);
    decrypts(&server, &ct).await;
    let (_key2, ct2) = encrypt(&server).await;
    server.terminate();

    // And back to a file (location read from root.key.wrapped).
    ok(&rewrap(&lab, &["--to", "file", "--root-key-pin-file", pin]));
    assert!(!lab.data.join("root.key.wrapped").exists());
    assert_eq!(std::fs::read(lab.data.join("root.key")).unwrap(), plain);
    let err = failed_serve(
        &lab,
        &["--root-key-pkcs11", &location, "--root-key-pin-file", pin],
        &[],
    );
    assert!(err.contains("holds a plaintext root key"), "{err}");
    let mut server = Server::start_in_env(&lab.data, &[], &[("SOFTHSM2_CONF", &lab.softhsm_conf)]);
    decrypts(&server, &ct).await;
    decrypts(&server, &ct2).await;
    server.terminate();
}
