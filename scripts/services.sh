#!/usr/bin/env bash
# Throwaway RabbitMQ, PostgreSQL and Redis servers on 127.0.0.1, for the tests.
#
#   scripts/services.sh install            apt-get what is missing (rabbitmq-server,
#                                          postgresql, redis-server, chromium, chromium-driver)
#   scripts/services.sh start              start all three (idempotent)
#   scripts/services.sh stop               stop all three, then epmd (idempotent)
#   scripts/services.sh env                print `export DATABASE_URL=... AMQP_URL=... REDIS_URL=...`
#                                          lines: eval "$(scripts/services.sh env)"
#   scripts/services.sh status             say what is running
#   scripts/services.sh logs [N]           last N lines (default 40) of each server log
#   scripts/services.sh psql [ARGS...]     psql on the test database, as kairos
#   scripts/services.sh rabbitmqctl ARGS   rabbitmqctl against the test node
#   scripts/services.sh start-rabbitmq | stop-rabbitmq | restart-rabbitmq
#                                          broker only; its data dir is kept, so
#                                          durable queues and persistent messages survive
#   scripts/services.sh kill-rabbitmq      SIGKILL the broker (a crash, for fault tests)
#   scripts/services.sh start-postgres | stop-postgres
#   scripts/services.sh start-redis | stop-redis
#   scripts/services.sh redis-cli [ARGS...] redis-cli against the test server
#
# Settings (environment):
#   KAIROS_SERVICES_DIR   state folder (default /tmp/kairos-services)
#   KAIROS_AMQP_PORT      AMQP port (default 5672)
#   KAIROS_PG_PORT        PostgreSQL port (default 5433)
#   KAIROS_REDIS_PORT     Redis port (default 6380; 6379 is left to a system Redis)
#   KAIROS_RABBITMQ_NODENAME  (default kairos-test@localhost)
#   KAIROS_RABBITMQ_DIST_PORT Erlang distribution port (default AMQP port + 20000)
#   KAIROS_SERVICES_TIMEOUT   seconds to wait for a server (default 60)
#
# As root, the servers run as the `rabbitmq`, `postgres` and `redis` users (PostgreSQL
# refuses root); as anyone else, as that user.
set -euo pipefail

SELF="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")"
AMQP_PORT="${KAIROS_AMQP_PORT:-5672}"
PG_PORT="${KAIROS_PG_PORT:-5433}"
REDIS_PORT="${KAIROS_REDIS_PORT:-6380}"
RABBIT_NODE="${KAIROS_RABBITMQ_NODENAME:-kairos-test@localhost}"
RABBIT_DIST_PORT="${KAIROS_RABBITMQ_DIST_PORT:-$((AMQP_PORT + 20000))}"
WAIT_SECONDS="${KAIROS_SERVICES_TIMEOUT:-60}"
HOST=127.0.0.1

