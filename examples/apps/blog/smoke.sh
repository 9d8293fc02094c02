#!/usr/bin/env bash
# Deploys the sample blog on this machine the way sitec deploys it on a runner,
# from scratch and on loopback only, checks that it answers, then removes it all.
#
#   bash examples/apps/blog/smoke.sh            # as root, from anywhere
#
# 1. wheelhouse: wheels for the hosts' python and platform, downloaded once into
#    target/wheelhouse (the operator's side; hosts have no internet)
# 2. release: the app copied into a temp dir, a venv installed with --no-index
# 3. a real Postgres (own cluster, the postgres user) and a real Redis
# 4. sitec_settings.py, gunicorn.conf.py, redis.conf and the nginx vhost rendered
#    from templates/ by the same code as tests/templates.rs
# 5. migrate (seeds two posts), collectstatic, gunicorn behind nginx
# 6. curl: the page (posts from Postgres, title from the settings layers, a view
#    counter in Redis, https seen through X-Forwarded-Proto), the stylesheet
#    (from nginx, with cache headers, never reaching gunicorn), /healthz (still
#    200 with the database and the cache stopped), and a 403 for a client that
#    is not a balancer; gunicorn sends READY=1 to NOTIFY_SOCKET (its unit is Type=notify)
# 7. every setting gunicorn.conf.py sets is one gunicorn knows (it ignores others);
#    the gunicorn and celery units, rendered for this release, pass
#    systemd-analyze verify; a celery task sent through redis runs in the worker
#    and reads postgres
#
# Environment: PYTHON (default /usr/bin/python3.11), WHEELHOUSE (default target/wheelhouse),
# SMOKE_PORT_BASE (default 25000: Postgres +432, Redis +379, gunicorn +801, nginx +800),
# SMOKE_KEEP=1 keeps the temp dir.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../../.." && pwd)
# Debian's python, as on the hosts (a venv of a python under /root would not run
# as the app's user).
python=${PYTHON:-/usr/bin/python3.11}
wheelhouse=${WHEELHOUSE:-$repo/target/wheelhouse}
base=${SMOKE_PORT_BASE:-25000}
pg_port=$((base + 432))
redis_port=$((base + 379))
gunicorn_port=$((base + 801))
nginx_port=$((base + 800))
host=blog.localhost
# The balancer, as nginx on the runner sees it: another loopback address.
balancer=127.0.0.3
title="Deployed by smoke.sh"
# Stands in for the app's own user (app-blog on a runner).
app_user=nobody

say() { echo "smoke: $*"; }
die() {
  echo "smoke: FAILED: $*" >&2
  exit 1
}

[ "$(id -u)" = 0 ] || die "run as root: Postgres runs as the postgres user through runuser"
for need in nginx:nginx redis-server:redis-server redis-cli:redis-tools curl:curl \
  runuser:util-linux "$python":"python3 python3-venv" cargo:"rustup (see README)"; do
  command -v "${need%%:*}" >/dev/null || die "${need%%:*} is missing: apt-get install -y ${need#*:}"
done
pg_bin=$(find /usr/lib/postgresql -maxdepth 2 -name bin 2>/dev/null | sort -V | tail -1)
[ -x "$pg_bin/postgres" ] || die "no Postgres server: apt-get install -y postgresql"

work=$(mktemp -d /tmp/sitec-blog-smoke.XXXXXX)
chmod 755 "$work"
pids=()
pg_up=

