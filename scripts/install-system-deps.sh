#!/bin/sh
# System packages Nightshift's tests and sandbox need. Idempotent and non-interactive: installs
# only what is missing. Run as root (CI) or with sudo available.
set -eu

missing=""
command -v bwrap >/dev/null 2>&1 || missing="$missing bubblewrap"
# The sandbox suite's network tests talk HTTP through the egress proxy with curl.
command -v curl >/dev/null 2>&1 || missing="$missing curl"
# The engine suite runs a Python check with the server's python3 in a confined run.
command -v python3 >/dev/null 2>&1 || missing="$missing python3"

if [ -z "$missing" ]; then
    exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
    SUDO=""
else
    SUDO="sudo"
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086 # word splitting of the package list is intended
$SUDO apt-get install -y -qq --no-install-recommends $missing
