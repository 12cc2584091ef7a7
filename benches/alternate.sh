#!/usr/bin/env bash
# Two builds of crmdq taking turns on the year-long warehouse of benches/incremental.sh:
# in each turn, an incremental and a full `crmdq score --no-alerts` by each build, on a
# fresh copy of the state that build made (a state records the scoring plan of the build
# that scored it, so each build needs its own). Time and peak RSS per score. This VM's
# speed drifts by ±15% within an hour: compare builds only in alternated turns.
# Usage: benches/alternate.sh BIN_A DIR_A BIN_B DIR_B   (REPS=3)
#   Make each state first: REPS=0 CRMDQ=BIN_A benches/incremental.sh DIR_A (and B; a
#   DIR_B may symlink DIR_A's year.ndjson, roster.csv, day/late/inc.ndjson).
set -euo pipefail
[ $# -eq 4 ] || { sed -n 2,9p "$0" >&2; exit 2; }
P=$(cd "$(dirname "$0")/.." && pwd)/pipelines/crm.yaml
NOW=2026-12-06T00:00:00Z
for r in $(seq 1 "${REPS:-3}"); do
  for kind in incremental full; do
    for side in "A $1 $2" "B $3 $4"; do
      read -r name bin dir <<< "$side"
      [ -d "$dir/base" ] || { echo "no state in $dir: run benches/incremental.sh first" >&2; exit 1; }
      rm -rf "$dir/run-alt" && cp -r "$dir/base" "$dir/run-alt" && sync
      flag=""; [ "$kind" = full ] && flag="--full"
      /usr/bin/time -f "turn $r, $kind, $name: %e s, peak RSS %M KB" "$bin" --now $NOW score \
        --pipeline "$P" --warehouse "$dir/run-alt" --roster "$dir/roster.csv" --no-alerts $flag > /dev/null
    done
  done
done
