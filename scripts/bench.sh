#!/usr/bin/env bash
# scripts/bench.sh: reproduces the figures of BENCHMARKS.md with kmsd-bench, on loopback only.
# Every server it starts is its own child on 127.0.0.1:0 with a fresh data dir under a temporary
# directory, and is stopped (SIGTERM, then SIGKILL after 10 s) when its runs end or the script
# exits. Each run is bounded (warmup + duration seconds).
#
# Usage: scripts/bench.sh [options] SECTION...
#
#   default   Encrypt and GenerateDataKey at 1/8/32 connections on the default store, full SigV4
#             verification (admin credentials, no --dev), --audit-durability sync and buffered
#   ops       Encrypt, Decrypt and GenerateDataKey at 1 and 32 connections, sync audit, full SigV4
#             (issue 16 §1: Decrypt and GenerateDataKey against Encrypt, p50 at one connection);
#             with KMSD_BEFORE_BIN set, that kmsd too, alternating
#   acl       Encrypt at 8 and 32 connections: kmsd of the commit before access control landed
#             vs this build, same flags (sync), alternating before/after
#   asym      Sign (RSA_2048 PSS, ECC_NIST_P256 ECDSA), Verify (both) and GenerateMac (HMAC_256)
#             at 8 connections, plus the raw single-thread aws-lc-rs figures (--raw-asym)
#   raw       the raw single-thread figures only (--raw-asym, --raw-aes, --raw-sign)
#   cloudhsm  Encrypt on a key in a CloudHSM key store (SoftHSM2 tokens, aws cloudhsmv2 CLI,
#             openssl-signed CSR, kmsd hsm create-user) at 8 and 32 connections
#   xks       Encrypt on a key in an external key store through xks-proxy (release build, TLS,
#             SoftHSM2) at 1 and 8 connections, and the proxy alone (kmsd-bench --op xks-encrypt)
#   xksref    xks-proxy vs AWS's reference XKS proxy (REF_XKS_PROXY_BIN, built by hand from
#             aws-samples/aws-kms-xks-proxy) on one SoftHSM2 token, TLS, the proxies alone
#             (kmsd-bench --op xks-encrypt) at 1, 4 and 16 connections, alternating
#   profile   perf record (cpu-clock, DWARF call graphs) of the server during an Encrypt run at
#             32 connections (sync), then perf report into the output directory
#   pg        Encrypt at 1, 8 and 32 connections on the default SQLite store and on PostgreSQL
#             (a fresh database per run on $BENCH_POSTGRES), same binary, alternating, sync audit
#   keys      one server (sync audit, --quotas off): Encrypt on one hot key, then on $BENCH_KEYS keys
#             (default 99999: with the hot key, the 100,000-key quota) made by kmsd-bench --keys (CreateKey per tenth, ListKeys/ListAliases
#             pages, then Encrypt spread uniformly, cache misses included), then the hot key again,
#             then the server restarted (empty cache) and Encrypt spread over every key again;
#             server RSS before and after; 32 connections (KEYS_KMSD_FLAGS: extra kmsd flags,
#             e.g. "--key-cache-size 100000")
#   all       every section above but raw (asym includes it)
#
# Options:
#   --runs N          runs per configuration (3); the summary gives medians
#   --duration S      measured seconds per run (10)
#   --warmup S        warmup seconds per run (2)
#   --max-other C     a run during which other processes used more than C cores is retried (0.25)
#   --tries N         at most this many tries per run (3); the last try is kept either way
#   --quiet-wait S    before each try, wait up to S seconds (120) until the machine's other load
#                     is at most --max-other cores
#   --out DIR         results directory (default $TMPDIR/kmsd-bench-results/<UTC date>-<sha>)
#   --no-build        do not run cargo build (use the binaries as found)
#
# Environment:
#   REF_XKS_PROXY_BIN  AWS's reference proxy, for `xksref` (XKS_PROXY_BEFORE_BIN: an older
#                     xks-proxy to add to its runs)
#   KMSD_BIN, KMSD_BENCH_BIN, XKS_PROXY_BIN   binaries (default target/release/{kmsd,kmsd-bench,
#                                             xks-proxy}, built with cargo build --release)
#   KMSD_BEFORE_BIN   kmsd of the commit before access control, for `acl`. Default: the parent of
#                     the commit titled "Access control as AWS KMS decides it..." is checked out
#                     with `git worktree add` in a temporary directory, built there in release
#                     (CARGO_TARGET_DIR=${BEFORE_TARGET_DIR:-/tmp/wt-before-target}), copied out,
#                     and the worktree removed.
#   ACL_FLAGS         kmsd flags of the `acl` runs (default: --audit-durability sync)
#   EXTRA_KMSD_FLAGS  appended to every `kmsd serve` (e.g. "--audit-durability buffered" for the
#                     cloudhsm, xks and profile sections; the others set that flag themselves)
#   BENCH_COMMIT      commit recorded with the results (default: this checkout's HEAD)
#   BENCH_POSTGRES    PostgreSQL server for `pg`, as a URL of a database kmsd may create databases
#                     from (default postgres://postgres@127.0.0.1:5432/test)
#   KEEP_PERF=1       keep the profile's perf.data in DIR (hundreds of MB)
#
# Output: DIR/results.jsonl (one kmsd-bench JSON line per kept run, tagged with section, variant
# and run), DIR/tries.jsonl (every try), DIR/raw.jsonl, DIR/summary.md (tables of medians, made
# by scripts/bench/summarize.py), server logs, and for `profile` DIR/perf-*.txt.
#
# Needs: bash, python3; for cloudhsm/xks: softhsm2-util, openssl, the aws CLI (any: kmsd answers
# cloudhsmv2 in JSON 1.1 and RPC v2 CBOR); for profile: perf.

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RUNS=3
DURATION=10
WARMUP=2
MAX_OTHER=0.25
TRIES=3
QUIET_WAIT=120
OUT=""
BUILD=1
SECTIONS=()

