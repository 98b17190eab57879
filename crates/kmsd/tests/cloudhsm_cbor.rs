//! The CloudHSM v2 API in Smithy RPC v2 CBOR, driven by a botocore that speaks it (>= 1.44;
//! `scripts/test.sh` installs one in a venv and names its python in
//! `KMSD_TEST_CBOR_PYTHON`). SoftHSM2 provides the token of the HSM.

mod common;

use std::process::Command;

use common::Server;

const SCRIPT: &str = r#"
import sys, boto3, botocore
endpoint, akid, secret = sys.argv[1:4]
c = boto3.client("cloudhsmv2", endpoint_url=endpoint, region_name="us-east-1",
                 aws_access_key_id=akid, aws_secret_access_key=secret)
print("protocol", c.meta.service_model.protocol)
r = c.create_cluster(HsmType="hsm1.medium", SubnetIds=["subnet-0a0a0a0a", "subnet-0b0b0b0b"])
cid = r["Cluster"]["ClusterId"]
print("cluster", cid.startswith("cluster-"), r["Cluster"]["State"],
      type(r["Cluster"]["CreateTimestamp"]).__name__)
h = c.create_hsm(ClusterId=cid, AvailabilityZone="us-east-1a")
print("hsm", h["Hsm"]["State"], h["Hsm"]["AvailabilityZone"])
d = c.describe_clusters(Filters={"clusterIds": [cid]})
print("described", len(d["Clusters"]), d["Clusters"][0]["Certificates"]["ClusterCsr"].startswith("-----BEGIN CERTIFICATE REQUEST-----"))
print("backups", len(c.describe_backups(SortAscending=True)["Backups"]))
try:
    c.initialize_cluster(ClusterId=cid, SignedCert="not a certificate", TrustAnchor="nor this")
except c.exceptions.CloudHsmInvalidRequestException as e:
    print("error", e.response["Error"]["Code"], e.response["ResponseMetadata"]["HTTPStatusCode"])
try:
    c.delete_cluster(ClusterId="cluster-aaaaaaaaaaa")
except c.exceptions.CloudHsmResourceNotFoundException as e:
    print("notfound", e.response["Error"]["Code"], e.response["ResponseMetadata"]["HTTPStatusCode"])
bad = boto3.client("cloudhsmv2", endpoint_url=endpoint, region_name="us-east-1",
                   aws_access_key_id=akid, aws_secret_access_key="wrong" + secret)
try:
    bad.describe_clusters()
except botocore.exceptions.ClientError as e:
    print("badsig", e.response["Error"]["Code"], e.response["ResponseMetadata"]["HTTPStatusCode"])
"#;

#[test]
fn cloudhsm_api_in_rpc_v2_cbor_with_botocore() {
    let python = std::env::var("KMSD_TEST_CBOR_PYTHON").expect(
        "KMSD_TEST_CBOR_PYTHON must name a python with botocore >= 1.44 (scripts/test.sh installs one)",
    );
    let tmp = tempfile::tempdir().unwrap();
    let tokens = tmp.path().join("tokens");
    std::fs::create_dir_all(&tokens).unwrap();
    let conf = tmp.path().join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\n",
            tokens.display()
        ),
    )
    .unwrap();
    std::env::set_var("SOFTHSM2_CONF", &conf);
    let init = Command::new("softhsm2-util")
        .args([
            "--init-token",
            "--free",
            "--label",
            "cbor-a",
            "--so-pin",
            "SoPin1234",
            "--pin",
            "unused123",
        ])
        .output()
        .unwrap();
    assert!(init.status.success(), "{init:?}");
    std::fs::write(tmp.path().join("so-pin"), "SoPin1234").unwrap();
    let hsms = tmp.path().join("hsms.toml");
    std::fs::write(
        &hsms,
        format!(
            "[[hsm]]\nmodule = \"/usr/lib/softhsm/libsofthsm2.so\"\ntoken_label = \"cbor-a\"\navailability_zone = \"us-east-1a\"\nso_pin_file = \"{}\"\n\n\
             [[subnet]]\nid = \"subnet-0a0a0a0a\"\navailability_zone = \"us-east-1a\"\n\n\
             [[subnet]]\nid = \"subnet-0b0b0b0b\"\navailability_zone = \"us-east-1b\"\n",
            tmp.path().join("so-pin").display()
        ),
    )
    .unwrap();
    let mut server = Server::start_in(
        &tmp.path().join("data"),
        &["--hsm-config", hsms.to_str().unwrap()],
    );
    let (akid, secret) = server.admin_credentials();
    let out = Command::new(&python)
        .args(["-c", SCRIPT, &server.endpoint(), &akid, &secret])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines,
        [
            "protocol smithy-rpc-v2-cbor",
            "cluster True UNINITIALIZED datetime",
            "hsm ACTIVE us-east-1a",
            "described 1 True",
            "backups 0",
            "error CloudHsmInvalidRequestException 400",
            "notfound CloudHsmResourceNotFoundException 400",
            "badsig InvalidSignatureException 400",
        ],
        "{stdout}"
    );
    assert!(server.terminate());
}
