#!/usr/bin/env bash
# Runs the whole kmsd test suite on a fresh machine: installs what the tests need (the `aws`
# CLI, Python cryptography, kyber-py and dilithium-py, openssl, SoftHSM2, a botocore >= 1.44
# venv, Chromium and the console's node modules, PostgreSQL), then lint, format check and tests.
set -euo pipefail
cd "$(dirname "$0")/.."

need_root() { [ "$(id -u)" = 0 ]; }

# The aws CLI drives the CLI smoke test.
if ! command -v aws >/dev/null 2>&1; then
  echo "installing the aws CLI (pip)"
  python3 -m pip install --quiet awscli
fi

# Python `cryptography` is the independent peer of the asymmetric interop tests.
if ! python3 -c "import cryptography" >/dev/null 2>&1; then
  echo "installing python cryptography (pip)"
  python3 -m pip install --quiet cryptography
fi
# kyber-py (ML-KEM) and dilithium-py (ML-DSA), pure-Python FIPS 203/204 implementations, are the
# independent peers of the post-quantum interop tests; `ecdsa` gives them DER (PKCS#8/SPKI).
if ! python3 -c "import kyber_py.ml_kem.pkcs, dilithium_py.ml_dsa.pkcs" >/dev/null 2>&1; then
  echo "installing python kyber-py, dilithium-py and ecdsa (pip)"
  python3 -m pip install --quiet kyber-py dilithium-py ecdsa
fi
if ! command -v openssl >/dev/null 2>&1 && need_root; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssl) >/dev/null
fi

# SoftHSM2 stands in for HSMs (used by the HSM key store tests as they land).
if ! command -v softhsm2-util >/dev/null 2>&1 && need_root; then
  echo "installing softhsm2 (apt)"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq softhsm2) >/dev/null || echo "warning: softhsm2 install failed"
fi

# A botocore that speaks Smithy RPC v2 CBOR to CloudHSM v2 (>= 1.44), in its own venv so the
# aws CLI above keeps its own botocore: the peer of tests/cloudhsm_cbor.rs.
CBOR_VENV=target/test-venv-botocore-cbor
if ! "$CBOR_VENV/bin/python" -c "import boto3, botocore, sys; sys.exit(tuple(map(int, botocore.__version__.split('.')[:2])) < (1, 44))" >/dev/null 2>&1; then
  echo "installing boto3/botocore >= 1.44 in $CBOR_VENV (pip)"
  mkdir -p target
  python3 -m venv "$CBOR_VENV"
  "$CBOR_VENV/bin/python" -m pip install --quiet 'boto3>=1.44' 'botocore>=1.44'
fi
export KMSD_TEST_CBOR_PYTHON="$PWD/$CBOR_VENV/bin/python"

# systemd-analyze checks the packaged units (scripts/check-packaging.sh).
if ! command -v systemd-analyze >/dev/null 2>&1 && need_root; then
  echo "installing systemd (apt) for systemd-analyze"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq systemd) >/dev/null || echo "warning: systemd install failed"
fi

# The web console's browser test (crates/kmsd/tests/console.rs) runs console/tests/e2e.mjs with
# node and playwright-core, driving Debian's Chromium headless (never a downloaded browser).
if ! command -v chromium >/dev/null 2>&1 && need_root; then
  echo "installing chromium (apt)"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null || echo "warning: chromium install failed"
fi
if ! command -v npm >/dev/null 2>&1 && need_root; then
  echo "installing nodejs and npm (apt)"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm) >/dev/null || echo "warning: nodejs install failed"
fi
# Its node modules (from the committed lockfile), and the committed bundle checked against a
# fresh build of console/src.
./scripts/check-console.sh
# PostgreSQL: the store kmsd clusters share (crates/kms-store/tests/conformance.rs,
# crates/kmsd/tests/high_availability.rs). Installed and started if needed; the tests then fail
# rather than skip when it is unreachable (KMSD_REQUIRE_PG).
if ! command -v pg_ctlcluster >/dev/null 2>&1 && need_root; then
  echo "installing postgresql (apt)"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql) >/dev/null || echo "warning: postgresql install failed"
fi
pg_up() { pg_isready -q -h 127.0.0.1 -p 5432 >/dev/null 2>&1; }
if ! pg_up && command -v pg_ctlcluster >/dev/null 2>&1; then
  echo "starting postgresql"
  for v in $(ls /etc/postgresql 2>/dev/null); do
    pg_ctlcluster --skip-systemctl-redirect "$v" main start || true
  done
  for _ in $(seq 1 30); do pg_up && break; sleep 1; done
fi
if [ -z "${KMSD_TEST_POSTGRES:-}" ]; then
  KMSD_TEST_POSTGRES=postgres://postgres@127.0.0.1:5432/test
  if ! psql "$KMSD_TEST_POSTGRES" -Atqc 'SELECT 1' >/dev/null 2>&1 && need_root; then
    # A stock Debian cluster: create the database, and give postgres a password for TCP.
    su postgres -c "psql -Atqc \"SELECT 1 FROM pg_database WHERE datname = 'test'\" | grep -q 1 || createdb test" || true
    if ! psql "$KMSD_TEST_POSTGRES" -Atqc 'SELECT 1' >/dev/null 2>&1; then
      su postgres -c "psql -qc \"ALTER USER postgres PASSWORD 'kmsd-test'\"" >/dev/null || true
      KMSD_TEST_POSTGRES=postgres://postgres:kmsd-test@127.0.0.1:5432/test
    fi
  fi
fi
export KMSD_TEST_POSTGRES
export KMSD_REQUIRE_PG=1

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
# The Debian package, its layout and hardened systemd units (before the tests, whose summary
# stays the last lines of the output).
./scripts/check-packaging.sh
# Both passes run whatever the first finds; the exit status of cargo test (not tee) decides.
set +e
cargo test --workspace --no-fail-fast 2>&1 | tee /tmp/kmsd-test.log
sqlite_status=${PIPESTATUS[0]}
# The kmsd end-to-end suite again with every server on PostgreSQL (a fresh database per data
# dir, see crates/kmsd/tests/common), reusing the test binaries built above; then the databases
# it kept are dropped.
pg_start=$(date +%s)
KMSD_TEST_STORE=postgres cargo test -p kmsd --tests --no-fail-fast 2>&1 | tee /tmp/kmsd-test-postgres.log
pg_status=${PIPESTATUS[0]}
created="${CARGO_TARGET_DIR:-target}/tmp/kmsd-test-databases"
if [ -f "$created" ]; then
  sort -u "$created" | while read -r db; do
    psql "$KMSD_TEST_POSTGRES" -qc "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null 2>&1 || true
  done
  rm -f "$created"
fi
echo "kmsd e2e suite on PostgreSQL: $(( $(date +%s) - pg_start )) s, exit status $pg_status (SQLite pass: $sqlite_status)"
if [ "$sqlite_status" != 0 ]; then exit "$sqlite_status"; fi
exit "$pg_status"
