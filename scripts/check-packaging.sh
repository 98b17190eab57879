#!/usr/bin/env bash
# Builds the Debian package with cargo-deb and checks it as an installer would see it: the layout
# (binaries, hardened systemd units, the config file as a 0600 conffile), the units with
# `systemd-analyze verify`, and the packaged kmsd reading the packaged config. The package is
# unpacked into a scratch root with `dpkg -x`; nothing is installed on the machine.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! cargo deb --version >/dev/null 2>&1; then
  echo "installing cargo-deb (crates.io)"
  cargo install --locked --quiet cargo-deb
fi
cargo build --release --quiet -p kmsd --bin kmsd
cargo build --release --quiet -p xks-proxy --bin xks-proxy
rm -rf target/debian
cargo deb -p kmsd --no-build --quiet >/dev/null
deb=$(ls target/debian/kmsd_*.deb)
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
dpkg-deb -x "$deb" "$root"

fail=0
check() { # description, command...
  local what=$1; shift
  if "$@" >/dev/null 2>&1; then echo "packaging ok: $what"; else echo "packaging FAILED: $what"; fail=1; fi
}
check "kmsd binary" test -x "$root/usr/bin/kmsd"
check "xks-proxy binary" test -x "$root/usr/bin/xks-proxy"
check "kmsd unit" test -f "$root/lib/systemd/system/kmsd.service"
check "xks-proxy unit" test -f "$root/lib/systemd/system/xks-proxy.service"
check "config file mode 0600" test "$(stat -c %a "$root/etc/kmsd/kmsd.toml")" = 600
check "config file is a conffile" sh -c "dpkg-deb -I '$deb' conffiles | grep -qx /etc/kmsd/kmsd.toml"
check "units are hardened" sh -c "grep -q '^DynamicUser=yes' '$root/lib/systemd/system/kmsd.service' && grep -q '^ProtectSystem=strict' '$root/lib/systemd/system/kmsd.service' && grep -q '^NoNewPrivileges=yes' '$root/lib/systemd/system/kmsd.service' && grep -q '^LimitMEMLOCK=infinity' '$root/lib/systemd/system/kmsd.service'"
# systemd-analyze checks each ExecStart binary exists: point the units at the unpacked ones.
units=$(mktemp -d)
for u in kmsd xks-proxy; do
  sed "s#/usr/bin/#$root/usr/bin/#g" "$root/lib/systemd/system/$u.service" > "$units/$u.service"
done
if command -v systemd-analyze >/dev/null 2>&1; then
  check "systemd-analyze verify" systemd-analyze verify "$units/kmsd.service" "$units/xks-proxy.service"
else
  echo "packaging FAILED: systemd-analyze is not installed"; fail=1
fi
rm -rf "$units"
data=$(mktemp -d)
check "packaged kmsd reads the packaged config" env KMSD_DATA_DIR="$data/kmsd" "$root/usr/bin/kmsd" config check --config "$root/etc/kmsd/kmsd.toml"
rm -rf "$data"
exit $fail
