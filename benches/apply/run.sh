#!/usr/bin/env bash
# sitec vs pyinfra vs Ansible converging the same workload on the same local
# hosts (see README.md beside this). Needs root, systemd-container, python3
# with venv, and network access to PyPI the first time (the venv is cached
# under target/applybench/).
#
#   benches/apply/run.sh [--hosts "4 8"] [--runs N] [--noops K] [--ansible-runs M] [--no-agent]
#
# For each host count: boots the fleet (`sitec fleet up`, bridge sitecab,
# 10.77.210.0/24), and in each of N runs, for each tool in turn (the order
# rotates run by run, to spread the machine's drift over all tools): a first
# converge on fresh hosts (down + up before it: the hosts are tmpfs overlays),
# a check that the hosts really converged, K no-op re-applies and a check
# that they changed nothing (the service was not restarted). The floor, one
# `ssh host true` per host in parallel over new connections with OpenSSH's
# default key exchange and with curve25519-sha256, is measured on every
# fresh fleet. Medians go to target/applybench/report.md. Ansible is slow
# enough (minutes per converge on a busy 2-core machine) that `--ansible-runs
# M` lets it take part in the first M runs only.
#
# sitec's column needs `sitec apply` (`target/release/sitec apply --help`);
# without it the column is skipped with a message and the rest still runs.
# Every sitec host also plays sitec's `agent` role (std/platform), as in any
# real sitec fleet: part of sitec's cost. `--no-agent` leaves it out.
set -euo pipefail
cd "$(dirname "$0")/../.."
repo="$PWD"

host_counts="4 8"
runs=3
noops=3
agent_flag=()
ansible_runs=""
while [ $# -gt 0 ]; do
  case "$1" in
    --hosts) host_counts="$2"; shift 2 ;;
    --runs) runs="$2"; shift 2 ;;
    --noops) noops="$2"; shift 2 ;;
    --no-agent) agent_flag=(--no-agent); shift ;;
    --ansible-runs) ansible_runs="$2"; shift 2 ;;
    -h|--help) sed -n '2,24p' "$repo/benches/apply/run.sh"; exit 0 ;;
    *) echo "run.sh: unknown argument $1 (try --help)" >&2; exit 2 ;;
  esac
done

PYINFRA_VERSION=3.10.0
# ansible-core 2.20 and later need Python 3.12; Debian 12 has 3.11.
ANSIBLE_CORE_VERSION=2.19.14
bridge=sitecab
prefix=10.77.210
here="$repo/benches/apply"
work="$repo/target/applybench"
sitec="$repo/target/release/sitec"
venv="$work/venv"
mkdir -p "$work"