cleanup() {
  local status=$?
  if [ -n "$pg_up" ]; then
    runuser -u postgres -- "$pg_bin/pg_ctl" -D "$work/pg" -m fast -w stop >/dev/null 2>&1 || true
  fi
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ "$status" != 0 ]; then
    for log in "$work"/log/* "$work"/pg.log "$work"/render.log; do
      [ -s "$log" ] && { echo "--- $log" >&2; tail -n 20 "$log" >&2; }
    done
  fi
  if [ -n "${SMOKE_KEEP:-}" ]; then say "kept $work"; else rm -rf "$work"; fi
  exit "$status"
}
trap cleanup EXIT

# Polls a command for up to 15 s.
wait_for() {
  local what=$1
  shift
  for _ in $(seq 150); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  die "$what did not come up"
}

# render TEMPLATE CONTEXT.json OUTPUT: sitec's own renderer, strict mode.
render() {
  cargo run -q --manifest-path "$repo/Cargo.toml" --example render_template -- "$1" "$2" "$3" \
    >>"$work/render.log" 2>&1 ||
    die "rendering $1 (see above)"
}

secret() { od -An -N12 -tx1 /dev/urandom | tr -d ' \n'; }

# 1. The venv, whose pip also downloads the wheelhouse once per requirements.txt
#    (the exact command of ../README.md: the operator's side).
say "release and venv in $work"
"$python" -m venv "$work/venv"
stamp="$wheelhouse/.requirements-$(sha256sum "$here/requirements.txt" | cut -c1-16)"
if [ ! -e "$stamp" ]; then
  say "downloading wheels into $wheelhouse"
  "$work/venv/bin/pip" download --quiet --disable-pip-version-check \
    --dest "$wheelhouse" --only-binary=:all: \
    --python-version 3.11 --implementation cp --abi cp311 \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 \
    -r "$here/requirements.txt"
  touch "$stamp"
fi

# 2. The release, and the venv installed from the wheelhouse only (the host's side).
mkdir -p "$work/release" "$work/log" "$work/ctx" "$work/redis" "$work/nginx"
tar -C "$here" --exclude=sitec_settings.py --exclude=collected_static \
  --exclude=db.sqlite3 --exclude=__pycache__ --exclude=smoke.sh -cf - . |
  tar -C "$work/release" -xf -
"$work/venv/bin/pip" install --quiet --disable-pip-version-check \
  --no-index --find-links "$wheelhouse" -r "$work/release/requirements.txt"

# 3. Postgres: a cluster of its own, a role and a database for the app.
say "postgres on 127.0.0.1:$pg_port"
db_password=$(secret)
mkdir "$work/pg" "$work/pgsock"
chown postgres: "$work/pg" "$work/pgsock"
runuser -u postgres -- "$pg_bin/initdb" -D "$work/pg" --auth-local=peer \
  --auth-host=scram-sha-256 --encoding=UTF8 --locale=C --no-sync --no-instructions >/dev/null
touch "$work/pg.log" && chown postgres: "$work/pg.log"
runuser -u postgres -- "$pg_bin/pg_ctl" -D "$work/pg" -l "$work/pg.log" -w -o \
  "-p $pg_port -c listen_addresses=127.0.0.1 -c unix_socket_directories=$work/pgsock" \
  start >/dev/null
pg_up=1
runuser -u postgres -- "$pg_bin/psql" -X -q -h "$work/pgsock" -p "$pg_port" -d postgres \
  -v ON_ERROR_STOP=1 -c "CREATE ROLE blog LOGIN PASSWORD '$db_password'" \
  -c "CREATE DATABASE blog OWNER blog"

# 4. Everything sitec renders for the app, from templates/.
redis_password=$(secret)
secret_key=$(secret)$(secret)
cat >"$work/ctx/redis.json" <<EOF
{ "origin": "examples/apps/blog/smoke.sh", "app": "blog", "host": "localhost",
  "bind": ["127.0.0.1"], "port": $redis_port, "dir": "$work/redis",
  "log_file": "$work/log/redis.log", "pid_file": "$work/redis/redis-server.pid",
  "password": "$redis_password",
  "maxmemory": "64mb", "maxmemory_policy": "allkeys-lru", "replicaof": null }
EOF
cat >"$work/ctx/sitec_settings.json" <<EOF
{ "origin": "examples/apps/blog/smoke.sh", "app": "blog", "settings_module": "blog.settings",
  "python_paths": ["$work/release", "$work/release/apps"],
  "domains": ["$host"],
  "static_url": "/static/", "static_root": "$work/release/collected_static",
  "databases": [{ "origin": "smoke.sh: databases.default", "alias": "default",
    "name": "blog", "user": "blog", "password_py": "'$db_password'",
    "host": "127.0.0.1", "port": $pg_port, "conn_max_age": 60 }],
  "caches": [{ "origin": "smoke.sh: databases.cache", "alias": "default", "name": "cache",
    "password_py": "'$redis_password'", "host": "127.0.0.1", "port": $redis_port, "db": 0 }],
  "settings": [
    { "name": "DEBUG", "value_py": "False", "origin": "smoke.sh: settings base" },
    { "name": "SITE_TITLE", "value_py": "'$title'", "origin": "smoke.sh: app blog settings" },
    { "name": "SECRET_KEY", "value_py": "'$secret_key'", "origin": "smoke.sh: secret" }
  ] }
EOF
cat >"$work/ctx/gunicorn.json" <<EOF
{ "origin": "examples/apps/blog/smoke.sh", "app": "blog", "wsgi": "blog.wsgi:application",
  "release_dir": "$work/release",
  "python_paths": ["$work/release", "$work/release/apps"],
  "gunicorn_bind": "127.0.0.1:$gunicorn_port", "workers": 2, "threads": 2,
  "timeout_seconds": 30, "balancer_idle_timeout_seconds": 60, "keepalive_seconds": 75,
  "max_requests": 1000, "max_requests_jitter": 100, "log_dir": "$work/log" }
EOF
cat >"$work/ctx/nginx.json" <<EOF
{ "origin": "examples/apps/blog/smoke.sh", "app": "blog",
  "listen": "127.0.0.1:$nginx_port", "domains": ["$host"], "balancers": ["$balancer"],
  "gunicorn_bind": "127.0.0.1:$gunicorn_port", "upstream_keepalive_connections": 8,
  "balancer_idle_timeout_seconds": 60, "keepalive_seconds": 75, "timeout_seconds": 30,
  "client_max_body_size": "10m",
  "static": [{ "url": "/static/", "path": "$work/release/collected_static" }],
  "log_dir": "$work/log" }
EOF
cat >"$work/ctx/gunicorn-unit.json" <<EOF
{ "origin": "examples/apps/blog/smoke.sh", "app": "blog", "user": "app-blog", "group": "app-blog",
  "release_dir": "$work/release", "venv": "$work/venv",
  "gunicorn_config": "$work/gunicorn.conf.py", "runtime_directory": "sitec/apps/blog-smoke",
  "environment_file": "$work/environment",
  "stop_timeout_seconds": 35, "log_dir": "$work/log", "writable_paths": [] }
EOF
cat >"$work/ctx/worker-unit.json" <<EOF
{ "origin": "examples/apps/blog/smoke.sh", "app": "blog", "worker": "celery",
  "user": "app-blog", "group": "app-blog", "release_dir": "$work/release",
  "environment_file": "$work/environment",
  "exec_start": "$work/venv/bin/celery -A blog worker --loglevel=INFO --concurrency=1",
  "stop_timeout_seconds": 600, "log_dir": "$work/log", "writable_paths": [] }
EOF
say "rendering templates"
render redis/redis.conf "$work/ctx/redis.json" "$work/redis.conf"
render django/sitec_settings.py "$work/ctx/sitec_settings.json" "$work/release/sitec_settings.py"
render runner/gunicorn.conf.py "$work/ctx/gunicorn.json" "$work/gunicorn.conf.py"
render runner/nginx-app.conf "$work/ctx/nginx.json" "$work/nginx/blog.conf"
mkdir "$work/units"
render systemd/gunicorn.service "$work/ctx/gunicorn-unit.json" "$work/units/sitec-app-blog.service"
render systemd/celery-worker.service "$work/ctx/worker-unit.json" \
  "$work/units/sitec-app-blog-worker-celery.service"
cat >"$work/nginx/nginx.conf" <<EOF
user www-data;
pid $work/nginx/nginx.pid;
error_log $work/log/nginx-main-error.log;
events {}
http {
    include /etc/nginx/mime.types;
    access_log $work/log/nginx-main-access.log;
    client_body_temp_path $work/nginx/body;
    proxy_temp_path $work/nginx/proxy;
    fastcgi_temp_path $work/nginx/fastcgi;
    uwsgi_temp_path $work/nginx/uwsgi;
    scgi_temp_path $work/nginx/scgi;
    include $work/nginx/blog.conf;
}
EOF

say "redis on 127.0.0.1:$redis_port"
redis-server "$work/redis.conf" >/dev/null 2>&1 &
pids+=($!)
wait_for redis redis-cli -p "$redis_port" --no-auth-warning -a "$redis_password" ping

# 5. What a deploy runs in the release, then gunicorn and nginx as their units do.
say "migrate, collectstatic"
# As sitec's environment file does: its settings module, which imports the app's.
export DJANGO_SETTINGS_MODULE=sitec_settings SECRET_KEY="$secret_key"
(cd "$work/release" && "$work/venv/bin/python" manage.py check --fail-level WARNING &&
  "$work/venv/bin/python" manage.py migrate --noinput -v0 &&
  "$work/venv/bin/python" manage.py collectstatic --noinput -v0) ||
  die "manage.py"
[ -s "$work/release/collected_static/posts/blog.css" ] || die "collectstatic wrote no blog.css"

# gunicorn ignores a setting it does not know: every name the rendered config
# sets must come back in the configuration gunicorn resolved from it.
resolved=$(cd "$work/release" && "$work/venv/bin/gunicorn" --config "$work/gunicorn.conf.py" \
  --print-config) || die "gunicorn --print-config"
for name in $(sed -n 's/^\([a-z_]*\) = .*/\1/p' "$work/gunicorn.conf.py"); do
  grep -q "^$name  *= " <<<"$resolved" || die "gunicorn has no setting \`$name\` (gunicorn.conf.py)"