state_dir_raw="${KAIROS_SERVICES_DIR:-/tmp/kairos-services}"
case "$state_dir_raw" in
  /*) STATE_DIR="$state_dir_raw" ;;
  *) STATE_DIR="$PWD/$state_dir_raw" ;;
esac
RMQ_DIR="$STATE_DIR/rabbitmq"
PG_DIR="$STATE_DIR/postgres"
PG_DATA="$PG_DIR/data"
PG_LOG="$PG_DIR/postgres.log"
PG_SOCK="$PG_DIR/run"
REDIS_DIR="$STATE_DIR/redis"
REDIS_LOG="$REDIS_DIR/redis.log"

log() { printf 'services: %s\n' "$*" >&2; }
die() { printf 'services: ERROR: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------- helpers

user_exists() { getent passwd "$1" >/dev/null 2>&1; }

# Run "$@" as the service user $1 when we are root, else as ourselves.
as_user() {
  local user="$1"; shift
  if [[ $EUID -eq 0 ]]; then
    user_exists "$user" || die "user '$user' does not exist (is its package installed? try: $SELF install)"
    runuser -u "$user" -- "$@"
  else
    "$@"
  fi
}

# Make a folder owned by the service user $1 (when root).
own_dir() {
  local user="$1" dir="$2"
  mkdir -p "$dir"
  if [[ $EUID -eq 0 ]]; then chown "$user": "$dir"; fi
}

port_open() {
  timeout 2 bash -c "exec 3<>/dev/tcp/$HOST/$1" 2>/dev/null
}

ensure_state_dir() {
  mkdir -p "$STATE_DIR"
  # mktemp -d makes 0700 folders: the service users must be able to get in.
  if [[ -O "$STATE_DIR" ]]; then chmod 0755 "$STATE_DIR"; fi
}

# pid from a pid file, if that process is alive and its command line or
# environment mentions $2 (guards against a recycled pid).
live_pid() {
  local pidfile="$1" marker="$2" pid
  [[ -s "$pidfile" ]] || return 1
  pid="$(head -n1 "$pidfile" | tr -dc '0-9')"
  [[ -n "$pid" ]] || return 1
  pid_alive "$pid" || return 1
  if tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$marker" ||
     tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null | grep -qF -- "$marker"; then
    echo "$pid"
  else
    return 1
  fi
}

# alive and not a zombie
pid_alive() {
  local state
  kill -0 "$1" 2>/dev/null || return 1
  state="$(sed -e 's/.*) //' -e 's/ .*//' "/proc/$1/stat" 2>/dev/null)" || return 1
  [[ -n "$state" && "$state" != Z && "$state" != X ]]
}

wait_gone() {  # pid seconds
  local pid="$1" deadline=$((SECONDS + $2))
  while pid_alive "$pid"; do
    ((SECONDS < deadline)) || return 1
    sleep 0.2
  done
}

# ---------------------------------------------------------------- RabbitMQ

rabbit_bin_dir() {
  # Debian's /usr/sbin/rabbitmq* are wrappers that `su` to the rabbitmq user
  # and re-quote the arguments; call the real scripts and choose the user here.
  if [[ -x /usr/lib/rabbitmq/bin/rabbitmq-server ]]; then
    echo /usr/lib/rabbitmq/bin
  elif command -v rabbitmq-server >/dev/null 2>&1; then
    dirname "$(command -v rabbitmq-server)"
  elif [[ -x /usr/sbin/rabbitmq-server ]]; then
    echo /usr/sbin
  else
    die "rabbitmq-server not found (try: $SELF install)"
  fi
}

rabbit_user() {
  if [[ $EUID -eq 0 ]] && user_exists rabbitmq; then echo rabbitmq; else id -un; fi
}

# Run a RabbitMQ script (rabbitmq-server, rabbitmqctl, ...) with our node's environment.
rabbit() {
  local script="$1"; shift
  local bindir user home
  bindir="$(rabbit_bin_dir)"
  user="$(rabbit_user)"
  home="$(getent passwd "$user" | cut -d: -f6)"
  [[ -n "$home" && -d "$home" ]] || home="$RMQ_DIR"
  (
    cd "$RMQ_DIR"
    as_user "$user" env \
      HOME="$home" \
      RABBITMQ_NODENAME="$RABBIT_NODE" \
      RABBITMQ_NODE_IP_ADDRESS="$HOST" \
      RABBITMQ_NODE_PORT="$AMQP_PORT" \
      RABBITMQ_DIST_PORT="$RABBIT_DIST_PORT" \
      ERL_EPMD_ADDRESS="$HOST" \
      RABBITMQ_CONF_ENV_FILE="$RMQ_DIR/rabbitmq-env.conf" \
      RABBITMQ_CONFIG_FILE="$RMQ_DIR/rabbitmq.conf" \
      RABBITMQ_ADVANCED_CONFIG_FILE="$RMQ_DIR/advanced.config" \
      RABBITMQ_ENABLED_PLUGINS_FILE="$RMQ_DIR/enabled_plugins" \
      RABBITMQ_MNESIA_BASE="$RMQ_DIR/mnesia" \
      RABBITMQ_LOG_BASE="$RMQ_DIR/log" \
      RABBITMQ_LOGS="$RMQ_DIR/log/rabbit.log" \
      RABBITMQ_PID_FILE="$RMQ_DIR/rabbit.pid" \
      "$bindir/$script" "$@"
  )
}

