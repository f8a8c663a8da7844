#!/usr/bin/env bash
# Install and start, each on its own, what the tests and the README's walkthrough talk to:
#
#   bash scripts/services.sh                  every service below (`make services`, `make test`)
#   bash scripts/services.sh mosquitto        just one (postgres, mosquitto, chromium, exfat, node, ray)
#   bash scripts/services.sh stop [SERVICE]   stop what this script started (by its PID file or
#                                             its own cluster), nothing else
#
# It touches only what it starts: its own PostgreSQL cluster (`inspection`, own data directory,
# port 55432, TLS on that cluster only), its own Mosquitto and Ray head (PID files under
# /tmp/inspection-services). A port already taken by a process it did not start is reported and
# left alone. Each service installs only its own Debian packages (needs root for apt-get).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
STATE=/tmp/inspection-services
mkdir -p "$STATE"

PG_PORT=55432
PG_CLUSTER=inspection
PG_USER=inspection
PG_PASSWORD=inspection
PG_DB=inspection_test
PG_TLS=/tmp/inspection-postgres-tls
MQTT_PORT=8883
RAY_PORT=6390

say() { echo "services: $*"; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
ours() {  # ours NAME: the PID file of NAME names a live process
  local pid
  pid=$(cat "$STATE/$1.pid" 2>/dev/null) && [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null
}
apt_install() {  # apt_install COMMAND PACKAGE...: install the packages unless COMMAND exists
  local command=$1
  shift
  command -v "$command" >/dev/null 2>&1 || [ -x "$command" ] && return 0
  if [ "$(id -u)" != "0" ]; then
    say "not root, cannot apt-get install $*; the tests that need it will skip" >&2
    return 1
  fi
  say "installing $* (apt-get)"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}
detached() {  # detached COMMAND...: exec COMMAND without this shell's descriptors above 2 (call
  # it in a subshell or with &). A daemon started here must not keep a lock its caller holds: a
  # PostgreSQL started inside `flock` held the lock for as long as it ran.
  local path
  for path in /proc/"$BASHPID"/fd/*; do
    [ "${path##*/}" -gt 2 ] && eval "exec ${path##*/}>&-"
  done
  exec "$@"
}
as_postgres() { su postgres -c "$1"; }
pg_psql() { as_postgres "psql -p $PG_PORT -qtA $1"; }

# PostgreSQL (store tests, the stations' TLS link): this script's own cluster, never another.
start_postgres() {
  apt_install pg_createcluster postgresql || return 0
  local version
  version=$(ls /usr/lib/postgresql | sort -V | tail -1)
  if ! pg_lsclusters -h | awk '{print $1" "$2}' | grep -qx "$version $PG_CLUSTER"; then
    if port_open "$PG_PORT"; then
      say "port $PG_PORT is taken by a process this script did not start: no PostgreSQL" >&2
      return 1
    fi
    pg_createcluster --port "$PG_PORT" "$version" "$PG_CLUSTER" >/dev/null
  fi
  (detached pg_ctlcluster "$version" "$PG_CLUSTER" start) 2>/dev/null || true
  for _ in $(seq 1 30); do pg_psql "-c 'select 1'" >/dev/null 2>&1 && break; sleep 1; done
  pg_psql "-c \"select 1 from pg_roles where rolname='$PG_USER'\"" | grep -q 1 \
    || pg_psql "-c \"create role $PG_USER login password '$PG_PASSWORD' createdb\""
  pg_psql "-c 'alter role $PG_USER createrole'"  # station roles (tests/store/test_forward.py)
  pg_psql "-c 'grant pg_signal_backend to $PG_USER'"  # tests drop their databases WITH (FORCE)
  pg_psql "-c \"select 1 from pg_database where datname='$PG_DB'\"" | grep -q 1 \
    || as_postgres "createdb -p $PG_PORT -O $PG_USER $PG_DB"
  # TLS for the stations' link (verify-full against the site CA): a server certificate for
  # 127.0.0.1/localhost made by the project's own PKI code (inspection.line.pki), on this
  # cluster only (its own postgresql.auto.conf).
  if [ -x "$ROOT/.venv/bin/python" ]; then
    local data
    data=$(pg_psql "-c 'show data_directory'")
    (cd "$ROOT" && .venv/bin/python -c "from inspection.line.pki import LinePki; \
LinePki('$PG_TLS').identity('postgres', 'urn:inspection:central-postgres', server=True)")
    if ! cmp -s "$PG_TLS/postgres.pem" "$data/inspection-server.crt"; then
      install -o postgres -g postgres -m 0600 "$PG_TLS/postgres.pem" "$data/inspection-server.crt"
      install -o postgres -g postgres -m 0600 "$PG_TLS/postgres-key.pem" "$data/inspection-server.key"
    fi
    pg_psql "-c \"alter system set ssl = on\" -c \"alter system set ssl_cert_file = \
'inspection-server.crt'\" -c \"alter system set ssl_key_file = 'inspection-server.key'\" \
-c 'select pg_reload_conf()'" >/dev/null
    chmod 0755 "$PG_TLS"; chmod 0644 "$PG_TLS/ca.pem"  # the CA certificate is public
    say "PostgreSQL TLS on (cluster $version/$PG_CLUSTER only): sslrootcert=$PG_TLS/ca.pem"
  fi
  say "PostgreSQL ready at postgresql+psycopg://$PG_USER:***@127.0.0.1:$PG_PORT/$PG_DB"
}
stop_postgres() {
  local version
  version=$(ls /usr/lib/postgresql 2>/dev/null | sort -V | tail -1)
  [ -n "$version" ] && pg_ctlcluster "$version" "$PG_CLUSTER" stop 2>/dev/null || true
}

# Mosquitto: the binary (the walkthrough's PLC trial and the tests start private brokers from
# it) and a development broker for configs/line.yaml on 127.0.0.1:8883: TLS only, no anonymous
# clients, a password per user and per-station ACLs, written by the project's own code
# (certificates and passwords in its security.pki_dir, var/line-pki: nothing secret committed).
start_mosquitto() {
  apt_install /usr/sbin/mosquitto mosquitto || return 0
  if ! ours mosquitto && ! port_open "$MQTT_PORT" && [ -x "$ROOT/.venv/bin/python" ]; then
    local conf user
    user=$(id -un mosquitto 2>/dev/null || id -un)
    conf=$(cd "$ROOT" && .venv/bin/python -m inspection.line.mosquitto --config configs/line.yaml \
      --port "$MQTT_PORT" --dir /tmp/inspection-mosquitto --user "$user")
    detached nohup /usr/sbin/mosquitto -c "$conf" >"$STATE/mosquitto.log" 2>&1 &
    echo $! >"$STATE/mosquitto.pid"
    for _ in $(seq 1 20); do port_open "$MQTT_PORT" && break; sleep 0.25; done
  fi
  if ours mosquitto; then
    say "Mosquitto ready at mqtts://127.0.0.1:$MQTT_PORT (TLS, passwords, per-station ACLs)"
  elif port_open "$MQTT_PORT"; then
    say "port $MQTT_PORT is another process's, left alone; Mosquitto installed" >&2
  else
    say "Mosquitto installed; no broker on $MQTT_PORT (make install first)" >&2
  fi
}

# Headless Chromium + chromedriver for the dashboard's browser tests.
start_chromium() {
  apt_install chromium chromium || return 0
  apt_install chromedriver chromium-driver || return 0
  say "Chromium and chromedriver installed"
}

# exFAT tools: a loop file formatted and mounted with FUSE, for the blob store's test of storage
# without hard links (tests/exfat.py). Without them (or without /dev/fuse) that test skips.
start_exfat() {
  apt_install mkfs.exfat exfatprogs || return 0
  apt_install mount.exfat-fuse exfat-fuse || return 0
  say "exFAT tools installed"
}
stop_exfat() { :; }

# node-opcua for the OPC 40100 interoperability test, pinned by tests/line/node/package-lock.json
# into tests/line/node/node_modules (git-ignored). Without node/npm that test skips.
start_node() {
  local dir="$ROOT/tests/line/node"
  if ! command -v npm >/dev/null 2>&1; then
    say "no node/npm; the node-opcua interoperability test will skip" >&2
  elif [ -d "$dir/node_modules/node-opcua" ] \
    || npm ci --prefix "$dir" --no-audit --no-fund --loglevel=error >/dev/null; then
    say "node-opcua ready in tests/line/node/node_modules"
  else
    say "npm ci failed in tests/line/node; the interoperability test retries it" >&2
  fi
}

# A Ray head for the retraining fleet (`inspection retrain --all --ray 127.0.0.1:6390`), with
# token authentication (Ray's default token file, this user's only), run
# in the foreground (--block) under a PID this script records: stopping it is killing that PID.
# A head this script started from another checkout (another environment) is replaced; a head
# it did not start is left alone.
start_ray() {
  local ray="$ROOT/.venv/bin/ray" token="$HOME/.ray/auth_token" owner
  if [ ! -x "$ray" ]; then
    say "no Ray head (pip install -e '.[plant]'); the Ray fleet test will skip" >&2
    return 0
  fi
  if [ ! -s "$token" ]; then
    (umask 077; mkdir -p "$(dirname "$token")"; "$ray" get-auth-token --generate >/dev/null)
  fi
  chmod 600 "$token"
  owner="$ray $(stat -c '%i %Y' "$ray")"
  if ours ray && [ "$(cat "$STATE/ray.owner" 2>/dev/null)" != "$owner" ]; then
    say "the Ray head this script started is another environment's; restarting it"
    stop_ray
  fi
  if ! ours ray; then
    if port_open "$RAY_PORT"; then
      say "port $RAY_PORT is taken by a process this script did not start: no Ray head" >&2
      return 1
    fi
    RAY_AUTH_MODE=token detached nohup "$ray" start --head --block --node-ip-address=127.0.0.1 \
      --port="$RAY_PORT" --num-cpus=2 --include-dashboard=false --disable-usage-stats \
      >"$STATE/ray.log" 2>&1 &
    echo $! >"$STATE/ray.pid"
    echo "$owner" >"$STATE/ray.owner"
    for _ in $(seq 1 120); do port_open "$RAY_PORT" && break; sleep 0.5; done
  fi
  say "Ray head ready at 127.0.0.1:$RAY_PORT (PID $(cat "$STATE/ray.pid"))"
}
stop_pid() {  # stop_pid NAME: end the process this script recorded for NAME, and wait for it
  if ours "$1"; then
    local pid
    pid=$(cat "$STATE/$1.pid")
    kill "$pid"
    for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  fi
  rm -f "$STATE/$1.pid"
}
stop_ray() { stop_pid ray; }
stop_mosquitto() { stop_pid mosquitto; }
stop_chromium() { :; }
stop_node() { :; }

SERVICES=(postgres mosquitto chromium exfat node ray)
action=start
if [ "${1:-}" = "stop" ]; then
  action=stop
  shift
fi
selected=("$@")
[ ${#selected[@]} -gt 0 ] || selected=("${SERVICES[@]}")
status=0
for service in "${selected[@]}"; do
  case " ${SERVICES[*]} " in
    *" $service "*) "${action}_$service" || status=1 ;;
    *) echo "services: unknown service '$service' (one of: ${SERVICES[*]})" >&2; exit 2 ;;
  esac
done
exit $status
