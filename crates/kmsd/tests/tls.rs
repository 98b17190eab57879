//! HTTPS: the SDK and the aws CLI over TLS with a private CA, TLS versions and suites refused,
//! the post-quantum hybrid key exchange, and certificate reload on SIGHUP.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use common::Server;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Makes a CA and a server certificate for 127.0.0.1/localhost with `openssl` (as the README shows).
fn make_pki(dir: &Path, name: &str) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    if !dir.join("ca.pem").exists() {
        run(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=kmsd test CA",
        ]);
    }
    std::fs::write(
        dir.join("san.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .unwrap();
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        &format!("{name}.key"),
        "-out",
        &format!("{name}.csr"),
        "-subj",
        &format!("/CN={name}"),
    ]);
    run(&[
        "x509",
        "-req",
        "-in",
        &format!("{name}.csr"),
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        &format!("{name}.pem"),
        "-days",
        "2",
        "-extfile",
        "san.ext",
    ]);
}

fn start_tls(dir: &Path) -> Server {
    let cert = dir.join("server.pem");
    let key = dir.join("server.key");
    Server::start(&[
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ])
}

fn sdk_over_tls(server: &Server, ca_pem: &[u8]) -> aws_sdk_kms::Client {
    use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode, TlsContext, TrustStore};
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::AwsLc))
        .tls_context(
            TlsContext::builder()
                .with_trust_store(TrustStore::empty().with_pem_certificate(ca_pem))
                .build()
                .unwrap(),
        )
        .build_https();
    let (a, s) = server.admin_credentials();
    let conf = aws_sdk_kms::Config::builder()
        .behavior_version(aws_sdk_kms::config::BehaviorVersion::latest())
        .region(aws_sdk_kms::config::Region::new("us-east-1"))
        .endpoint_url(format!("https://localhost:{}", server.addr.port()))
        .credentials_provider(aws_sdk_kms::config::Credentials::new(
            a, s, None, None, "test",
        ))
        .http_client(http)
        .build();
    aws_sdk_kms::Client::from_conf(conf)
}

/// A rustls client handshake; returns (version, key exchange group, server cert DER).
async fn rustls_handshake(
    addr: std::net::SocketAddr,
    ca: &Path,
    versions: &[&'static rustls::SupportedProtocolVersion],
    groups: Option<&[&str]>,
) -> Result<(String, String, Vec<u8>), String> {
    let mut roots = rustls::RootCertStore::empty();
    use rustls::pki_types::pem::PemObject;
    for c in rustls::pki_types::CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    if let Some(names) = groups {
        // The client's preference order is the order of `names`.
        let all = std::mem::take(&mut provider.kx_groups);
        provider.kx_groups = names
            .iter()
            .filter_map(|n| {
                all.iter()
                    .find(|g| format!("{:?}", g.name()) == *n)
                    .copied()
            })
            .collect();
    }
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = connector
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    let (_, conn) = tls.get_ref();
    let out = (
        format!("{:?}", conn.protocol_version().unwrap()),
        format!("{:?}", conn.negotiated_key_exchange_group().unwrap().name()),
        conn.peer_certificates().unwrap()[0].to_vec(),
    );
    let _ = tls.shutdown().await;
    Ok(out)
}

#[tokio::test]
async fn sdk_and_cli_work_over_https_with_a_private_ca() {
    let pki = tempfile::tempdir().unwrap();
    make_pki(pki.path(), "server");
    let server = start_tls(pki.path());
    let ca = std::fs::read(pki.path().join("ca.pem")).unwrap();
    let kms = sdk_over_tls(&server, &ca);
    let id = common::new_key_id(&kms).await;
    let ct = kms
        .encrypt()
        .key_id(&id)
        .plaintext(aws_sdk_kms::primitives::Blob::new(b"tls".to_vec()))
        .send()
        .await
        .unwrap();
    let pt = kms
        .decrypt()
        .ciphertext_blob(ct.ciphertext_blob().unwrap().clone())
        .send()
        .await
        .unwrap();
    assert_eq!(pt.plaintext().unwrap().as_ref(), b"tls");

    let out = Command::new("aws")
        .args([
            "--endpoint-url",
            &format!("https://localhost:{}", server.addr.port()),
            "--region",
            "us-east-1",
            "kms",
            "list-keys",
        ])
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            server.data_dir.join("admin-credentials"),
        )
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_CA_BUNDLE", pki.path().join("ca.pem"))
        .env_remove("AWS_PROFILE")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains(&id));
}