# The broker's pid: from its pid file, or else (a node still booting has not written
# it yet) the Erlang VM whose environment names this state folder.
rabbit_pid() {
  live_pid "$RMQ_DIR/rabbit.pid" "$RMQ_DIR" && return 0
  rabbit_vm_pids | head -n1 | grep .
}

# Erlang VMs booting RabbitMQ on this state folder.
rabbit_vm_pids() {
  local pid
  for pid in $(pgrep -x 'beam(\.smp)?' 2>/dev/null); do
    pid_alive "$pid" || continue
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- '-s rabbit boot' || continue
    tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null |
      grep -qxF "RABBITMQ_MNESIA_BASE=$RMQ_DIR/mnesia" || continue
    echo "$pid"
  done
}

# A start that failed must not leave a half-booted node behind.
abort_rabbitmq_start() {
  local pid
  rabbit_log_tail 60
  for pid in $(live_pid "$RMQ_DIR/rabbit.pid" "$RMQ_DIR") $(rabbit_vm_pids); do
    kill -KILL "$pid" 2>/dev/null || true
    wait_gone "$pid" 10 || true
  done
  die "$1"
}

rabbit_log_tail() {
  local n="${1:-40}" f
  for f in "$RMQ_DIR/log/rabbit.log" "$RMQ_DIR/log/startup.log"; do
    [[ -s "$f" ]] || continue
    printf -- '--- last %s lines of %s\n' "$n" "$f" >&2
    tail -n "$n" "$f" >&2
  done
}

rabbit_prepare() {
  ensure_state_dir
  local user; user="$(rabbit_user)"
  own_dir "$user" "$RMQ_DIR"
  own_dir "$user" "$RMQ_DIR/mnesia"
  own_dir "$user" "$RMQ_DIR/log"
  # Written at every start, so that a state folder made by an older version of this script
  # gets the current settings too.
  cat >"$RMQ_DIR/rabbitmq.conf" <<'EOF'
# Throwaway test broker (scripts/services.sh). Listener address and port come
# from RABBITMQ_NODE_IP_ADDRESS / RABBITMQ_NODE_PORT.
loopback_users.guest = true
log.console = false
log.file.level = info
disk_free_limit.absolute = 50MB
# Classic queues on the v2 index, the only one RabbitMQ 4 has. The v1 index of 3.10
# can fail to recover its journal after a kill -9, and then the node does not boot
# (seen in a chaos run: rabbit_queue_index:recover_journal).
classic_queue.default_version = 2
EOF
  [[ -f "$RMQ_DIR/enabled_plugins" ]] || echo '[].' >"$RMQ_DIR/enabled_plugins"
  [[ -f "$RMQ_DIR/rabbitmq-env.conf" ]] || : >"$RMQ_DIR/rabbitmq-env.conf"
  if [[ $EUID -eq 0 ]]; then
    chown "$user": "$RMQ_DIR/rabbitmq.conf" "$RMQ_DIR/enabled_plugins" "$RMQ_DIR/rabbitmq-env.conf"
  fi
}

wait_amqp() {
  local started=$SECONDS deadline=$((SECONDS + WAIT_SECONDS))
  until port_open "$AMQP_PORT"; do
    if ((SECONDS >= deadline)); then
      abort_rabbitmq_start "RabbitMQ did not accept connections on $HOST:$AMQP_PORT within ${WAIT_SECONDS}s (node $RABBIT_NODE, state $RMQ_DIR)"
    fi
    if ((SECONDS - started > 5)) && ! rabbit_pid >/dev/null; then
      abort_rabbitmq_start "RabbitMQ exited during start-up (node $RABBIT_NODE, state $RMQ_DIR)"
    fi
    sleep 0.3
  done
}

