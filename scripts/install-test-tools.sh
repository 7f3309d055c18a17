#!/usr/bin/env bash
# Installs the pinned agent CLIs the agent test suite runs against a scripted model server, the
# yarn release the checks suite ships in its yarn 4 fixture, the OpenAPI validator the server
# suite checks the API's document with, and Prometheus' own client whose parser reads the
# metrics the tests scrape (both in a Python virtualenv of its own).
# Idempotent: stamp files record the pinned versions, so a second run returns at once.
set -euo pipefail

# Pins: the agent CLIs whose offline behaviour is described in design/AGENT-CLIS.md, and the
# yarn release the checks suite's yarn 4 fixture ships in its .yarn/releases.
PACKAGES=(
  "@anthropic-ai/claude-code@2.1.197"
  "@openai/codex@0.169.0"
  "@zed-industries/claude-agent-acp@0.23.1"
  "@yarnpkg/cli-dist@4.5.3"
)
PYTHON_PACKAGES=(
  "openapi-spec-validator==0.9.0"
  "prometheus-client==0.26.0"
)

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIR="${NIGHTSHIFT_TEST_TOOLS:-$repo_root/target/test-tools}"

install_node_tools() {
  local stamp="$DIR/.nightshift-tools-stamp"
  local want
  want="$(printf '%s\n' "${PACKAGES[@]}")"
  if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" && -x "$DIR/node_modules/.bin/claude" \
        && -x "$DIR/node_modules/.bin/codex" && -x "$DIR/node_modules/.bin/claude-agent-acp" \
        && -f "$DIR/node_modules/@yarnpkg/cli-dist/bin/yarn.js" ]]; then
    echo "agent CLIs already installed in $DIR"
    return
  fi
  command -v npm >/dev/null || { echo "npm is required (install Node.js 18+)" >&2; exit 1; }
  mkdir -p "$DIR"
  rm -f "$stamp"
  # --no-audit/--no-fund: no extra registry calls beyond the install itself.
  npm install --prefix "$DIR" --no-audit --no-fund --loglevel=error "${PACKAGES[@]}"
  for bin in claude codex claude-agent-acp; do
    [[ -x "$DIR/node_modules/.bin/$bin" ]] || { echo "install finished but $bin is missing in $DIR/node_modules/.bin" >&2; exit 1; }
  done
  printf '%s\n' "${PACKAGES[@]}" > "$stamp"
  echo "agent CLIs installed in $DIR"
}

install_python_tools() {
  local venv="$DIR/python"
  local stamp="$venv/.nightshift-tools-stamp"
  local want
  want="$(printf '%s\n' "${PYTHON_PACKAGES[@]}")"
  if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" && -x "$venv/bin/openapi-spec-validator" ]]; then
    echo "Python test tools already installed in $venv"
    return
  fi
  command -v python3 >/dev/null || { echo "python3 is required (with its venv module)" >&2; exit 1; }
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${PYTHON_PACKAGES[@]}"
  [[ -x "$venv/bin/openapi-spec-validator" ]] || { echo "install finished but openapi-spec-validator is missing in $venv/bin" >&2; exit 1; }
  printf '%s\n' "${PYTHON_PACKAGES[@]}" > "$stamp"
  echo "Python test tools installed in $venv"
}

install_node_tools
install_python_tools
