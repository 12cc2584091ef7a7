#!/usr/bin/env bash
# The 10M scoring measurement of docs/performance.md: ten years of 660 people (ten
# `crmdq generate` parts of 200 days each, ~10.5M entries, 2,000 business dates), ingested,
# then scored without and with the alert rules' first evaluation over every date.
# Usage: benches/score_10m.sh [WORK_DIR] (default /tmp/crmdq-10m); needs a release build
# (CRMDQ=path, else $CARGO_TARGET_DIR or target/release/crmdq). About 4 minutes.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
B=${CRMDQ:-${CARGO_TARGET_DIR:-$ROOT/target}/release/crmdq}
[ -x "$B" ] || { echo "no release build at $B: cargo build --release, or set CRMDQ=path" >&2; exit 1; }
P=$(cd "$(dirname "$0")/.." && pwd)/pipelines/crm.yaml
W=${1:-/tmp/crmdq-10m}
NOW=2026-12-06T00:00:00Z
mkdir -p "$W" && cd "$W"
if [ ! -f gen.ndjson ]; then
  for k in 0 1 2 3 4 5 6 7 8 9; do
    "$B" generate --out part-$k.ndjson --days 200 --people 660 --seed $((k + 1)) \
      --start $((2000 + k))-01-01 --first-id $((k * 100000000)) > /dev/null
  done
  cp part-0.ndjson.roster.csv roster.csv
  cat part-?.ndjson > gen.ndjson && rm part-*
fi
rm -rf wh
/usr/bin/time -f "ingest %e s, peak RSS %M KB" "$B" --now $NOW ingest --pipeline "$P" --warehouse wh --roster roster.csv gen.ndjson
/usr/bin/time -f "score --no-alerts %e s, peak RSS %M KB" "$B" --now $NOW score --pipeline "$P" --warehouse wh --roster roster.csv --no-alerts --full
/usr/bin/time -f "score (alerts over every date) %e s, peak RSS %M KB" "$B" --now $NOW score --pipeline "$P" --warehouse wh --roster roster.csv --full > /dev/null
