#!/usr/bin/env bash
# Operating a local fleet of 8 hosts, timed (see README.md beside this):
# `sitec status` and a runner's death under load (`cargo bench --bench
# ops_fleet`). Needs root and systemd-container. Boots its own fleet
# (bridge sitecopb, 10.77.231.0/24), applies the sample blog, measures, and
# takes it down. ROUNDS=N status runs (20), DEATHS=N runners killed (3),
# ONLY=status or ONLY=death one of the two; KEEP=1 leaves the fleet up
# (take it down with `sitec fleet down SPEC --bridge sitecopb`, SPEC printed).
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo bench --quiet --bench ops_fleet --no-run 2>/dev/null
work="$(mktemp -d /tmp/sitec-ops-bench.XXXXXX)"
spec="$work/opsbench.site"
# The sample apps, without any fleet state a checkout may hold.
tar -C examples --exclude=.fleet -cf - apps | tar -C "$work" -xf -
cat > "$spec" <<'SPEC'
use std/platform

provider local { kind = local }

host oblb1 { provider = local  address = "10.77.231.10"  roles = [balancer, logs] }
host oblb2 { provider = local  address = "10.77.231.11"  roles = [balancer, logs] }
host obrun1 { provider = local  address = "10.77.231.21"  roles = [runner] }
host obrun2 { provider = local  address = "10.77.231.22"  roles = [runner] }
host obrun3 { provider = local  address = "10.77.231.23"  roles = [runner] }
host obrun4 { provider = local  address = "10.77.231.24"  roles = [runner] }
host obdb1 { provider = local  address = "10.77.231.31"  roles = [postgres, redis] }
host obdb2 { provider = local  address = "10.77.231.32"  roles = [postgres, redis] }

# Containers on one machine: one provider only.
checks { balancer_redundancy = off  replica_spread = off }

database main { engine = postgres  primary = obdb1  standby = obdb2 }
database cache { engine = redis  tier = dedicated  primary = obdb1  replica = obdb2 }

app blog {
  source = "apps/blog"
  python = "3.11"
  wsgi = "blog.wsgi:application"
  domains = ["blog.test"]
  replicas = 4
  databases { default = main  cache = cache }
  static "/static/" = "collected_static"
  settings { SITE_TITLE = "Benchmarked"  SECRET_KEY = secret("blog.secret_key") }
}
SPEC
sitec="$PWD/target/release/sitec"
cleanup() {
  if [ -n "${KEEP:-}" ]; then echo "left up: $spec"; return; fi
  "$sitec" fleet down "$spec" --bridge sitecopb >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
"$sitec" fleet up "$spec" --bridge sitecopb --subnet 10.77.231.0/24 >/dev/null
"$sitec" apply "$spec" --yes >/dev/null
# The standby streams once its clone is done: status says nothing is wrong.
for _ in $(seq 120); do "$sitec" status "$spec" >/dev/null 2>&1 && break; sleep 1; done
FLEET_ARGS="--bridge sitecopb --subnet 10.77.231.0/24" cargo bench --quiet --bench ops_fleet -- --bench "$spec"
