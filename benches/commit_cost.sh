#!/usr/bin/env bash
# The cost of a small commit, on local disk and on a local S3 server (moto): a generated
# stream split into COMMITS parts, each ingested and committed by one process in turn
# (`crmdq bench --commits`: data files, commit-log entry, Delta publication of the tables
# it touches), ROUNDS times, local and S3 taking turns. Prints one JSON line per round and
# place (median and 90th percentile seconds per commit).
#
#   benches/commit_cost.sh [WORK]        # CRMDQ=binary (default: the release build)
#
# Needs Python with moto[server] (.ci/run installs it) and curl.
set -euo pipefail
cd "$(dirname "$0")/.."
B=${CRMDQ:-${CARGO_TARGET_DIR:-target}/release/crmdq}
W=${1:-${TMPDIR:-/tmp}/crmdq-commit-cost}
N=${COMMITS:-60}
ROUNDS=${ROUNDS:-3}
NOW=2026-12-01T00:00:00Z
rm -rf "$W"
mkdir -p "$W"
"$B" --now "$NOW" generate --out "$W/gen.ndjson" --days 20 --people 30 --start 2026-11-01 >/dev/null

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
mkfifo "$W/ctl"
python3 tests/readers/moto_ctl.py "$port" <"$W/ctl" >"$W/moto.out" 2>/dev/null &
exec 3>"$W/ctl"
trap 'exec 3>&-' EXIT
until grep -q up "$W/moto.out" 2>/dev/null; do sleep 0.2; done
curl -sf -X PUT "http://127.0.0.1:$port/bench" >/dev/null
export AWS_ENDPOINT_URL="http://127.0.0.1:$port" AWS_ALLOW_HTTP=true AWS_REGION=us-east-1 \
  AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench

for r in $(seq "$ROUNDS"); do
  for where in "$W/local-$r" "s3://bench/round-$r"; do
    "$B" --now "$NOW" bench --pipeline pipelines/crm.yaml --input "$W/gen.ndjson" \
      --commits "$N" --warehouse "$where"
  done
done