start_rabbitmq() {
  if rabbit_pid >/dev/null; then
    wait_amqp
    log "RabbitMQ already running ($RABBIT_NODE, amqp://$HOST:$AMQP_PORT)"
    return 0
  fi
  if port_open "$AMQP_PORT"; then
    die "port $HOST:$AMQP_PORT is taken by another process (a system RabbitMQ?). Stop it, or set KAIROS_AMQP_PORT."
  fi
  rabbit_prepare
  rm -f "$RMQ_DIR/rabbit.pid"
  log "starting RabbitMQ ($RABBIT_NODE, amqp://$HOST:$AMQP_PORT, state $RMQ_DIR)"
  local started=$SECONDS
  if ! rabbit rabbitmq-server -detached >"$RMQ_DIR/log/startup.log" 2>&1; then
    abort_rabbitmq_start "rabbitmq-server -detached failed"
  fi
  wait_amqp
  log "RabbitMQ ready in $((SECONDS - started))s"
}

stop_rabbitmq() {
  local pid
  if ! pid="$(rabbit_pid)"; then
    log "RabbitMQ not running"
    return 0
  fi
  log "stopping RabbitMQ ($RABBIT_NODE, pid $pid)"
  if ! timeout 60 "$SELF" rabbitmqctl -q shutdown >/dev/null 2>&1; then
    log "rabbitmqctl shutdown failed; sending SIGTERM to $pid"
    kill -TERM "$pid" 2>/dev/null || true
  fi
  if ! wait_gone "$pid" 30; then
    log "RabbitMQ still alive; sending SIGKILL to $pid"
    kill -KILL "$pid" 2>/dev/null || true
    wait_gone "$pid" 10 || die "could not stop RabbitMQ pid $pid"
  fi
  # the AMQP port is released with the process; make sure before a restart
  local deadline=$((SECONDS + 10))
  while port_open "$AMQP_PORT" && ((SECONDS < deadline)); do sleep 0.2; done
  log "RabbitMQ stopped"
}

kill_rabbitmq() {
  local pid
  if ! pid="$(rabbit_pid)"; then
    log "RabbitMQ not running"
    return 0
  fi
  log "killing RabbitMQ (SIGKILL pid $pid)"
  kill -KILL "$pid"
  wait_gone "$pid" 10 || die "RabbitMQ pid $pid survived SIGKILL"
}

stop_epmd() {
  command -v epmd >/dev/null 2>&1 || return 0
  # epmd refuses -kill while any node is registered, so another Erlang node's
  # epmd is never taken away from it.
  if epmd -names 2>/dev/null | grep -q '^name '; then
    log "epmd still has registered nodes; leaving it running"
    return 0
  fi
  epmd -kill >/dev/null 2>&1 || true
}

# ---------------------------------------------------------------- PostgreSQL