while [ $# -gt 0 ]; do
    case "$1" in
        --runs) RUNS=$2; shift 2 ;;
        --duration) DURATION=$2; shift 2 ;;
        --warmup) WARMUP=$2; shift 2 ;;
        --max-other) MAX_OTHER=$2; shift 2 ;;
        --tries) TRIES=$2; shift 2 ;;
        --quiet-wait) QUIET_WAIT=$2; shift 2 ;;
        --out) OUT=$2; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        -h|--help) sed -n '2,/^$/p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        default|ops|acl|asym|raw|cloudhsm|xks|xksref|profile|pg|keys) SECTIONS+=("$1"); shift ;;
        all) SECTIONS+=(default acl asym cloudhsm xks profile); shift ;;
        *) echo "bench.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
[ ${#SECTIONS[@]} -gt 0 ] || { echo "bench.sh: name at least one section (see --help)" >&2; exit 2; }

# The commit the binaries were built from (default: HEAD of this checkout).
SHA=${BENCH_COMMIT:-$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)}
OUT=${OUT:-${TMPDIR:-/tmp}/kmsd-bench-results/$(date -u +%Y%m%dT%H%M%SZ)-$SHA}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/kmsd-bench.XXXXXX")
SUMMARIZE="$ROOT/scripts/bench/summarize.py"

KMSD=${KMSD_BIN:-$ROOT/target/release/kmsd}
BENCH=${KMSD_BENCH_BIN:-$ROOT/target/release/kmsd-bench}
XKS_PROXY=${XKS_PROXY_BIN:-$ROOT/target/release/xks-proxy}
SOFTHSM_MODULE=${SOFTHSM_MODULE:-/usr/lib/softhsm/libsofthsm2.so}
ACL_FLAGS=${ACL_FLAGS:---audit-durability sync}
EXTRA_KMSD_FLAGS=${EXTRA_KMSD_FLAGS:-}

log() { printf '[bench %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

# ---------------------------------------------------------------- processes we started
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do stop_pid "$p"; done
    if [ -d "$WORK/wt-before" ]; then
        git -C "$ROOT" worktree remove --force "$WORK/wt-before" >/dev/null 2>&1 || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

stop_pid() {
    local pid=$1 i
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

forget_pid() {
    local keep=() p
    for p in "${PIDS[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
    PIDS=("${keep[@]}")
}

# Waits (at most 30 s) for a line starting with $2 in log file $1; prints the rest of the line.
wait_line() {
    local file=$1 prefix=$2 i line
    for i in $(seq 300); do
        line=$(grep -m1 "^$prefix" "$file" 2>/dev/null || true)
        if [ -n "$line" ]; then printf '%s\n' "${line#"$prefix"}" | tr -d '[:space:]'; return 0; fi
        sleep 0.1
    done
    echo "bench.sh: no '$prefix' in $file within 30 s:" >&2
    tail -20 "$file" >&2
    return 1
}

# start_kmsd BIN DATA_DIR LOG [flags...]: sets KMSD_PID and KMSD_ADDR.
start_kmsd() {
    local bin=$1 dir=$2 logf=$3; shift 3
    mkdir -p "$dir"
    # shellcheck disable=SC2086
    "$bin" serve --listen 127.0.0.1:0 --data-dir "$dir" "$@" $EXTRA_KMSD_FLAGS </dev/null >/dev/null 2>"$logf" &
    KMSD_PID=$!
    PIDS+=("$KMSD_PID")
    KMSD_ADDR=$(wait_line "$logf" "kmsd listening on ")
    case "$KMSD_ADDR" in 127.0.0.1:*) ;; *) echo "kmsd not on loopback: $KMSD_ADDR" >&2; exit 1 ;; esac
}

stop_kmsd() { stop_pid "$KMSD_PID"; forget_pid "$KMSD_PID"; }

# ---------------------------------------------------------------- runs
# tag SECTION VARIANT RUN TRY JSON: prefixes a kmsd-bench JSON line with tags.
tag() {
    printf '{"section":"%s","variant":"%s","run":%s,"try":%s,"commit":"%s",%s\n' \
        "$1" "$2" "$3" "$4" "$SHA" "${5#\{}"
}

# Busy cores of the whole machine over $1 seconds (from /proc/stat; USER_HZ = 100).
busy_cores() {
    local a b
    a=$(awk '/^cpu /{print $2+$3+$4+$7+$8+$9; exit}' /proc/stat)
    sleep "$1"
    b=$(awk '/^cpu /{print $2+$3+$4+$7+$8+$9; exit}' /proc/stat)
    awk -v a="$a" -v b="$b" -v t="$1" 'BEGIN{printf "%.2f", (b-a)/100/t}'
}

# Waits (at most QUIET_WAIT seconds) until other processes use at most MAX_OTHER cores, so a
# run does not start in the middle of someone else's build.
wait_quiet() {
    local waited=0 c
    while :; do
        c=$(busy_cores 2)
        awk -v c="$c" -v m="$MAX_OTHER" 'BEGIN{exit !(c <= m)}' && return 0
        waited=$((waited + 2))
        if [ "$waited" -ge "$QUIET_WAIT" ]; then
            log "machine still busy ($c cores) after ${QUIET_WAIT} s; running anyway"
            return 0
        fi
        [ $((waited % 30)) = 0 ] && log "waiting for a quiet machine ($c cores busy)"
    done
}

# bench_run SECTION VARIANT RUN SERVER_PIDS(comma list) ENDPOINT kmsd-bench-args...
# Retries while other processes used more than MAX_OTHER cores; keeps the last try.
bench_run() {
    local section=$1 variant=$2 run=$3 pids=$4 endpoint=$5; shift 5
    local pidargs=() p try line other
    for p in ${pids//,/ }; do pidargs+=(--server-pid "$p"); done
    for try in $(seq "$TRIES"); do
        wait_quiet
        line=$("$BENCH" --endpoint "$endpoint" --duration-secs "$DURATION" --warmup-secs "$WARMUP" \
            --json "${pidargs[@]}" "$@") || { echo "kmsd-bench failed: $line" >&2; return 1; }
        tag "$section" "$variant" "$run" "$try" "$line" >> "$OUT/tries.jsonl"
        other=$(printf '%s' "$line" | python3 -c 'import json,sys; c=json.load(sys.stdin).get("cpu") or {}; print(c.get("other_cores",0))')
        log "$section $variant run $run try $try: $(printf '%s' "$line" | python3 -c 'import json,sys; v=json.load(sys.stdin); print("%.0f req/s p50 %s p99 %s errors %s" % (v["requests_per_sec"], v["p50_ms"], v["p99_ms"], v["errors"]))') other=$other"
        if python3 -c "import sys; sys.exit(0 if $other <= $MAX_OTHER else 1)" || [ "$try" = "$TRIES" ]; then
            tag "$section" "$variant" "$run" "$try" "$line" >> "$OUT/results.jsonl"
            return 0
        fi
    done
}

# One fresh verifying kmsd (admin credentials), one kmsd-bench run, stop.
# fresh_run SECTION VARIANT RUN KMSD_BIN "kmsd flags" kmsd-bench-args...
fresh_run() {
    local section=$1 variant=$2 run=$3 bin=$4 flags=$5; shift 5
    local dir="$WORK/kmsd-$section-$run"
    rm -rf "$dir"
    # shellcheck disable=SC2086
    start_kmsd "$bin" "$dir/data" "$OUT/kmsd-$section.log" $flags
    bench_run "$section" "$variant" "$run" "$KMSD_PID" "http://$KMSD_ADDR" \
        --credentials-file "$dir/data/admin-credentials" "$@"
    stop_kmsd
    rm -rf "$dir"
}

# ---------------------------------------------------------------- builds
build() {
    [ "$BUILD" = 1 ] || return 0
    local pkgs=(-p kmsd)
    case " ${SECTIONS[*]} " in *" xks "* | *" xksref "*) pkgs+=(-p xks-proxy) ;; esac
    log "cargo build --release ${pkgs[*]}"
    (cd "$ROOT" && cargo build --release "${pkgs[@]}" >&2)
}

before_bin() {
    if [ -n "${KMSD_BEFORE_BIN:-}" ]; then echo "$KMSD_BEFORE_BIN"; return; fi
    local sha wt target
    sha=$(git -C "$ROOT" log --format='%H %s' | awk '/^[0-9a-f]+ Access control as AWS KMS decides it/ {getline; print $1; exit}')
    [ -n "$sha" ] || { echo "bench.sh: access-control commit not found in git log" >&2; exit 1; }
    wt="$WORK/wt-before"
    target=${BEFORE_TARGET_DIR:-/tmp/wt-before-target}
    log "building kmsd at ${sha:0:7} (before access control) in $wt"
    git -C "$ROOT" worktree add --detach "$wt" "$sha" >&2
    (cd "$wt" && CARGO_TARGET_DIR="$target" cargo build --release -p kmsd >&2)
    cp "$target/release/kmsd" "$WORK/kmsd-before"
    git -C "$ROOT" worktree remove --force "$wt" >&2
    echo "$WORK/kmsd-before"
}

# ---------------------------------------------------------------- sections
section_default() {
    local run dur op c
    for run in $(seq "$RUNS"); do
        for dur in sync buffered; do
            for op in encrypt generate-data-key; do
                for c in 1 8 32; do
                    fresh_run default "$op/$c/$dur" "$run" "$KMSD" "--audit-durability $dur" \
                        --op "$op" --connections "$c"
                done
            done
        done
    done
}

section_ops() {
    local run op c bin variant
    for run in $(seq "$RUNS"); do
        for op in encrypt decrypt generate-data-key; do
            for c in 1 32; do
                for variant in ${KMSD_BEFORE_BIN:+before} after; do
                    bin=$KMSD
                    [ "$variant" = before ] && bin=$KMSD_BEFORE_BIN
                    fresh_run ops "$variant/$op/$c" "$run" "$bin" "--audit-durability sync" \
                        --op "$op" --connections "$c"
                done
            done
        done
    done
}

section_acl() {
    local before run c
    before=$(before_bin)
    for run in $(seq "$RUNS"); do
        for c in 8 32; do
            fresh_run acl "before/encrypt/$c" "$run" "$before" "$ACL_FLAGS" \
                --op encrypt --connections "$c"
            fresh_run acl "after/encrypt/$c" "$run" "$KMSD" "$ACL_FLAGS" \
                --op encrypt --connections "$c"
        done
    done
}

section_raw() {
    log "raw primitives (one thread, 5 s each)"
    "$BENCH" --raw-asym --duration-secs 5 --json >> "$OUT/raw.jsonl"
    "$BENCH" --raw-aes --duration-secs 5 --json >> "$OUT/raw.jsonl"
    "$BENCH" --raw-sign --duration-secs 5 --json >> "$OUT/raw.jsonl"
}

section_asym() {
    local run op
    for run in $(seq "$RUNS"); do
        for op in sign-rsa sign-ecc verify-rsa verify-ecc generate-mac encrypt; do
            fresh_run asym "$op/8" "$run" "$KMSD" "--audit-durability sync" \
                --op "$op" --connections 8
        done
    done
    section_raw
}

section_pg() {
    local pg=${BENCH_POSTGRES:-postgres://postgres@127.0.0.1:5432/test} run c db
    for run in $(seq "$RUNS"); do
        for c in 1 8 32; do
            fresh_run pg "sqlite/encrypt/$c" "$run" "$KMSD" "--audit-durability sync" \
                --op encrypt --connections "$c"
            db=kmsd_bench_$$_${run}_${c}
            psql "$pg" -qc "DROP DATABASE IF EXISTS $db" >/dev/null
            psql "$pg" -qc "CREATE DATABASE $db" >/dev/null
            fresh_run pg "postgres/encrypt/$c" "$run" "$KMSD" \
                "--audit-durability sync --store ${pg%/*}/$db" --op encrypt --connections "$c"
            psql "$pg" -qc "DROP DATABASE $db WITH (FORCE)" >/dev/null
        done
    done
}

rss_kib() { awk '/^VmRSS/{print $2}' "/proc/$1/status"; }

# The keys section's server on the data dir under $1 (kept across a restart).
start_keys_kmsd() {
    # shellcheck disable=SC2086
    start_kmsd "$KMSD" "$1/data" "$OUT/kmsd-keys.log" --audit-durability sync --quotas off \
        ${KEYS_KMSD_FLAGS:-}
}

section_keys() {
    local n=${BENCH_KEYS:-99999} run dir hot_key
    for run in $(seq "$RUNS"); do
        dir="$WORK/kmsd-keys-$run"
        start_keys_kmsd "$dir"
        log "keys run $run: server RSS $(rss_kib "$KMSD_PID") KiB at start"
        bench_run keys "hot/encrypt/32" "$run" "$KMSD_PID" "http://$KMSD_ADDR" \
            --credentials-file "$dir/data/admin-credentials" --op encrypt --connections 32
        log "keys run $run: server RSS $(rss_kib "$KMSD_PID") KiB after the hot key"
        bench_run keys "spread-$n/encrypt/32" "$run" "$KMSD_PID" "http://$KMSD_ADDR" \
            --credentials-file "$dir/data/admin-credentials" --op encrypt --connections 32 --keys "$n"
        log "keys run $run: server RSS $(rss_kib "$KMSD_PID") KiB after $n keys"
        hot_key=$(grep '"variant":"hot/encrypt/32"' "$OUT/results.jsonl" | tail -1 |
            python3 -c 'import json,sys; print(json.load(sys.stdin)["key_id"])')
        bench_run keys "hot-after-$n/encrypt/32" "$run" "$KMSD_PID" "http://$KMSD_ADDR" \
            --credentials-file "$dir/data/admin-credentials" --op encrypt --connections 32 \
            --key-id "$hot_key"
        # A restarted server starts with an empty key cache: every key's first use is a miss.
        stop_kmsd
        start_keys_kmsd "$dir"
        bench_run keys "spread-$n-restarted/encrypt/32" "$run" "$KMSD_PID" "http://$KMSD_ADDR" \
            --credentials-file "$dir/data/admin-credentials" --op encrypt --connections 32 \
            --existing-keys
        log "keys run $run: server RSS $(rss_kib "$KMSD_PID") KiB after $n keys, restarted"
        stop_kmsd
        rm -rf "$dir"
    done
}

# Waits until something accepts TCP connections on 127.0.0.1:$1 (at most 30 s).
wait_port() {
    local i
    for i in $(seq 300); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    echo "bench.sh: nothing listens on port $1" >&2
    exit 1
}

# xks-proxy against AWS's reference XKS proxy (aws-samples/aws-kms-xks-proxy, built by hand:
# REF_XKS_PROXY_BIN) on one SoftHSM2 token and key, both over TLS with SigV4, both logging at
# warn; kmsd-bench --op xks-encrypt (272-byte plaintext, as kmsd sends) straight to each proxy at
# 1, 4 and 16 connections, alternating. xks-proxy runs twice: as configured by default (HSM calls
# on blocking threads with a time limit) and with `hsm.calls = "inline"` (on the async worker,
# as the reference proxy calls its HSM); XKS_PROXY_BEFORE_BIN (optional) adds an older xks-proxy.
section_xksref() {
    local dir="$WORK/xksref" port c run variant addr bin
    local -A pids=() addrs=()
    [ -x "${REF_XKS_PROXY_BIN:-}" ] || { echo "bench.sh: xksref needs REF_XKS_PROXY_BIN" >&2; exit 1; }
    log "xksref: PKI, SoftHSM2 token, xks-proxy and the reference proxy over TLS"
    xks_setup "$dir"
    for variant in xks-proxy xks-proxy-inline ${XKS_PROXY_BEFORE_BIN:+xks-proxy-before}; do
        bin=$XKS_PROXY
        [ "$variant" = xks-proxy-before ] && bin=$XKS_PROXY_BEFORE_BIN
        sed "s|$dir/proxy-audit|$dir/audit-$variant|" "$dir/xks-proxy.toml" > "$dir/run-$variant.toml"
        if [ "$variant" = xks-proxy-inline ]; then
            sed -i 's|^token_label = .*|&\ncalls = "inline"|' "$dir/run-$variant.toml"
        fi
        RUST_LOG=warn "$bin" serve --config "$dir/run-$variant.toml" </dev/null >/dev/null 2>"$OUT/$variant.log" &
        pids[$variant]=$!
        PIDS+=("$!")
        addrs[$variant]=$(wait_line "$OUT/$variant.log" "xks-proxy listening on ")
    done
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    mkdir -p "$dir/ref"
    cat > "$dir/ref/settings.toml" <<EOF
[server]
ip = "127.0.0.1"
port = $port
port_http_ping = $port
region = "us-east-1"
service = "kms-xks-proxy"
[server.tcp_keepalive]
tcp_keepalive_secs = 60
[tracing]
is_stdout_writer_enabled = true
is_file_writer_enabled = false
level = "WARN"
[security]
is_sigv4_auth_enabled = true
is_tls_enabled = true
is_mtls_enabled = false
[tls]
tls_cert_pem = "$dir/pki/server.pem"
tls_key_pem = "$dir/pki/server.key"
[[external_key_stores]]
uri_path_prefix = "/example"
sigv4_access_key_id = "$XKS_AKID"
sigv4_secret_access_key = "$XKS_SECRET"
xks_key_id_set = ["bench-key"]
[pkcs11]
session_pool_max_size = 30
session_pool_timeout_milli = 0
session_eager_close = false
user_pin = "xks-bench-pin-1"
PKCS11_HSM_MODULE = "$SOFTHSM_MODULE"
context_read_timeout_milli = 10
[limits]
max_plaintext_in_base64 = 8192
max_aad_in_base64 = 16384
[hsm_capabilities]
can_generate_iv = false
is_zero_iv_required = false
EOF
    (cd "$dir/ref" && XKS_PROXY_SETTINGS_TOML="$dir/ref/settings.toml" exec "$REF_XKS_PROXY_BIN" \
        </dev/null >"$OUT/reference-proxy.log" 2>&1) &
    pids[reference]=$!
    PIDS+=("$!")
    addrs[reference]="127.0.0.1:$port"
    wait_port "$port"
    for run in $(seq "$RUNS"); do
        for c in 1 4 16; do
            for variant in xks-proxy xks-proxy-inline reference ${XKS_PROXY_BEFORE_BIN:+xks-proxy-before}; do
                addr=${addrs[$variant]}
                bench_run xksref "$variant/$c" "$run" "${pids[$variant]}" "https://$addr" \
                    --ca-file "$dir/pki/ca.pem" --credentials-file "$dir/proxy-credentials" \
                    --op xks-encrypt --key-id bench-key --plaintext-bytes 272 --connections "$c"
            done
        done
    done
    for variant in "${!pids[@]}"; do stop_pid "${pids[$variant]}"; forget_pid "${pids[$variant]}"; done
    unset SOFTHSM2_CONF
}

# The AWS CLI against a kmsd at $KMSD_ADDR with $DATA/admin-credentials (AWS CLI v1 would fetch
# parameters that look like URLs, such as --xks-proxy-uri-endpoint https://...: turned off).
awsk() {
    [ -f "$WORK/aws-config" ] || printf '[default]\ncli_follow_urlparam = false\n' > "$WORK/aws-config"
    env -u AWS_PROFILE AWS_SHARED_CREDENTIALS_FILE="$DATA/admin-credentials" AWS_CONFIG_FILE="$WORK/aws-config" \
        aws --endpoint-url "http://$KMSD_ADDR" --region us-east-1 --output text "$@"
}

section_cloudhsm() {
    local dir="$WORK/cloudhsm" t z cluster store key run c
    DATA="$dir/data"
    mkdir -p "$dir/tokens"
    export SOFTHSM2_CONF="$dir/softhsm2.conf"
    printf 'directories.tokendir = %s/tokens\nobjectstore.backend = file\nlog.level = ERROR\n' "$dir" > "$SOFTHSM2_CONF"
    for t in hsm-a hsm-b; do
        softhsm2-util --init-token --free --label "$t" --so-pin SoPin1234 --pin unused123 >/dev/null
    done
    echo SoPin1234 > "$dir/so-pin"
    : > "$dir/hsms.toml"
    for z in a b; do
        printf '[[hsm]]\nmodule = "%s"\ntoken_label = "hsm-%s"\navailability_zone = "us-east-1%s"\nso_pin_file = "%s/so-pin"\n\n' \
            "$SOFTHSM_MODULE" "$z" "$z" "$dir" >> "$dir/hsms.toml"
        printf '[[subnet]]\nid = "subnet-0%s0%s0%s0%s"\navailability_zone = "us-east-1%s"\n\n' "$z" "$z" "$z" "$z" "$z" >> "$dir/hsms.toml"
    done
    start_kmsd "$KMSD" "$DATA" "$OUT/kmsd-cloudhsm.log" --hsm-config "$dir/hsms.toml"
    log "cloudhsm: cluster, HSMs, CSR signed by an openssl CA, crypto user, key store, key"
    cluster=$(awsk cloudhsmv2 create-cluster --hsm-type hsm1.medium \
        --subnet-ids subnet-0a0a0a0a subnet-0b0b0b0b --query Cluster.ClusterId)
    awsk cloudhsmv2 create-hsm --cluster-id "$cluster" --availability-zone us-east-1a >/dev/null
    awsk cloudhsmv2 create-hsm --cluster-id "$cluster" --availability-zone us-east-1b >/dev/null
    awsk cloudhsmv2 describe-clusters --filters "clusterIds=$cluster" \
        --query 'Clusters[0].Certificates.ClusterCsr' > "$dir/cluster.csr"
    (cd "$dir" &&
        openssl req -x509 -newkey rsa:2048 -nodes -keyout customerCA.key -out customerCA.crt \
            -days 3 -subj "/CN=customer CA" 2>/dev/null &&
        openssl x509 -req -days 3 -in cluster.csr -CA customerCA.crt -CAkey customerCA.key \
            -CAcreateserial -out cluster.crt 2>/dev/null)
    awsk cloudhsmv2 initialize-cluster --cluster-id "$cluster" \
        --signed-cert "file://$dir/cluster.crt" --trust-anchor "file://$dir/customerCA.crt" >/dev/null
    "$KMSD" hsm create-user --data-dir "$DATA" --hsm-config "$dir/hsms.toml" \
        --cluster-id "$cluster" kmsuser kmsPswd123 >&2
    store=$(awsk kms create-custom-key-store --custom-key-store-name BenchCloudHSMKeyStore \
        --cloud-hsm-cluster-id "$cluster" --trust-anchor-certificate "file://$dir/customerCA.crt" \
        --key-store-password kmsPswd123 --query CustomKeyStoreId)
    awsk kms connect-custom-key-store --custom-key-store-id "$store" >/dev/null
    wait_connected "$store"
    key=$(awsk kms create-key --origin AWS_CLOUDHSM --custom-key-store-id "$store" \
        --query KeyMetadata.KeyId)
    log "cloudhsm: store $store key $key"
    for run in $(seq "$RUNS"); do
        for c in 8 32; do
            bench_run cloudhsm "encrypt/$c" "$run" "$KMSD_PID" "http://$KMSD_ADDR" \
                --credentials-file "$DATA/admin-credentials" --key-id "$key" \
                --op encrypt --connections "$c"
        done
    done
    stop_kmsd
    unset SOFTHSM2_CONF
}

wait_connected() {
    local i state
    for i in $(seq 60); do
        state=$(awsk kms describe-custom-key-stores --custom-key-store-id "$1" \
            --query 'CustomKeyStores[0].ConnectionState')
        [ "$state" = CONNECTED ] && return 0
        [ "$state" = FAILED ] && { echo "key store $1 FAILED to connect" >&2; return 1; }
        sleep 0.5
    done
    echo "key store $1 not CONNECTED within 30 s" >&2
    return 1
}

# xks_setup DIR: a test PKI (DIR/pki), a SoftHSM2 token (SOFTHSM2_CONF exported) with the AES key
# `bench-key` made by $XKS_PROXY, xks-proxy's config DIR/xks-proxy.toml and the SigV4 credentials
# (XKS_AKID, XKS_SECRET; DIR/proxy-credentials for kmsd-bench).
xks_setup() {
    local dir=$1
    mkdir -p "$dir/pki" "$dir/tokens"
    (cd "$dir/pki" &&
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key \
            -out ca.pem -days 2 -subj "/CN=xks bench CA" \
            -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null &&
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout server.key \
            -out server.csr -subj /CN=localhost 2>/dev/null &&
        printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n' > server.ext &&
        openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
            -out server.pem -extfile server.ext 2>/dev/null)
    export SOFTHSM2_CONF="$dir/softhsm2.conf"
    printf 'directories.tokendir = %s/tokens\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n' "$dir" > "$SOFTHSM2_CONF"
    softhsm2-util --init-token --free --label xks-bench --so-pin 1234567890 --pin xks-bench-pin-1 >/dev/null
    printf 'xks-bench-pin-1\n' > "$dir/pin"
    chmod 600 "$dir/pin"
    XKS_AKID=AKIAXKSPROXYBENCH222
    XKS_SECRET=$(openssl rand -base64 33)
    cat > "$dir/xks-proxy.toml" <<EOF
listen = "127.0.0.1:0"
crypto_enabled = true
[tls]
cert = "$dir/pki/server.pem"
key = "$dir/pki/server.key"
[hsm]
module = "$SOFTHSM_MODULE"
token_label = "xks-bench"
pin_file = "$dir/pin"
[health]
cache_secs = 30
[audit]
dir = "$dir/proxy-audit"
[[key_store]]
name = "bench"
uri_path = "/example/kms/xks/v1"
region = "us-east-1"
keys = ["bench-key"]
[[key_store.credentials]]
access_key_id = "$XKS_AKID"
secret_access_key = "$XKS_SECRET"
EOF
    printf '[default]\naws_access_key_id = %s\naws_secret_access_key = %s\n' "$XKS_AKID" "$XKS_SECRET" > "$dir/proxy-credentials"
    RUST_LOG=warn "$XKS_PROXY" create-key --config "$dir/xks-proxy.toml" bench-key >/dev/null
}

section_xks() {
    local dir="$WORK/xks" akid secret proxy_pid proxy_addr store key run c from to
    DATA="$dir/data"
    log "xks: PKI, SoftHSM2 token, xks-proxy over TLS"
    xks_setup "$dir"
    akid=$XKS_AKID
    secret=$XKS_SECRET
    RUST_LOG=info "$XKS_PROXY" serve --config "$dir/xks-proxy.toml" </dev/null >/dev/null 2>"$OUT/xks-proxy.log" &
    proxy_pid=$!
    PIDS+=("$proxy_pid")
    proxy_addr=$(wait_line "$OUT/xks-proxy.log" "xks-proxy listening on ")
    printf 'ca_bundle = "%s/pki/ca.pem"\n[[endpoint]]\nhost = "localhost"\naddress = "%s"\n' "$dir" "$proxy_addr" > "$dir/xks.toml"
    start_kmsd "$KMSD" "$DATA" "$OUT/kmsd-xks.log" --xks-config "$dir/xks.toml"
    store=$(awsk kms create-custom-key-store --custom-key-store-name BenchXks \
        --custom-key-store-type EXTERNAL_KEY_STORE --xks-proxy-connectivity PUBLIC_ENDPOINT \
        --xks-proxy-uri-endpoint https://localhost --xks-proxy-uri-path /example/kms/xks/v1 \
        --xks-proxy-authentication-credential "{\"AccessKeyId\":\"$akid\",\"RawSecretAccessKey\":\"$secret\"}" \
        --query CustomKeyStoreId)
    awsk kms connect-custom-key-store --custom-key-store-id "$store" >/dev/null
    wait_connected "$store"
    key=$(awsk kms create-key --origin EXTERNAL_KEY_STORE --custom-key-store-id "$store" \
        --xks-key-id bench-key --query KeyMetadata.KeyId)
    log "xks: proxy $proxy_addr store $store key $key"
    for run in $(seq "$RUNS"); do
        for c in 1 8; do
            from=$(wc -l < "$OUT/xks-proxy.log")
            bench_run xks "kmsd-xks-encrypt/$c" "$run" "$KMSD_PID,$proxy_pid" "http://$KMSD_ADDR" \
                --credentials-file "$DATA/admin-credentials" --key-id "$key" \
                --op encrypt --connections "$c"
            to=$(wc -l < "$OUT/xks-proxy.log")
            python3 "$SUMMARIZE" proxy-latency "$OUT/xks-proxy.log" "$from" "$to" \
                "xks" "proxy-log/kmsd-xks-encrypt/$c" "$run" "$WARMUP" >> "$OUT/results.jsonl"
            from=$to
            # The proxy alone: what kmsd sends it (256 B + 16 B tag of inner ciphertext, 33 B AAD).
            bench_run xks "proxy-direct-encrypt/$c" "$run" "$proxy_pid" "https://$proxy_addr" \
                --ca-file "$dir/pki/ca.pem" --credentials-file "$dir/proxy-credentials" \
                --op xks-encrypt --key-id bench-key --plaintext-bytes 272 --connections "$c"
            to=$(wc -l < "$OUT/xks-proxy.log")
            python3 "$SUMMARIZE" proxy-latency "$OUT/xks-proxy.log" "$from" "$to" \
                "xks" "proxy-log/proxy-direct-encrypt/$c" "$run" "$WARMUP" >> "$OUT/results.jsonl"
        done
        # The default store on the same server, for reference.
        bench_run xks "kmsd-default-encrypt/1" "$run" "$KMSD_PID" "http://$KMSD_ADDR" \
            --credentials-file "$DATA/admin-credentials" --op encrypt --connections 1
    done
    stop_kmsd
    stop_pid "$proxy_pid"
    forget_pid "$proxy_pid"
    unset SOFTHSM2_CONF
}

section_profile() {
    local dir="$WORK/profile" bench_pid
    rm -rf "$dir"
    start_kmsd "$KMSD" "$dir/data" "$OUT/kmsd-profile.log"
    log "profile: perf record of kmsd (pid $KMSD_PID) during Encrypt at 32 connections"
    "$BENCH" --endpoint "http://$KMSD_ADDR" --credentials-file "$dir/data/admin-credentials" \
        --op encrypt --connections 32 --warmup-secs 2 --duration-secs 8 --json \
        --server-pid "$KMSD_PID" > "$OUT/profile-run.json" &
    bench_pid=$!
    sleep 2
    perf record -e cpu-clock -F 1999 -g --call-graph dwarf,16384 -p "$KMSD_PID" \
        -o "$WORK/perf.data" -- sleep 6 2>"$OUT/perf-record.log" >&2 || true
    wait "$bench_pid"
    stop_kmsd
    perf report -i "$WORK/perf.data" --no-children --sort symbol --stdio -g none \
        --percent-limit 0.2 2>/dev/null | grep -v '^$' | cut -c1-240 | sed 's/ *$//' \
        > "$OUT/perf-self.txt" || true
    perf report -i "$WORK/perf.data" --children --sort symbol --stdio -g none \
        --percent-limit 0.5 2>/dev/null | grep -v '^$' | cut -c1-240 | sed 's/ *$//' \
        > "$OUT/perf-children.txt" || true
    perf report -i "$WORK/perf.data" --no-children --sort dso --stdio -g none 2>/dev/null \
        | grep -v '^$' | head -60 > "$OUT/perf-dso.txt" || true
    if [ "${KEEP_PERF:-0}" = 1 ]; then mv "$WORK/perf.data" "$OUT/perf.data"; fi
    rm -rf "$dir"
}

# ---------------------------------------------------------------- main
build
[ -x "$KMSD" ] && [ -x "$BENCH" ] || { echo "bench.sh: $KMSD or $BENCH missing" >&2; exit 1; }
{
    echo "commit $SHA, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "kmsd $KMSD"
    echo "kmsd-bench $BENCH"
    echo "runs $RUNS duration $DURATION warmup $WARMUP max-other $MAX_OTHER tries $TRIES"
    echo "acl flags: $ACL_FLAGS; extra kmsd flags: ${EXTRA_KMSD_FLAGS:-none}"
    nproc; uname -r; grep -m1 'model name' /proc/cpuinfo || true
} > "$OUT/machine.txt"
for s in "${SECTIONS[@]}"; do
    log "section $s"
    "section_$s"
done
python3 "$SUMMARIZE" summary "$OUT" > "$OUT/summary.md"
log "results in $OUT (summary.md)"
cat "$OUT/summary.md"
