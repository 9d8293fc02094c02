#!/usr/bin/env bash
# Backup and restore of a Postgres database of about 1 GB on a local fleet
# (see README.md beside this): the first snapshot and pull, the
# incremental pull after 1% of the table changed, a restore from the
# database host's own snapshot and one streamed from the backup host.
# Needs root, systemd-container and btrfs-progs. Boots its own fleet
# (bridge sitecbk, 10.77.216.0/24), measures, and takes it down.
# SIZE_MB=N sets the data loaded (default 1024); SITEC=path another binary.
set -euo pipefail
cd "$(dirname "$0")/../.."
size_mb="${SIZE_MB:-1024}"
if [ -z "${SITEC:-}" ]; then
  cargo build --quiet
  SITEC="$PWD/target/debug/sitec"
fi
work="$(mktemp -d /tmp/sitec-data-bench.XXXXXX)"
spec="$work/bench.site"
cat > "$spec" <<'EOF'
use std/platform

provider local { kind = local }

host bkdb1 { provider = local  address = "10.77.216.21"  roles = [postgres] }
host bkvault { provider = local  address = "10.77.216.30"  roles = [backup] }

checks { balancer_redundancy = off  replica_spread = off }

database main { engine = postgres  primary = bkdb1 }

# Taken by hand below (`sitec backups --now`), not by the timer.
backup nightly {
  from = [bkdb1]
  to = bkvault
  every = 1d
  keep { daily = 7 }
}
EOF
cleanup() {
  "$SITEC" fleet down "$spec" --bridge sitecbk >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

now() { date +%s%N; }
secs() { echo "scale=1; ($2 - $1) / 1000000000" | bc; }
on() { ssh -F "$work/.fleet/bench/ssh_config" "$1" "$2"; }
sql() { on bkdb1 "cd / && runuser -u postgres -- psql -XAtq -v ON_ERROR_STOP=1 -d bench -c $(printf '%q' "$1")"; }
# The newest copy on bkvault, as `sitec backups --json` reports it.
pulled() {
  "$SITEC" backups "$spec" main --json | python3 -c '
import json, sys
rows = [r for r in json.load(sys.stdin) if r["on"] == "bkvault"]
r = max(rows, key=lambda r: r["stamp"])
print("copy %s: %.1f MB in the snapshot, %.1f MB pulled in %.1f s" % (
    r["stamp"], r["bytes"] / 1e6, (r["pulled_bytes"] or 0) / 1e6, r["pull_seconds"] or 0))'
}
# A snapshot and its pull, by hand, timed; then what the copy took.
backup_now() {
  echo "== $1"
  local t0 t1
  t0=$(now)
  local said
  said=$("$SITEC" backups "$spec" main --now 2>&1) || { echo "$said" >&2; exit 1; }
  grep " ran in " <<<"$said"
  t1=$(now)
  echo "sitec backups --now: $(secs "$t0" "$t1") s"
  pulled
}
# The restore, timed, with what it said; then every row must be there.
restore() {
  on bkdb1 "systemctl kill -s KILL postgresql@15-main; sleep 1; rm -rf /var/lib/postgresql/15/main /var/lib/postgresql/15/main.sitec-before-restore"
  local t0 t1
  t0=$(now)
  "$SITEC" restore "$spec" main --yes
  t1=$(now)
  echo "restore, end to end: $(secs "$t0" "$t1") s"
  local count
  count=$(sql "select count(*) from big")
  [ "$count" = "$rows" ] || { echo "restored $count rows of $rows" >&2; exit 1; }
}

"$SITEC" fleet up "$spec" --bridge sitecbk --subnet 10.77.216.0/24 >/dev/null
"$SITEC" apply "$spec" --yes >/dev/null
on bkdb1 "cd / && runuser -u postgres -- createdb bench"
# A row of this table takes about 270 bytes on disk.
rows=$(( size_mb * 1024 * 1024 / 270 ))
t0=$(now)
sql "create table big as select i, md5(i::text) || repeat('x', 200) as pad from generate_series(1, $rows) i"
# Hint bits set and rows frozen now, or the first read after the first
# snapshot would rewrite every page (and the next pull carry them all).
sql "alter table big add primary key (i)"
sql "vacuum (freeze, analyze) big"
sql "checkpoint"
t1=$(now)
echo "== loaded $rows rows ($(sql "select pg_size_pretty(pg_database_size('bench'))")) in $(secs "$t0" "$t1") s"

backup_now "first snapshot and pull (everything travels)"
sql "update big set pad = md5(random()::text) || repeat('y', 200) where i <= $rows / 100; checkpoint"
backup_now "1% of the rows changed, then snapshot and incremental pull"

echo "== restore from bkdb1's own snapshot (data folder destroyed first)"
restore

echo "== restore streamed from bkvault (bkdb1's snapshots deleted too)"
on bkdb1 "cd /var/lib/sitec/snapshots/nightly && for s in *; do btrfs subvolume delete -c \$s/* >/dev/null && rmdir \$s; done"
restore
