#!/usr/bin/env bash
# Issue 23, item 1: the daily job's incremental score on a year-long 10M warehouse.
# A year of 3,600 people (`crmdq generate`: 365 business dates, ~10.5M entries) is
# ingested and scored in full (which records what it was computed from); then one more
# day (~29k entries, its own `crmdq generate`) and ~300 late entries for the three days
# before it are ingested. That state is copied, and `crmdq score --no-alerts` (incremental)
# and `crmdq score --no-alerts --full` take turns on fresh copies, REPS times each, with
# time and peak RSS; each incremental score's files are compared with the full one's
# (byte-identical: content-addressed paths and sizes in the last log entry).
# Usage: benches/incremental.sh [WORK_DIR] (default /tmp/crmdq-year); REPS=3; needs a
# release build (CRMDQ=path, else $CARGO_TARGET_DIR or target/release/crmdq). ~15 minutes.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
B=${CRMDQ:-${CARGO_TARGET_DIR:-$ROOT/target}/release/crmdq}
[ -x "$B" ] || { echo "no release build at $B: cargo build --release, or set CRMDQ=path" >&2; exit 1; }
P=$ROOT/pipelines/crm.yaml
W=${1:-/tmp/crmdq-year}
REPS=${REPS:-3}
NOW=2026-12-06T00:00:00Z
mkdir -p "$W" && cd "$W"
if [ ! -f year.ndjson ]; then
  "$B" generate --out year.ndjson --days 365 --people 3600 --seed 1 --start 2025-09-01 > /dev/null
  cp year.ndjson.roster.csv roster.csv
  "$B" generate --out day.ndjson --days 1 --people 3600 --seed 2 --start 2026-09-01 --first-id 900000000 > /dev/null
  "$B" generate --out late3.ndjson --days 3 --people 3600 --seed 3 --start 2026-08-29 --first-id 950000000 > /dev/null
  grep '"record_id"' late3.ndjson | grep -E '"event_time":"2026-08-(29|30|31)' | awk 'NR % 280 == 0' > late.ndjson || true
  cat day.ndjson late.ndjson > inc.ndjson
  rm -f day.ndjson.roster.csv late3.ndjson*
fi
echo "year: $(wc -l < year.ndjson) lines; one more day: $(wc -l < day.ndjson); late: $(wc -l < late.ndjson)"
# The base is built by the binary measured (another build's scoring plan would make
# every score full).
SUM=$(sha256sum "$B" | cut -c1-16)
[ "$(cat base/.built-by 2>/dev/null)" = "$SUM" ] || rm -rf base
if [ ! -d base ]; then
  rm -rf base.tmp
  /usr/bin/time -f "ingest the year: %e s, peak RSS %M KB" "$B" --now $NOW ingest --pipeline "$P" --warehouse base.tmp --roster roster.csv year.ndjson > /dev/null
  /usr/bin/time -f "full score of the year: %e s, peak RSS %M KB" "$B" --now $NOW score --pipeline "$P" --warehouse base.tmp --roster roster.csv --no-alerts > /dev/null
  /usr/bin/time -f "ingest one more day: %e s, peak RSS %M KB" "$B" --now $NOW ingest --pipeline "$P" --warehouse base.tmp --roster roster.csv inc.ndjson > /dev/null
  echo "$SUM" > base.tmp/.built-by
  mv base.tmp base
fi
last_files() { python3 - "$1" <<'PY'
import json, os, sys
log = os.path.join(sys.argv[1], "_crmdq_log")
e = json.load(open(os.path.join(log, sorted(os.listdir(log))[-1])))
for f in sorted((f["table"], f["path"], f["bytes"]) for f in e["files"]):
    print(*f)
PY
}
for r in $(seq 1 "$REPS"); do
  for kind in incremental full; do
    rm -rf "run-$kind" && cp -r base "run-$kind"
    sync
    flag=""; [ $kind = full ] && flag="--full"
    /usr/bin/time -f "turn $r, $kind score: %e s, peak RSS %M KB" "$B" --now $NOW score --pipeline "$P" --warehouse "run-$kind" --roster roster.csv --no-alerts $flag | head -1
  done
  if cmp -s <(last_files run-incremental) <(last_files run-full); then
    echo "turn $r: the incremental score's files equal the full score's ($(last_files run-full | wc -l) files)"
  else
    echo "turn $r: THE FILES DIFFER" >&2; exit 1
  fi
done
