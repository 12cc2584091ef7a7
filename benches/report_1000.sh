#!/usr/bin/env bash
# The report benchmark of docs/performance.md: a month of 1,000 people in 12 teams
# (`crmdq generate`, the roster's teams rewritten to 12), ingested and scored, then
# `crmdq report` of the month timed (best of 3), in English and Chinese, HTML and XLSX;
# the largest page's size. Targets: ≤ 2 s, no page over 500 KB.
# Usage: benches/report_1000.sh [WORK_DIR] (default /tmp/crmdq-report-1000); needs a
# release build (CRMDQ=path, else $CARGO_TARGET_DIR or target/release/crmdq).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
B=${CRMDQ:-${CARGO_TARGET_DIR:-$ROOT/target}/release/crmdq}
[ -x "$B" ] || { echo "no release build at $B: cargo build --release, or set CRMDQ=path" >&2; exit 1; }
P=$ROOT/pipelines/crm.yaml
W=${1:-/tmp/crmdq-report-1000}
NOW=2026-12-06T00:00:00Z
mkdir -p "$W" && cd "$W"
if [ ! -d wh ]; then
  "$B" generate --out gen.ndjson --days 30 --people 1000 --start 2026-11-01 > /dev/null
  # 12 teams: every person (managers too) to team-(row mod 12).
  awk -F, 'BEGIN{OFS=","} NR==1{print; next} {$4=sprintf("team-%02d",(NR-2)%12); print}' \
    gen.ndjson.roster.csv > roster.csv
  "$B" --now $NOW ingest --pipeline "$P" --warehouse wh --roster roster.csv gen.ndjson > /dev/null
  "$B" --now $NOW score --pipeline "$P" --warehouse wh --roster roster.csv --no-alerts > /dev/null
fi
people=$("$B" sql --warehouse wh --format csv "SELECT COUNT(DISTINCT person_id) AS n FROM person_period WHERE period = '2026-11'" | tail -1)
teams=$("$B" sql --warehouse wh --format csv "SELECT COUNT(*) AS n FROM team_period WHERE period = '2026-11'" | tail -1)
entries=$("$B" sql --warehouse wh --format csv "SELECT SUM(entries) FROM team_period WHERE period = '2026-11'" | tail -1)
echo "month 2026-11: $people people, $teams teams, $entries entries"
for args in "--lang en" "--lang zh-CN" "--format xlsx"; do
  best=""
  for i in 1 2 3; do
    rm -rf out
    s=$(date +%s.%N)
    /usr/bin/time -f "%M" -o rss.txt "$B" --now $NOW report --pipeline "$P" --warehouse wh --roster roster.csv \
      --period 2026-11 --out out $args > report.txt
    e=$(date +%s.%N)
    t=$(echo "$e - $s" | bc)
    if [ -z "$best" ] || (( $(echo "$t < $best" | bc) )); then best=$t; fi
  done
  largest=$(find out -type f -printf '%s %f\n' | sort -n | tail -1)
  files=$(find out -type f | wc -l)
  printf 'report %-14s best of 3: %.2f s, peak RSS %s KB, %s file(s), largest %s\n' "$args" "$best" "$(cat rss.txt)" "$files" "$largest"
done