log() { echo "[$(date -u +%H:%M:%S)] $*" >&2; }
now() { date +%s%N; }
ms() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.0f", (b - a) / 1e6 }'; }
median() { sort -n | awk '{ a[NR] = $1 } END { if (NR == 0) print ""; else if (NR % 2) print a[(NR + 1) / 2]; else printf "%.0f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

# --- sitec and the venv ----------------------------------------------------

log "building sitec (release)"
cargo build --release --quiet
built_at="$(git -C "$repo" rev-parse --short HEAD)$(git -C "$repo" diff --quiet HEAD -- src Cargo.toml Cargo.lock stdlib templates || echo '+changes')"

if "$sitec" apply --help >/dev/null 2>&1; then
  have_sitec_apply=1
else
  have_sitec_apply=0
  log "SKIPPING sitec's column: \`$sitec apply --help\` fails (sitec apply has not landed in this build)"
fi

want="pyinfra==$PYINFRA_VERSION ansible-core==$ANSIBLE_CORE_VERSION"
if [ "$(cat "$venv/.pinned" 2>/dev/null || true)" != "$want" ]; then
  log "creating $venv ($want)"
  rm -rf "$venv"
  python3 -m venv "$venv"
  # shellcheck disable=SC2086 # $want is two requirement words
  "$venv/bin/pip" install --quiet --disable-pip-version-check $want
  echo "$want" > "$venv/.pinned"
fi

# --- fleets ----------------------------------------------------------------

spec_of() { echo "$work/apply$1.site"; }
state_of() { echo "$work/.fleet/apply$1"; }
declare -A booted=()

down() {
  "$sitec" fleet down "$(spec_of "$1")" --bridge "$bridge" >/dev/null
}

cleanup() {
  local n
  close_ansible_masters
  for n in "${!booted[@]}"; do
    down "$n" 2>/dev/null || log "fleet down apply$n failed: run \`$sitec fleet down $(spec_of "$n") --bridge $bridge\`"
  done
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Boots fleet N and records the boot time; hosts then hold nothing of the workload.
up() {
  local t0 t1
  t0=$(now)
  "$sitec" fleet up "$(spec_of "$1")" --bridge "$bridge" --subnet "$prefix.0/24" >/dev/null
  t1=$(now)
  booted[$1]=1
  echo "boot $1 $(ms "$t0" "$t1")" >> "$results"
}

reset() {
  log "apply$1: down + up"
  down "$1"
  up "$1"
}

# `NAME ADDRESS` per host, from the fleet's state.
hosts_of() { jq -r '.hosts[] | "\(.name) \(.address)"' "$(state_of "$1")/fleet.json"; }

# The floor: one new `ssh ADDRESS true` per host, all at once, with the
# fleet's key and known_hosts; $2 = default or curve25519.
floor() {
  local n="$1" kex="$2" dir t0 t1 name addr
  dir="$(state_of "$n")"
  local opts=(-F /dev/null -o ControlMaster=no -o BatchMode=yes -o StrictHostKeyChecking=yes
    -o "UserKnownHostsFile=$dir/known_hosts" -o IdentitiesOnly=yes -i "$dir/keys/id_ed25519" -l root)
  if [ "$kex" = curve25519 ]; then opts+=(-o KexAlgorithms=curve25519-sha256); fi
  t0=$(now)
  while read -r name addr; do ssh -n "${opts[@]}" "$addr" true & done < <(hosts_of "$n")
  wait
  t1=$(now)
  echo "floor-$kex $n $(ms "$t0" "$t1")" >> "$results"
}

floors() {
  local i
  for i in 1 2 3; do
    if [ $((i % 2)) = 1 ]; then floor "$1" default; floor "$1" curve25519
    else floor "$1" curve25519; floor "$1" default; fi
  done
}

# Checks every host of fleet N holds the workload: the user, the
# directories, page03.html with exactly the expected bytes, the unit enabled
# and active. Prints `HOST ACTIVE_ENTER_TIMESTAMP` per host (sorted), so a
# caller can tell a restart. Fails loudly otherwise.
verify() {
  local n="$1" dir name addr out
  dir="$(state_of "$n")"
  local probe='id -u bench >/dev/null && stat -c "%U %a" /srv/bench /srv/bench/www /srv/bench/conf | tr "\n" " " && sha256sum /srv/bench/www/page03.html | cut -d" " -f1 && systemctl is-enabled bench-web && systemctl is-active bench-web && systemctl show -p ActiveEnterTimestampMonotonic --value bench-web'
  out="$work/verify.$n"
  : > "$out"
  while read -r name addr; do
    { echo "$name $(ssh -n -F "$dir/ssh_config" -o ControlMaster=no "$name" "$probe" | tr '\n' ' ')" >> "$out"; } &
  done < <(hosts_of "$n")
  wait
  local ok=1 line want stamps=""
  while read -r name want; do
    line="$(grep "^$name " "$out" || true)"
    # shellcheck disable=SC2086 # split the probe's words
    set -- $line
    if [ "$#" != 11 ] || [ "$2 $3 $4 $5 $6 $7" != "bench 755 bench 755 bench 750" ] \
      || [ "$8" != "$want" ] || [ "$9" != enabled ] || [ "${10}" != active ]; then
      log "NOT CONVERGED: $name: ${line:-no answer} (want page03 sha256 $want)"
      ok=0
    else
      stamps+="$name ${11}"$'\n'
    fi
  done < "$work/expected.$n"
  [ "$ok" = 1 ] || return 1
  printf '%s' "$stamps"
}

# --- the tools ---------------------------------------------------------------

write_inventories() {
  local n="$1" dir name addr
  dir="$(state_of "$n")"
  {
    echo "# Generated by benches/apply/run.sh from $dir/fleet.json"
    echo "bench = ["
    while read -r name addr; do
      echo "    (\"$name\", {\"ssh_hostname\": \"$addr\", \"ssh_user\": \"root\", \"ssh_key\": \"$dir/keys/id_ed25519\","
      echo "              \"ssh_known_hosts_file\": \"$dir/known_hosts\", \"ssh_strict_host_key_checking\": \"yes\"}),"
    done < <(hosts_of "$n")
    echo "]"
  } > "$work/pyinfra_inventory$n.py"
  {
    echo "[bench]"
    while read -r name addr; do
      echo "$name ansible_host=$addr ansible_user=root ansible_ssh_private_key_file=$dir/keys/id_ed25519"
    done < <(hosts_of "$n")
  } > "$work/ansible_inventory$n.ini"
  mkdir -p "$work/ansible-cp"
  cat > "$work/ansible$n.cfg" <<EOF
# Generated by benches/apply/run.sh
[defaults]
forks = $n
host_key_checking = True
interpreter_python = /usr/bin/python3
retry_files_enabled = False
local_tmp = $work/ansible-tmp

[ssh_connection]
pipelining = True
ssh_args = -o ControlMaster=auto -o ControlPersist=60s -o KexAlgorithms=curve25519-sha256 -o UserKnownHostsFile=$dir/known_hosts -o IdentitiesOnly=yes
control_path_dir = $work/ansible-cp
EOF
}

# Ansible keeps its SSH masters for ControlPersist after a run; close them so
# every run starts from new connections, as the other tools do.
close_ansible_masters() {
  local s
  for s in "$work"/ansible-cp/*; do
    if [ -S "$s" ]; then ssh -o ControlPath="$s" -O exit bench >/dev/null 2>&1 || true; fi
  done
}

# Runs TOOL once on fleet N; the log goes to target/applybench/TOOL.log.
converge() {
  local tool="$1" n="$2"
  case "$tool" in
    sitec) "$sitec" apply "$(spec_of "$n")" --yes ;;
    pyinfra) (cd "$here" && "$venv/bin/pyinfra" -y --parallel "$n" "$work/pyinfra_inventory$n.py" pyinfra_deploy.py) ;;
    ansible) (cd "$here" && ANSIBLE_CONFIG="$work/ansible$n.cfg" "$venv/bin/ansible-playbook" -i "$work/ansible_inventory$n.ini" playbook.yml) ;;
  esac
}

# Times one converge of TOOL on fleet N as PHASE (first or noop).
timed() {
  local tool="$1" n="$2" phase="$3" t0 t1 status=0
  t0=$(now)
  converge "$tool" "$n" >> "$work/$tool.log" 2>&1 || status=$?
  t1=$(now)
  if [ "$tool" = ansible ]; then close_ansible_masters; fi
  if [ "$status" != 0 ]; then
    log "$tool $phase on $n hosts FAILED (exit $status); the end of $work/$tool.log:"
    tail -n 30 "$work/$tool.log" >&2
    return 1
  fi
  echo "$tool-$phase $n $(ms "$t0" "$t1")" >> "$results"
  log "$tool $phase, $n hosts: $(ms "$t0" "$t1") ms"
}

# One run of TOOL on fleet N: first converge on fresh hosts, then no-ops.
bench_tool() {
  local tool="$1" n="$2" before after i
  if [ "$dirty" = 1 ]; then reset "$n" || return 1; floors "$n"; fi
  dirty=1
  timed "$tool" "$n" first || return 1
  before="$(verify "$n")" || { log "$tool's first converge left $n hosts unconverged"; return 1; }
  for i in $(seq 1 "$noops"); do timed "$tool" "$n" noop || return 1; done
  after="$(verify "$n")" || { log "$tool's no-op re-applies left $n hosts unconverged"; return 1; }
  if [ "$before" != "$after" ]; then
    log "$tool's no-op re-applies restarted bench-web: before: $before; after: $after"
    return 1
  fi
}

# --- the runs ------------------------------------------------------------------

stamp="$(date -u +%Y-%m-%dT%H%MZ)"
results="$work/results-$stamp.tsv"
: > "$results"
load_start="$(cut -d' ' -f1-3 /proc/loadavg)"
tools=()
[ "$have_sitec_apply" = 1 ] && tools+=(sitec)
tools+=(pyinfra ansible)
declare -A failed=()

for n in $host_counts; do
  "$venv/bin/python" "$here/gen_spec.py" "${agent_flag[@]}" "$n" "$prefix" "$(spec_of "$n")" "$work/expected.$n"
  "$sitec" check "$(spec_of "$n")" >/dev/null
  log "apply$n: up"
  up "$n"
  write_inventories "$n"
  floors "$n"
  dirty=0
  for r in $(seq 1 "$runs"); do
    k=${#tools[@]}
    for j in $(seq 0 $((k - 1))); do
      tool="${tools[$(((j + r - 1) % k))]}"
      [ -n "${failed[$tool-$n]:-}" ] && continue
      [ "$tool" = ansible ] && [ "$r" -gt "${ansible_runs:-$runs}" ] && continue
      log "run $r/$runs, $n hosts: $tool"
      bench_tool "$tool" "$n" || failed[$tool-$n]=1
    done
  done
  down "$n"
  unset "booted[$n]"
done
load_end="$(cut -d' ' -f1-3 /proc/loadavg)"

# --- the report ----------------------------------------------------------------

med() { awk -v k="$1" -v n="$2" '$1 == k && $2 == n { print $3 }' "$results" | median; }
secs() { if [ -n "$1" ]; then awk -v m="$1" 'BEGIN { printf "%.2f s", m / 1000 }'; else echo "n/a"; fi; }
ratio() { if [ -n "$1" ] && [ -n "$2" ]; then awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f×", a / b }'; else echo "n/a"; fi; }
count() { awk -v k="$1" -v n="$2" '$1 == k && $2 == n' "$results" | wc -l; }

report="$work/report.md"
{
  echo "Measured $(date -u '+%Y-%m-%d %H:%M') UTC on $(hostname) ($(nproc) cores), load average $load_start at the start and $load_end at the end."
  echo "Command: \`benches/apply/run.sh --hosts \"$host_counts\" --runs $runs --noops $noops${ansible_runs:+ --ansible-runs $ansible_runs}${agent_flag[*]:+ ${agent_flag[*]}}\`."
  skipped=""
  [ "$have_sitec_apply" = 1 ] || skipped=" (no \`sitec apply\` in this build: its rows are empty)"
  echo "Versions: sitec $built_at$skipped, pyinfra $("$venv/bin/pyinfra" --version 2>&1 | awk '{print $NF}'), ansible-core $("$venv/bin/python" -c 'import ansible.release as r; print(r.__version__)'), $(ssh -V 2>&1 | cut -d, -f1), Python $("$venv/bin/python" -c 'import sys; print(sys.version.split()[0])')."
  echo
  printf '| median |'; for n in $host_counts; do printf ' %s hosts |' "$n"; done; echo
  printf '|---|'; for _ in $host_counts; do printf -- '---|'; done; echo
  for row in sitec-first sitec-noop pyinfra-first pyinfra-noop ansible-first ansible-noop floor-default floor-curve25519 boot; do
    printf '| %s |' "$row"
    for n in $host_counts; do
      m="$(med "$row" "$n")"
      if [ -n "${failed[${row%-*}-$n]:-}" ]; then printf ' %s (failed) |' "$(secs "$m")"
      else printf ' %s (%s) |' "$(secs "$m")" "$(count "$row" "$n")"; fi
    done
    echo
  done
  echo
  echo "(n) = samples. Ratios (targets at 8 hosts in brackets):"
  echo
  printf '| ratio |'; for n in $host_counts; do printf ' %s hosts |' "$n"; done; echo
  printf '|---|'; for _ in $host_counts; do printf -- '---|'; done; echo
  for spec in "pyinfra-noop sitec-noop pyinfra no-op / sitec no-op (≥ 5)" \
    "ansible-noop sitec-noop Ansible no-op / sitec no-op (≥ 30)" \
    "sitec-noop floor-default sitec no-op / floor, default kex (≤ 1.5)" \
    "sitec-noop floor-curve25519 sitec no-op / floor, curve25519" \
    "pyinfra-first sitec-first pyinfra first / sitec first (≥ 4)" \
    "ansible-first sitec-first Ansible first / sitec first" \
    "pyinfra-noop floor-default pyinfra no-op / floor, default kex" \
    "ansible-noop floor-default Ansible no-op / floor, default kex"; do
    read -r a b label <<< "$spec"
    printf '| %s |' "$label"
    for n in $host_counts; do printf ' %s |' "$(ratio "$(med "$a" "$n")" "$(med "$b" "$n")")"; done
    echo
  done
} > "$report"
cat "$report"
log "raw samples: $results; report: $report"
