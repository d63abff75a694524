#!/usr/bin/env bash
# Builds and tests tauri-plugin-sync-queue: Rust (rustfmt, clippy, unit and
# IPC tests) and the JavaScript API (npm ci, typecheck, rollup build, vitest),
# and fails when the committed api-iife.js is not what guest-js/ builds to, or
# when the crate or the npm package would ship too much or too little.
#
# Env:
#   CARGO_TARGET_DIR            default ~/.cache/sync-queue/cargo-target (outside the clone)
#   SYNC_QUEUE_SIDECAR_CMD      the real sidecar's command for the `real::` IPC tests
#                               (default: <checkout>/.venv/bin/python -m sync_queue)
#   SYNC_QUEUE_PYTHON           the python of that default command
#   SYNC_QUEUE_FROZEN_SIDECAR   the onefile binary for tests/frozen.rs (default
#                               <checkout>/dist/sync-queue-sidecar-<triple>)
# Every test runs, the #[ignore]d frozen ones included; a test whose sidecar
# cannot be started fails (none is skipped).
#   SKIP_SYSTEM_DEPS            1: do not run install-system-deps.sh
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sync-queue/cargo-target}"
if [ "${SKIP_SYSTEM_DEPS:-0}" != 1 ]; then
  bash scripts/install-system-deps.sh
fi

echo "== rust: fmt, clippy, tests"
cargo fmt --check
nice -n 10 cargo clippy --locked --all-targets -- -D warnings
# --include-ignored for the #[ignore]d frozen tests; not for the doc example,
# which needs an app's runtime to compile.
nice -n 10 cargo test --locked --lib --tests -- --include-ignored
nice -n 10 cargo test --locked --doc

echo "== guest-js: install, typecheck, build, tests"
npm ci --no-audit --no-fund
npm run typecheck
committed=$(sha256sum api-iife.js)
npm run build
if [ "$(sha256sum api-iife.js)" != "$committed" ]; then
  echo "check.sh: api-iife.js was stale: rebuilt it from guest-js/; commit it" >&2
  exit 1
fi
npm test

echo "== packaging: what the crate and the npm package ship"
# build.rs needs command_names.rs, permissions/ and api-iife.js in the crate.
crate_files=$(cargo package --list --allow-dirty --locked 2>/dev/null)
for file in build.rs command_names.rs api-iife.js permissions/default.toml LICENSE README.md; do
  grep -qx "$file" <<<"$crate_files" || { echo "check.sh: the crate lacks $file" >&2; exit 1; }
done
if grep -E '^(tests|guest-js|node_modules|dist-js)/' <<<"$crate_files"; then
  echo "check.sh: the crate ships the files above, which it must not" >&2
  exit 1
fi
npm_files=$(npm pack --dry-run --json --ignore-scripts | node -e '
  const [pack] = JSON.parse(require("fs").readFileSync(0, "utf8"))
  console.log(pack.files.map((f) => f.path).sort().join(" "))')
expected="LICENSE README.md dist-js/index.cjs dist-js/index.d.ts dist-js/index.js package.json"
if [ "$npm_files" != "$expected" ]; then
  echo "check.sh: npm pack ships [$npm_files], expected [$expected]" >&2
  exit 1
fi