done
grep -q '^worker_class  *= gthread$' <<<"$resolved" || die "gunicorn does not resolve worker_class"

# The units point at the real venv here: systemd-analyze checks their programs exist.
if command -v systemd-analyze >/dev/null; then
  said=$(systemd-analyze verify --man=no "$work"/units/*.service 2>&1) && [ -z "$said" ] ||
    die "systemd-analyze verify: $said"
fi

say "gunicorn on 127.0.0.1:$gunicorn_port, nginx on 127.0.0.1:$nginx_port, a celery worker"
# The unit is Type=notify: gunicorn must tell systemd it is ready. A datagram
# socket stands in for systemd's.
"$work/venv/bin/python" -c '
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
s.settimeout(30)
print(s.recv(4096).decode(), flush=True)
' "$work/notify.sock" >"$work/notify.out" &
pids+=($!)
wait_for "the notify socket" test -S "$work/notify.sock"
chmod 666 "$work/notify.sock" # as systemd's is
# gunicorn and the worker run as an unprivileged user, as their units do
# (User=app-blog): they may write their logs and nothing else.
chown "$app_user:" "$work/log"
(cd "$work/release" && exec runuser -u "$app_user" -- env NOTIFY_SOCKET="$work/notify.sock" \
  "$work/venv/bin/gunicorn" --config "$work/gunicorn.conf.py" >>"$work/log/gunicorn-stdout.log" 2>&1) &
pids+=($!)
# The worker as its unit starts it: the release as working directory, the
# app's paths in PYTHONPATH, the command of the spec.
(cd "$work/release" && exec runuser -u "$app_user" -- \
  env PYTHONPATH="$work/release:$work/release/apps" \
  "$work/venv/bin/celery" -A blog worker --loglevel=INFO --concurrency=1 \
  >>"$work/log/worker-celery.log" 2>&1) &
pids+=($!)
said=$(nginx -t -q -p "$work/nginx" -c "$work/nginx/nginx.conf" 2>&1) && [ -z "$said" ] ||
  die "nginx -t: $said"
nginx -p "$work/nginx" -c "$work/nginx/nginx.conf" -g 'daemon off;' &
pids+=($!)
url=http://127.0.0.1:$nginx_port
wait_for gunicorn curl -fsS -H "Host: $host" "http://127.0.0.1:$gunicorn_port/healthz"
wait_for nginx curl -fsS -H "Host: $host" "$url/healthz"
wait_for "gunicorn's READY=1 (Type=notify)" grep -q READY=1 "$work/notify.out"

# 6. What a visitor, the balancer and a stranger see.
page() {
  curl -fsS --interface "$balancer" -H "Host: $host" -H "X-Forwarded-For: 198.51.100.7" \
    -H "X-Forwarded-Proto: https" "$url/"
}
first=$(page) || die "the front page"
for want in "<title>$title</title>" "Hello from a runner" "Static files never touch Python" \
  'href="/static/posts/blog.css"' "served over https" '<span id="views">1</span>'; do
  grep -qF "$want" <<<"$first" || die "the front page lacks: $want"
done
page | grep -qF '<span id="views">2</span>' || die "the view counter did not count in redis"
redis-cli -p "$redis_port" --no-auth-warning -a "$redis_password" --scan --pattern 'blog:*' |
  grep -q . || die "no blog: key in redis"
say "front page: posts from postgres, title from settings, views counted in redis, https via X-Forwarded-Proto"

css_headers=$(curl -fsS -D - -o "$work/blog.css" "$url/static/posts/blog.css") || die "the stylesheet"
cmp -s "$work/blog.css" "$here/apps/posts/static/posts/blog.css" || die "the stylesheet differs"
grep -qi '^Cache-Control: max-age=2592000' <<<"$css_headers" || die "no long cache header: $css_headers"
grep -qi '^Content-Type: text/css' <<<"$css_headers" || die "wrong content type: $css_headers"
[ "$(curl -s -o /dev/null -w '%{http_code}' "$url/static/missing.css")" = 404 ] ||
  die "a missing static file is not a 404 from nginx"
! grep -q '/static/' "$work/log/gunicorn-access.log" || die "a static file reached gunicorn"
grep -q '198.51.100.7' "$work/log/nginx-access.log" || die "nginx did not log the forwarded client address"
grep -q 'Using worker: gthread' "$work/log/gunicorn-error.log" || die "gunicorn is not using gthread"
say "stylesheet: served by nginx with cache headers, never by gunicorn"

# Only the balancers ($balancer here) and the host itself may connect, whatever
# X-Forwarded-For claims.
[ "$(curl -s -o /dev/null -w '%{http_code}' --interface 127.0.0.2 \
  -H "Host: $host" -H "X-Forwarded-For: $balancer" "$url/healthz")" = 403 ] ||
  die "a client that is not a balancer reached the app"
say "runner port: 403 for anyone but the balancers"

posts=$(cd "$work/release" && "$work/venv/bin/python" manage.py shell -v 0 -c \
  'from posts.tasks import count_posts; print(count_posts.delay().get(timeout=30))') ||
  die "the celery task"
[ "$posts" = 2 ] || die "the worker counted $posts posts, not 2"
grep -q 'posts.tasks.count_posts.*succeeded' "$work/log/worker-celery.log" ||
  die "the task did not run in the worker"
say "celery worker: a task through redis, run against postgres"

[ "$(curl -fsS -H "Host: $host" "$url/healthz")" = ok ] || die "/healthz"
runuser -u postgres -- "$pg_bin/pg_ctl" -D "$work/pg" -m fast -w stop >/dev/null
pg_up=
redis-cli -p "$redis_port" --no-auth-warning -a "$redis_password" shutdown nosave >/dev/null 2>&1 || true
[ "$(curl -fsS -H "Host: $host" "$url/healthz")" = ok ] || die "/healthz needs the database or the cache"
[ "$(curl -s -o /dev/null -w '%{http_code}' -H "Host: $host" "$url/")" = 500 ] ||
  die "the front page did not notice its database was gone"
say "/healthz: 200 ok without database or cache"
say "passed"
