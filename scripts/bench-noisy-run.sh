#!/usr/bin/env bash
# What a noisy run costs the server: a real `nightshift serve` (SQLite, one worker, default
# limits) runs a `command` agent that prints MB megabytes, RUNS times, with a `task logs
# --follow` client attached; prints the server's RSS (idle, after a quiet run, peak, after each
# noisy run) and how much the database grew. Usage:
#   scripts/bench-noisy-run.sh target/debug/nightshift [MB] [RUNS]
set -euo pipefail

BIN=$(realpath "$1")
MB=${2:-50}
RUNS=${3:-2}
WORK=$(mktemp -d)
trap 'kill $SERVER 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"' EXIT

git init -q --bare "$WORK/repo.git"
git clone -q "$WORK/repo.git" "$WORK/clone" 2>/dev/null
(cd "$WORK/clone" && echo a > a && git add a \
  && git -c user.name=bench -c user.email=bench@example.com commit -qm init \
  && git push -q origin HEAD:main)

"$BIN" serve --data-dir "$WORK/data" --listen 127.0.0.1:0 --workers 1 \
  > "$WORK/serve.out" 2> "$WORK/serve.err" &
SERVER=$!
until grep -q "listening on" "$WORK/serve.out" 2>/dev/null; do sleep 0.2; done
export NIGHTSHIFT_URL=$(grep -o 'http://[^ ]*' "$WORK/serve.out" | head -1)
export NIGHTSHIFT_TOKEN=$(cat "$WORK/data/admin.token")

rss() { awk '/VmRSS/ {print $2}' "/proc/$SERVER/status"; }
db() { du -sk "$WORK"/data/nightshift.db* | awk '{s += $1} END {print s}'; }
create() {
  "$BIN" task create --repo "file://$WORK/repo.git" --instructions "$1" \
    --agent-command "$2" --json | grep -o '"id": *[0-9]*' | head -1 | grep -o '[0-9]*$'
}
status() {
  "$BIN" task show "$1" --json | grep -o '"status": *"[a-z_]*"' | tail -1 | cut -d'"' -f4
}
wait_end() {
  PEAK=0
  while true; do
    R=$(rss); [ "$R" -gt "$PEAK" ] && PEAK=$R
    case $(status "$1") in succeeded|failed|cancelled) break ;; esac
    sleep 0.5
  done
}

sleep 2
echo "idle: $(rss) kB"
wait_end "$(create quiet 'echo hi; touch q')"
sleep 5
echo "after a quiet run: $(rss) kB"
DB0=$(db)
for n in $(seq "$RUNS"); do
  T=$(create "noisy $n" "yes 'the agent says something fairly long on every line of its output' | head -c ${MB}000000; touch b$n")
  "$BIN" task logs "$T" --follow > "$WORK/follow.out" 2>&1 &
  FOLLOWER=$!
  wait_end "$T"
  wait $FOLLOWER || true
  sleep 15
  echo "noisy run $n ($(status "$T")): peak $PEAK kB, 15 s after its end $(rss) kB," \
    "follower got $(wc -l < "$WORK/follow.out") lines"
done
echo "database grew by $(( $(db) - DB0 )) kB over $RUNS noisy runs"
