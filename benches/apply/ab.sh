#!/usr/bin/env bash
# Two variants of sitec's first apply, taking turns on one fresh fleet: the
# script behind the "before → after" figures of benches/apply/README.md.
# Needs root, systemd-container, jq and python3 with jinja2 (run.sh's venv
# has it; so does Debian's python3-jinja2).
#
#   benches/apply/ab.sh [--hosts N] [--runs R] A B
#
# A and B are each a sitec binary, optionally followed by `:nozstd` for
# hosts without the `zstd` program (then sitec ships itself gzipped):
#
#   benches/apply/ab.sh target/release/sitec:nozstd target/release/sitec
#   benches/apply/ab.sh /tmp/sitec-before target/release/sitec
#
# Each round boots the fleet anew (`fleet down` + `fleet up`: the hosts are
# tmpfs overlays, so they come back empty), hides `zstd` on every host for a
# `:nozstd` side, and times `SITEC apply SPEC --yes` of run.sh's workload
# (gen_spec.py, N hosts, the agent role included); a plan after it must say
# "No changes". The sides alternate (A B, then B A, ...) so the machine's
# drift spreads over both; one cold round each comes first and is left out
# (a new build packs itself for hosts once). Prints each side's samples and
# median, the load average, and the command, ready for the README.
set -euo pipefail
cd "$(dirname "$0")/../.."
repo="$PWD"

hosts=8
runs=5
sides=()
while [ $# -gt 0 ]; do
  case "$1" in
    --hosts) hosts="$2"; shift 2 ;;
    --runs) runs="$2"; shift 2 ;;
    -h|--help) sed -n '2,22p' "$repo/benches/apply/ab.sh"; exit 0 ;;
    -*) echo "ab.sh: unknown option $1 (try --help)" >&2; exit 2 ;;
    *) sides+=("$1"); shift ;;
  esac
done
if [ "${#sides[@]}" != 2 ]; then
  echo "ab.sh: give two variants, A and B (try --help)" >&2
  exit 2
fi

here="$repo/benches/apply"
work="$repo/target/applybench"
spec="$work/ab$hosts.site"
bridge=sitecax
prefix=10.77.211
mkdir -p "$work"
python=python3
[ -x "$work/venv/bin/python" ] && python="$work/venv/bin/python"

log() { echo "[$(date -u +%H:%M:%S)] $*" >&2; }
now() { date +%s%N; }
median() { sort -n | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else printf "%.0f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

binary_of() { echo "${1%:nozstd}"; }
for side in "${sides[@]}"; do
  if ! "$(binary_of "$side")" apply --help >/dev/null 2>&1; then
    echo "ab.sh: $(binary_of "$side") is not a sitec with \`apply\`" >&2
    exit 2
  fi
done
# The fleet is booted and taken down by side A's binary.
sitec="$(binary_of "${sides[0]}")"

"$python" "$here/gen_spec.py" "$hosts" "$prefix" "$spec" "$work/ab-expected.$hosts"
"$sitec" check "$spec" >/dev/null

down() { "$sitec" fleet down "$spec" --bridge "$bridge" >/dev/null; }
trap 'down || log "run: $sitec fleet down $spec --bridge $bridge"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# One first apply of SIDE on a fresh fleet; prints its milliseconds.
first_apply() {
  local side="$1" binary t0 t1 name
  binary="$(binary_of "$side")"
  down
  # (A failure in this function must end the script: `set -e` does not
  # reach into the command substitution that calls it.)
  "$sitec" fleet up "$spec" --bridge "$bridge" --subnet "$prefix.0/24" >/dev/null || {
    log "$side: fleet up failed"
    exit 1
  }
  if [ "$side" != "$binary" ]; then
    for name in $(jq -r '.hosts[].name' "$work/.fleet/ab$hosts/fleet.json"); do
      ssh -n -F "$work/.fleet/ab$hosts/ssh_config" "$name" 'mv /usr/bin/zstd /usr/bin/zstd.hidden' &
    done
    wait
    for name in $(jq -r '.hosts[].name' "$work/.fleet/ab$hosts/fleet.json"); do
      if ssh -n -F "$work/.fleet/ab$hosts/ssh_config" "$name" 'command -v zstd' >/dev/null; then
        log "$side: $name still has zstd"
        exit 1
      fi
    done
  fi
  t0=$(now)
  "$binary" apply "$spec" --yes >> "$work/ab.log" 2>&1 || {
    log "$side: the apply failed; the end of $work/ab.log:"
    tail -n 30 "$work/ab.log" >&2
    exit 1
  }
  t1=$(now)
  "$binary" plan "$spec" 2>&1 | grep -q "No changes" || {
    log "$side: the plan after the apply is not empty"
    exit 1
  }
  awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f\n", (b - a) / 1e6 }'
}

load_start="$(cut -d' ' -f1-3 /proc/loadavg)"
started="$(date -u '+%Y-%m-%d %H:%M')"
declare -A samples=()
for round in $(seq 0 "$runs"); do
  if [ $((round % 2)) = 0 ]; then order=(0 1); else order=(1 0); fi
  for i in "${order[@]}"; do
    ms="$(first_apply "${sides[$i]}")"
    if [ "$round" = 0 ]; then
      log "${sides[$i]}: $ms ms (cold, left out)"
    else
      log "${sides[$i]}: $ms ms"
      samples[$i]+="$ms "
    fi
  done
done
load_end="$(cut -d' ' -f1-3 /proc/loadavg)"

echo "Measured $started UTC on $(hostname) ($(nproc) cores), load average $load_start at the start and $load_end at the end."
echo "Command: \`benches/apply/ab.sh --hosts $hosts --runs $runs ${sides[*]}\`; sitec $(git -C "$repo" rev-parse --short HEAD)."
echo
echo "| first apply, $hosts hosts | median | samples (ms) |"
echo "|---|---|---|"
for i in 0 1; do
  med="$(tr ' ' '\n' <<< "${samples[$i]}" | grep . | median)"
  printf '| %s | %.2f s | %s|\n' "${sides[$i]}" "$(awk -v m="$med" 'BEGIN { print m / 1000 }')" "${samples[$i]}"
done