#[tokio::test]
async fn tls_versions_suites_and_post_quantum_key_exchange() {
    let pki = tempfile::tempdir().unwrap();
    make_pki(pki.path(), "server");
    let server = start_tls(pki.path());
    let ca = pki.path().join("ca.pem");

    // A TLS 1.3 client offering the hybrid group gets it; classical-only clients still connect.
    let (v, g, _) = rustls_handshake(server.addr, &ca, &[&rustls::version::TLS13], None)
        .await
        .unwrap();
    assert_eq!((v.as_str(), g.as_str()), ("TLSv1_3", "X25519MLKEM768"));
    let (_, g, _) = rustls_handshake(
        server.addr,
        &ca,
        &[&rustls::version::TLS13],
        Some(&["X25519"]),
    )
    .await
    .unwrap();
    assert_eq!(g, "X25519");
    // A client that prefers X25519 but supports the hybrid group gets the hybrid group: the
    // server decides (it sent only an X25519 key share, so this costs a HelloRetryRequest).
    let (v, g, _) = rustls_handshake(
        server.addr,
        &ca,
        &[&rustls::version::TLS13],
        Some(&["X25519", "X25519MLKEM768"]),
    )
    .await
    .unwrap();
    assert_eq!((v.as_str(), g.as_str()), ("TLSv1_3", "X25519MLKEM768"));
    let (v, g, _) = rustls_handshake(
        server.addr,
        &ca,
        &[&rustls::version::TLS12],
        Some(&["secp256r1"]),
    )
    .await
    .unwrap();
    assert_eq!((v.as_str(), g.as_str()), ("TLSv1_2", "secp256r1"));

    // openssl: TLS 1.1 is refused; TLS 1.2 with a non-PFS (static RSA) suite is refused;
    // TLS 1.2 with ECDHE works.
    let s_client = |args: &[&str]| {
        let mut child = Command::new("openssl")
            .args([
                "s_client",
                "-connect",
                &server.addr.to_string(),
                "-servername",
                "localhost",
                "-CAfile",
                ca.to_str().unwrap(),
            ])
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        child.stdout.extend_from_slice(&child.stderr);
        (
            child.status.success(),
            String::from_utf8_lossy(&child.stdout).into_owned(),
        )
    };
    let (ok, out) = s_client(&["-tls1_1", "-cipher", "DEFAULT:@SECLEVEL=0"]);
    assert!(
        !ok || !out.contains("Cipher is ECDHE"),
        "TLS 1.1 accepted: {out}"
    );
    assert!(
        out.contains("alert")
            || out.contains("no protocols")
            || out.contains("wrong version")
            || out.contains("unsupported protocol"),
        "{out}"
    );
    let (ok, out) = s_client(&["-tls1_2", "-cipher", "AES128-GCM-SHA256:AES256-SHA256"]);
    assert!(!ok, "static-RSA suite accepted: {out}");
    let (ok, out) = s_client(&["-tls1_2"]);
    assert!(ok && out.contains("ECDHE"), "{out}");
}

#[tokio::test]
async fn sighup_reloads_the_certificate_without_dropping_connections() {
    let pki = tempfile::tempdir().unwrap();
    make_pki(pki.path(), "server");
    let server = start_tls(pki.path());
    let ca = pki.path().join("ca.pem");
    let (_, _, before) = rustls_handshake(server.addr, &ca, &[&rustls::version::TLS13], None)
        .await
        .unwrap();

    // An open keep-alive connection.
    let mut roots = rustls::RootCertStore::empty();
    use rustls::pki_types::pem::PemObject;
    for c in rustls::pki_types::CertificateDer::pem_file_iter(&ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let cfg = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
    let tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let mut open = connector
        .connect(
            rustls::pki_types::ServerName::try_from("localhost").unwrap(),
            tcp,
        )
        .await
        .unwrap();

    // New certificate files, then SIGHUP.
    make_pki(pki.path(), "server");
    Command::new("kill")
        .args(["-HUP", &server.child.id().to_string()])
        .status()
        .unwrap();
    let mut after = before.clone();
    for _ in 0..50 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        after = rustls_handshake(server.addr, &ca, &[&rustls::version::TLS13], None)
            .await
            .unwrap()
            .2;
        if after != before {
            break;
        }
    }
    assert_ne!(
        after, before,
        "new handshakes still see the old certificate"
    );

    // The connection opened before the reload still answers.
    let req = "POST / HTTP/1.1\r\nhost: localhost\r\nx-amz-target: TrentService.ListKeys\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}";
    open.write_all(req.as_bytes()).await.unwrap();
    let mut resp = Vec::new();
    open.read_to_end(&mut resp).await.unwrap();
    assert!(String::from_utf8_lossy(&resp).contains("MissingAuthenticationTokenException"));
}
