#!/usr/bin/env bash
# Runs the web UI's browser tests: builds `nightshift`, installs Debian's Chromium when missing
# and playwright-core from the lockfile, then drives Chromium against a real `nightshift serve`.
# Screenshots land in docs/screenshots/. Exits non-zero when a test fails.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

if ! command -v chromium >/dev/null 2>&1; then
  # Playwright's own browser download does not work offline; Debian's Chromium does.
  echo "installing chromium from Debian's packages" >&2
  if [[ $(id -u) -eq 0 ]]; then sudo_cmd=(); else sudo_cmd=(sudo); fi
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq chromium
fi
command -v node >/dev/null || { echo "node is required (Node.js 18+)" >&2; exit 1; }
command -v git >/dev/null || { echo "git is required" >&2; exit 1; }

if [[ -z "${NIGHTSHIFT_BIN:-}" ]]; then
  cargo build -p nightshift-cli --bin nightshift
  export NIGHTSHIFT_BIN="$repo_root/target/debug/nightshift"
fi
export CHROMIUM="${CHROMIUM:-$(command -v chromium)}"

cd ui-tests
# --no-audit/--no-fund: no registry calls beyond the install itself.
npm ci --no-audit --no-fund --loglevel=error
start=$(date +%s)
node --test --test-concurrency=1 tests/
echo "browser suite took $(( $(date +%s) - start ))s"
