#!/usr/bin/env bash
# The SSH floor on local fleets of 4 and 8 hosts (see README.md beside this).
# Needs root and systemd-container. Boots each fleet on its own bridge and
# subnet (10.77.200.0/24, bridge sitecb), measures, and takes it down.
# ROUNDS=N sets the rounds per measurement (default 5).
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds="${ROUNDS:-5}"
state_root="$(mktemp -d /tmp/sitec-bench.XXXXXX)"
cargo build --quiet
cargo bench --quiet --bench fleet_transport --no-run 2>/dev/null
sitec=target/debug/sitec
now() { date +%s%N; }
ms() { echo "scale=1; ($2 - $1) / 1000000" | bc; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

cleanup() { for n in 4 8; do "$sitec" fleet down --name "bench$n" --state-root "$state_root" --bridge sitecb >/dev/null 2>&1 || true; done; rm -rf "$state_root"; }
trap cleanup EXIT

for n in 4 8; do
  name="bench$n"
  hosts=()
  for i in $(seq 1 "$n"); do hosts+=(--host "h$i"); done
  t0=$(now)
  "$sitec" fleet up --name "$name" --state-root "$state_root" --bridge sitecb \
    --subnet 10.77.200.0/24 "${hosts[@]}" >/dev/null
  t1=$(now)
  echo "== $n hosts: boot to ssh + systemd running: $(ms "$t0" "$t1") ms"
  dir="$state_root/$name"
  sed '/KexAlgorithms/d' "$dir/ssh_config" > "$dir/ssh_config.default-kex"
  default=(); curve=()
  for r in $(seq 1 "$rounds"); do
    for cfg in ssh_config.default-kex ssh_config; do
      t0=$(now)
      for i in $(seq 1 "$n"); do ssh -F "$dir/$cfg" "h$i" true & done
      wait
      t1=$(now)
      if [ "$cfg" = ssh_config ]; then curve+=("$(ms "$t0" "$t1")"); else default+=("$(ms "$t0" "$t1")"); fi
    done
  done
  echo "ssh (one process per host, new connection), median of $rounds:"
  echo "  ssh host true, default KEX:   $(printf '%s\n' "${default[@]}" | median) ms"
  echo "  ssh host true, curve25519:    $(printf '%s\n' "${curve[@]}" | median) ms"
  ROUNDS="$rounds" cargo bench --quiet --bench fleet_transport -- --bench "$dir"
  t0=$(now)
  "$sitec" fleet down --name "$name" --state-root "$state_root" --bridge sitecb >/dev/null
  t1=$(now)
  echo "down: $(ms "$t0" "$t1") ms"
done
