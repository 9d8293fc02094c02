#!/usr/bin/env bash
# Two sitec builds' `sitec check` of one spec file, interleaved, wall clock:
# the fastest of RUNS runs of each (process start and reading the file
# included), which on a shared machine says more than a mean. The
# procedure behind benches/README.md's "before / after" wall-clock tables.
#
#   benches/check_ab.sh BEFORE AFTER SPEC [RUNS]     (RUNS: 40)
#   SITEC_WRITE_SPECS=/tmp cargo bench --bench check  # writes /tmp/200x2000.site etc.
#   benches/check_ab.sh /tmp/sitec-before target/release/sitec /tmp/200x2000.site
set -euo pipefail
if [ $# -lt 3 ]; then
  sed -n '2,9p' "$0" >&2
  exit 2
fi
before="$1" after="$2" spec="$3" runs="${4:-40}"
best_before="" best_after=""
# Milliseconds one `check` of the spec takes with binary $1 (it must pass).
once() {
  local t0 t1
  t0=$(date +%s%N)
  "$1" check "$spec" >/dev/null
  t1=$(date +%s%N)
  echo $(((t1 - t0) / 1000))
}
fastest() { if [ -z "$1" ] || [ "$2" -lt "$1" ]; then echo "$2"; else echo "$1"; fi; }
for _ in $(seq "$runs"); do
  best_before=$(fastest "$best_before" "$(once "$before")")
  best_after=$(fastest "$best_after" "$(once "$after")")
done
echo "$(date -u '+%Y-%m-%d %H:%M') UTC, load $(cut -d' ' -f1 /proc/loadavg), $spec, fastest of $runs:"
awk -v b="$best_before" -v a="$best_after" 'BEGIN { printf "before %.1f ms, after %.1f ms\n", b / 1000, a / 1000 }'
