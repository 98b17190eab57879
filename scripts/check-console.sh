#!/usr/bin/env bash
# The web console (console/): installs its node modules from the committed lockfile (the
# browser test, crates/kmsd/tests/console.rs, runs console/tests/e2e.mjs with playwright-core),
# then checks that the committed bundle crates/kmsd/console-dist/ is what `npm run build` makes
# from console/src now: the Rust build embeds that bundle and never runs npm itself.
set -euo pipefail
cd "$(dirname "$0")/../console"

npm ci --no-audit --no-fund --loglevel=error

fresh=$(mktemp -d)
trap 'rm -rf "$fresh"' EXIT
npx --no-install tsc --noEmit
npx --no-install vite build --outDir "$fresh" --emptyOutDir --logLevel error
if ! diff -r "$fresh" ../crates/kmsd/console-dist >/dev/null; then
  diff -r "$fresh" ../crates/kmsd/console-dist | head -20 || true
  echo "crates/kmsd/console-dist/ is out of date with console/src: run \`npm run build\` in console/ and commit the result" >&2
  exit 1
fi
echo "console bundle: up to date"