PG_BIN=""
pg_bin_dir() {
  if [[ -n "$PG_BIN" ]]; then echo "$PG_BIN"; return 0; fi
  local initdb="" d
  if command -v initdb >/dev/null 2>&1; then
    initdb="$(readlink -f "$(command -v initdb)")"
  else
    for d in $(printf "%s\n" /usr/lib/postgresql/*/bin | sort -V -r); do
      if [[ -x "$d/initdb" ]]; then initdb="$d/initdb"; break; fi
    done
  fi
  [[ -n "$initdb" ]] || return 1
  PG_BIN="$(dirname "$initdb")"
  echo "$PG_BIN"
}

pg_tool() {  # name -> path (PostgreSQL's bin dir first, then PATH)
  local dir
  dir="$(pg_bin_dir)" || die "PostgreSQL server binaries (initdb) not found (try: $SELF install)"
  if [[ -x "$dir/$1" ]]; then
    echo "$dir/$1"
  elif command -v "$1" >/dev/null 2>&1; then
    command -v "$1"
  else
    die "PostgreSQL tool $1 not found (try: $SELF install)"
  fi
}

pg_user() {
  if [[ $EUID -eq 0 ]]; then echo postgres; else id -un; fi
}

pg_as() { (cd "$PG_DIR" && as_user "$(pg_user)" "$@"); }

pg_log_tail() {
  local n="${1:-40}"
  if [[ -s "$PG_LOG" ]]; then
    printf -- '--- last %s lines of %s\n' "$n" "$PG_LOG" >&2
    tail -n "$n" "$PG_LOG" >&2
  fi
}

pg_pid() { live_pid "$PG_DATA/postmaster.pid" "$PG_DATA"; }

pg_init() {
  ensure_state_dir
  local user; user="$(pg_user)"
  own_dir "$user" "$PG_DIR"
  own_dir "$user" "$PG_SOCK"
  if [[ -s "$PG_DATA/PG_VERSION" ]]; then return 0; fi
  rm -rf "$PG_DATA"
  own_dir "$user" "$PG_DATA"
  chmod 0700 "$PG_DATA"
  log "initdb into $PG_DATA"
  if ! pg_as "$(pg_tool initdb)" -D "$PG_DATA" -U postgres --auth=trust \
        --encoding=UTF8 --no-locale --no-sync >"$PG_DIR/initdb.log" 2>&1; then
    cat "$PG_DIR/initdb.log" >&2
    die "initdb failed"
  fi
  cat >>"$PG_DATA/postgresql.conf" <<'EOF'

# scripts/services.sh: a throwaway test server. Speed over durability.
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 200
include_if_exists = 'kairos.conf'
EOF
}

wait_pg() {
  local deadline=$((SECONDS + WAIT_SECONDS)) isready
  isready="$(pg_tool pg_isready)"
  until "$isready" -q -h "$HOST" -p "$PG_PORT" -d postgres -U postgres; do
    if ((SECONDS >= deadline)); then
      pg_log_tail 60
      die "PostgreSQL not ready on $HOST:$PG_PORT within ${WAIT_SECONDS}s (data $PG_DATA)"
    fi
    sleep 0.3
  done
}

pg_ensure_db() {
  local psql; psql="$(pg_tool psql)"
  "$psql" -X -q -v ON_ERROR_STOP=1 -h "$HOST" -p "$PG_PORT" -U postgres -d postgres <<'SQL' >/dev/null
SELECT 'CREATE ROLE kairos LOGIN SUPERUSER'
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'kairos') \gexec
SELECT 'CREATE DATABASE kairos OWNER kairos'
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'kairos') \gexec
SQL
}

start_postgres() {
  if pg_pid >/dev/null; then
    wait_pg
    pg_ensure_db
    log "PostgreSQL already running (postgres://kairos@$HOST:$PG_PORT/kairos)"
    return 0
  fi
  if port_open "$PG_PORT"; then
    die "port $HOST:$PG_PORT is taken by another process. Stop it, or set KAIROS_PG_PORT."
  fi
  pg_init
  # Settings that may change between runs live in an included file.
  cat >"$PG_DATA/kairos.conf" <<EOF
listen_addresses = '$HOST'
port = $PG_PORT
unix_socket_directories = '$PG_SOCK'
log_checkpoints = off
EOF
  [[ $EUID -ne 0 ]] || chown "$(pg_user)": "$PG_DATA/kairos.conf"
  log "starting PostgreSQL (postgres://kairos@$HOST:$PG_PORT/kairos, data $PG_DATA)"
  local started=$SECONDS
  if ! pg_as "$(pg_tool pg_ctl)" -D "$PG_DATA" -l "$PG_LOG" -s -w -t "$WAIT_SECONDS" start; then
    pg_log_tail 60
    die "pg_ctl start failed"
  fi
  wait_pg
  pg_ensure_db
  log "PostgreSQL ready in $((SECONDS - started))s"
}

stop_postgres() {
  if ! pg_pid >/dev/null; then
    log "PostgreSQL not running"
    return 0
  fi
  log "stopping PostgreSQL"
  local pg_ctl; pg_ctl="$(pg_tool pg_ctl)"
  if ! pg_as "$pg_ctl" -D "$PG_DATA" -s -m fast -w -t 60 stop; then
    log "fast shutdown failed; trying immediate"
    pg_as "$pg_ctl" -D "$PG_DATA" -s -m immediate -w -t 30 stop || die "could not stop PostgreSQL"
  fi
  log "PostgreSQL stopped"
}

# ---------------------------------------------------------------- Redis

redis_user() {
  if [[ $EUID -eq 0 ]] && user_exists redis; then echo redis; else id -un; fi
}

redis_tool() {  # redis-server | redis-cli -> path
  if command -v "$1" >/dev/null 2>&1; then
    command -v "$1"
  elif [[ -x "/usr/bin/$1" ]]; then
    echo "/usr/bin/$1"
  else
    die "$1 not found (try: $SELF install)"
  fi
}

redis_cli() { "$(redis_tool redis-cli)" -h "$HOST" -p "$REDIS_PORT" "$@"; }

# redis-server rewrites its process title to "redis-server 127.0.0.1:PORT": that is the marker.
redis_pid() { live_pid "$REDIS_DIR/redis.pid" "$HOST:$REDIS_PORT"; }

redis_log_tail() {
  local n="${1:-40}"
  if [[ -s "$REDIS_LOG" ]]; then
    printf -- '--- last %s lines of %s\n' "$n" "$REDIS_LOG" >&2
    tail -n "$n" "$REDIS_LOG" >&2
  fi
}

redis_prepare() {
  ensure_state_dir
  local user; user="$(redis_user)"
  own_dir "$user" "$REDIS_DIR"
  # Written at every start (the port may change between runs). Throttle counts only: no
  # persistence, and never evict a key before it expires.
  cat >"$REDIS_DIR/redis.conf" <<CONF
# scripts/services.sh: a throwaway test server.
bind $HOST
port $REDIS_PORT
protected-mode yes
daemonize yes
pidfile $REDIS_DIR/redis.pid
logfile $REDIS_LOG
dir $REDIS_DIR
save ""
appendonly no
maxmemory-policy noeviction
CONF
  [[ $EUID -ne 0 ]] || chown "$user": "$REDIS_DIR/redis.conf"
}

wait_redis() {
  local deadline=$((SECONDS + WAIT_SECONDS))
  until [[ "$(redis_cli ping 2>/dev/null)" == PONG ]]; do
    if ((SECONDS >= deadline)); then
      redis_log_tail 60
      die "Redis did not answer PING on $HOST:$REDIS_PORT within ${WAIT_SECONDS}s (state $REDIS_DIR)"
    fi
    sleep 0.2
  done
}

start_redis() {
  if redis_pid >/dev/null; then
    wait_redis
    log "Redis already running (redis://$HOST:$REDIS_PORT/0)"
    return 0
  fi
  if port_open "$REDIS_PORT"; then
    die "port $HOST:$REDIS_PORT is taken by another process (a system Redis?). Stop it, or set KAIROS_REDIS_PORT."
  fi
  redis_prepare
  rm -f "$REDIS_DIR/redis.pid"
  log "starting Redis (redis://$HOST:$REDIS_PORT/0, state $REDIS_DIR)"
  local started=$SECONDS server
  server="$(redis_tool redis-server)"
  if ! (cd "$REDIS_DIR" && as_user "$(redis_user)" "$server" "$REDIS_DIR/redis.conf"); then
    redis_log_tail 60
    die "redis-server failed to start"
  fi
  wait_redis
  log "Redis ready in $((SECONDS - started))s"
}

stop_redis() {
  local pid
  if ! pid="$(redis_pid)"; then
    log "Redis not running"
    return 0
  fi
  log "stopping Redis (pid $pid)"
  redis_cli shutdown nosave >/dev/null 2>&1 || kill -TERM "$pid" 2>/dev/null || true
  if ! wait_gone "$pid" 20; then
    log "Redis still alive; sending SIGKILL to $pid"
    kill -KILL "$pid" 2>/dev/null || true
    wait_gone "$pid" 10 || die "could not stop Redis pid $pid"
  fi
  log "Redis stopped"
}

# ---------------------------------------------------------------- install

install_packages() {
  local need=()
  if ! command -v rabbitmq-server >/dev/null 2>&1 && [[ ! -x /usr/sbin/rabbitmq-server ]]; then
    need+=(rabbitmq-server)
  fi
  if ! pg_bin_dir >/dev/null; then
    need+=(postgresql)
  elif ! command -v psql >/dev/null 2>&1 && [[ ! -x "$(pg_bin_dir)/psql" ]]; then
    need+=(postgresql-client)
  fi
  if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
    need+=(redis-server)
  fi
  command -v chromium >/dev/null 2>&1 || need+=(chromium)
  command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
  if ((${#need[@]} == 0)); then
    log "install: rabbitmq-server, postgresql, redis-server, chromium and chromium-driver are present; skipping apt"
    return 0
  fi
  local sudo=()
  if [[ $EUID -ne 0 ]]; then
    command -v sudo >/dev/null 2>&1 || die "install needs root (or sudo) for apt-get"
    sudo=(sudo)
  fi
  log "install: apt-get install ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  "${sudo[@]}" apt-get update -qq
  "${sudo[@]}" apt-get install -y -q --no-install-recommends \
    -o DPkg::Lock::Timeout=300 -o Dpkg::Use-Pty=0 "${need[@]}"
  pg_bin_dir >/dev/null || die "install: initdb still not found after installing postgresql"
}

# ---------------------------------------------------------------- commands

print_env() {
  printf 'export DATABASE_URL=%s\n' "postgres://kairos@$HOST:$PG_PORT/kairos"
  printf 'export AMQP_URL=%s\n' "amqp://guest:guest@$HOST:$AMQP_PORT/%2F"
  printf 'export REDIS_URL=%s\n' "redis://$HOST:$REDIS_PORT/0"
  printf 'export KAIROS_SERVICES_SCRIPT=%q\n' "$SELF"
  printf 'export KAIROS_SERVICES_DIR=%q\n' "$STATE_DIR"
  printf 'export KAIROS_AMQP_PORT=%s\n' "$AMQP_PORT"
  printf 'export KAIROS_PG_PORT=%s\n' "$PG_PORT"
  printf 'export KAIROS_REDIS_PORT=%s\n' "$REDIS_PORT"
  printf 'export KAIROS_RABBITMQ_NODENAME=%q\n' "$RABBIT_NODE"
}

status() {
  local rc=0 pid
  if pid="$(rabbit_pid)"; then
    echo "rabbitmq: running (pid $pid, node $RABBIT_NODE, amqp://$HOST:$AMQP_PORT)"
  else
    echo "rabbitmq: stopped"; rc=3
  fi
  if pid="$(pg_pid)"; then
    echo "postgres: running (pid $pid, postgres://kairos@$HOST:$PG_PORT/kairos)"
  else
    echo "postgres: stopped"; rc=3
  fi
  if pid="$(redis_pid)"; then
    echo "redis: running (pid $pid, redis://$HOST:$REDIS_PORT/0)"
  else
    echo "redis: stopped"; rc=3
  fi
  return "$rc"
}

usage() {
  sed -n '2,/^set -euo/p' "$SELF" | sed -e '$d' -e 's/^# \{0,1\}//'
}

cmd="${1:-}"
[[ $# -gt 0 ]] && shift
case "$cmd" in
  install) install_packages ;;
  start) start_postgres; start_rabbitmq; start_redis ;;
  stop) stop_redis; stop_rabbitmq; stop_epmd; stop_postgres ;;
  restart) "$SELF" stop; "$SELF" start ;;
  start-rabbitmq) start_rabbitmq ;;
  stop-rabbitmq) stop_rabbitmq ;;
  restart-rabbitmq) stop_rabbitmq; start_rabbitmq ;;
  kill-rabbitmq) kill_rabbitmq ;;
  start-postgres) start_postgres ;;
  stop-postgres) stop_postgres ;;
  start-redis) start_redis ;;
  stop-redis) stop_redis ;;
  env) print_env ;;
  status) status ;;
  logs) rabbit_log_tail "${1:-40}"; pg_log_tail "${1:-40}"; redis_log_tail "${1:-40}" ;;
  rabbitmqctl) rabbit rabbitmqctl "$@" ;;
  redis-cli) redis_cli "$@" ;;
  psql) exec "$(pg_tool psql)" -X -h "$HOST" -p "$PG_PORT" -U kairos -d kairos "$@" ;;
  -h | --help | help) usage ;;
  *) usage >&2; exit 2 ;;
esac
