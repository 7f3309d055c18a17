#!/bin/sh
# System packages and toolchains Nightshift's tests and sandbox need. Idempotent and
# non-interactive: installs only what is missing. Run as root (CI) or with sudo available.
# Expects Rust, git, Node.js with npm (and its corepack) and Python 3 with pip, as CI has.
set -eu

if [ "$(id -u)" -eq 0 ]; then
    SUDO=""
else
    SUDO="sudo"
fi

missing=""
command -v bwrap >/dev/null 2>&1 || missing="$missing bubblewrap"
# The sandbox suite's network tests talk HTTP through the egress proxy with curl.
command -v curl >/dev/null 2>&1 || missing="$missing curl"
# The engine suite runs a Python check with the server's python3 in a confined run.
command -v python3 >/dev/null 2>&1 || missing="$missing python3"
# The checks suite runs the checks it detects on fixture projects of every ecosystem it knows.
command -v go >/dev/null 2>&1 || missing="$missing golang-go"
command -v make >/dev/null 2>&1 || missing="$missing make"
python3 -m venv --help >/dev/null 2>&1 || missing="$missing python3-venv"

if [ -n "$missing" ]; then
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    # shellcheck disable=SC2086 # word splitting of the package list is intended
    $SUDO apt-get install -y -qq --no-install-recommends $missing
fi

# uv, for the uv projects among the fixtures. A Python managed by the distribution refuses
# pip installs outside a virtualenv unless told otherwise.
if ! command -v uv >/dev/null 2>&1; then
    python3 -m pip install --quiet uv 2>/dev/null \
        || python3 -m pip install --quiet --break-system-packages uv
    command -v pyenv >/dev/null 2>&1 && pyenv rehash
    command -v uv >/dev/null 2>&1 || { echo "uv was installed but is not on PATH" >&2; exit 1; }
fi

# pnpm and yarn come through corepack, which ships with Node.js; its bundled signing keys
# may be older than the package managers' releases, so signatures are not checked here.
if ! command -v corepack >/dev/null 2>&1; then
    $SUDO npm install --global --no-audit --no-fund --loglevel=error corepack
fi
COREPACK_INTEGRITY_KEYS=0 COREPACK_ENABLE_DOWNLOAD_PROMPT=0 corepack pnpm@9.15.0 --version >/dev/null
