#!/usr/bin/env bash
# Install and start what the test suite talks to: a PostgreSQL server (store tests) and
# headless Chromium + chromedriver (dashboard browser test), and Mosquitto on 127.0.0.1:8883
# (line-station MQTT sinks and handshake, TLS with passwords and ACLs). Idempotent; needs root for apt.
set -euo pipefail

PG_USER=inspection
PG_PASSWORD=inspection
PG_DB=inspection_test

need=()
command -v pg_ctlcluster >/dev/null 2>&1 || need+=(postgresql)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
[ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != "0" ]; then
    echo "services: not root, cannot apt-get install ${need[*]}; dependent tests will skip" >&2
    exit 0
  fi
  echo "services: installing ${need[*]} (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# Start the first PostgreSQL cluster found (Debian layout) and create the test role and database.
cluster=$(pg_lsclusters -h 2>/dev/null | awk 'NR==1 {print $1" "$2}')
if [ -z "$cluster" ]; then
  version=$(ls /usr/lib/postgresql | sort -V | tail -1)
  pg_createcluster "$version" main >/dev/null
  cluster="$version main"
fi
# shellcheck disable=SC2086
pg_ctlcluster $cluster start 2>/dev/null || true
for _ in $(seq 1 30); do
  su postgres -c "psql -qtAc 'select 1'" >/dev/null 2>&1 && break
  sleep 1
done
su postgres -c "psql -qtAc \"select 1 from pg_roles where rolname='$PG_USER'\"" | grep -q 1 \
  || su postgres -c "psql -qc \"create role $PG_USER login password '$PG_PASSWORD' createdb\""
su postgres -c "psql -qc 'alter role $PG_USER createrole'"  # station roles (tests/store/test_forward.py)
su postgres -c "psql -qc 'grant pg_signal_backend to $PG_USER'"  # tests drop their databases WITH (FORCE), whoever is still connected
su postgres -c "psql -qtAc \"select 1 from pg_database where datname='$PG_DB'\"" | grep -q 1 \
  || su postgres -c "createdb -O $PG_USER $PG_DB"
# TLS for the stations' link (verify-full against the site CA): a CA and a server certificate
# for 127.0.0.1/localhost made by the project's own PKI code (inspection.line.pki) in PG_TLS
# (nothing committed), copied into the cluster's data directory and switched on by a reload.
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PG_TLS=/tmp/inspection-postgres-tls
pg_data=$(su postgres -c "psql -qtAc 'show data_directory'")
if [ -x "$ROOT/.venv/bin/python" ]; then
  (cd "$ROOT" && .venv/bin/python -c "from inspection.line.pki import LinePki; \
LinePki('$PG_TLS').identity('postgres', 'urn:inspection:central-postgres', server=True)")
  if ! cmp -s "$PG_TLS/postgres.pem" "$pg_data/inspection-server.crt"; then
    install -o postgres -g postgres -m 0600 "$PG_TLS/postgres.pem" "$pg_data/inspection-server.crt"
    install -o postgres -g postgres -m 0600 "$PG_TLS/postgres-key.pem" "$pg_data/inspection-server.key"
  fi
  su postgres -c "psql -qc \"alter system set ssl = on\" \
    -c \"alter system set ssl_cert_file = 'inspection-server.crt'\" \
    -c \"alter system set ssl_key_file = 'inspection-server.key'\" -c 'select pg_reload_conf()'" >/dev/null
  chmod 0755 "$PG_TLS"; chmod 0644 "$PG_TLS/ca.pem"  # the CA certificate is public; its key stays 0600
  echo "services: PostgreSQL TLS on; stations verify it with sslmode=verify-full sslrootcert=$PG_TLS/ca.pem"
fi
echo "services: PostgreSQL ready at postgresql+psycopg://$PG_USER:***@127.0.0.1:5432/$PG_DB"

# Mosquitto for the line station (tests start their own private brokers from the same binary):
# TLS only on 127.0.0.1:8883, no anonymous clients, a password per user and per-station ACLs,
# written by the project's own code from configs/line.yaml (certificates and passwords are
# made on first use in its security.pki_dir, var/line-pki: nothing secret is committed).
# set_tcp_nodelay: QoS 1 answers leave at once (Nagle's algorithm otherwise delays them).
# persistence false: a development broker; a consumer that reconnects after a broker restart
# misses what was queued for it (docs/line-integration.md, "Results and delivery guarantees").
if [ -x "$ROOT/.venv/bin/python" ] && ! (exec 3<>/dev/tcp/127.0.0.1/8883) 2>/dev/null; then
  conf_dir=/tmp/inspection-mosquitto
  mosquitto_user=$(id -un mosquitto 2>/dev/null || id -un)
  conf=$(cd "$ROOT" && .venv/bin/python -m inspection.line.mosquitto --config configs/line.yaml \
    --port 8883 --dir "$conf_dir" --user "$mosquitto_user")
  /usr/sbin/mosquitto -d -c "$conf"
  for _ in $(seq 1 20); do (exec 3<>/dev/tcp/127.0.0.1/8883) 2>/dev/null && break; sleep 0.25; done
fi
if (exec 3<>/dev/tcp/127.0.0.1/8883) 2>/dev/null; then
  echo "services: Mosquitto ready at mqtts://127.0.0.1:8883 (TLS, passwords, per-station ACLs)"
else
  echo "services: no Mosquitto on 8883 (make install first); the line station cannot reach it" >&2
fi

# node-opcua for the OPC 40100 interoperability test (tests/line/test_machine_vision.py): an
# OPC UA client nobody here wrote, pinned by tests/line/node/package-lock.json, installed into
# tests/line/node/node_modules (git-ignored). Without node/npm that test skips.
NODE_DIR="$ROOT/tests/line/node"
if command -v npm >/dev/null 2>&1; then
  if [ -d "$NODE_DIR/node_modules/node-opcua" ] \
    || npm ci --prefix "$NODE_DIR" --no-audit --no-fund --loglevel=error >/dev/null; then
    echo "services: node-opcua ready in tests/line/node/node_modules"
  else
    echo "services: npm ci failed in tests/line/node; the interoperability test retries it" >&2
  fi
else
  echo "services: no node/npm; the node-opcua interoperability test will skip" >&2
fi

# Ray head for the retraining fleet (`inspection retrain --all --ray 127.0.0.1:6390`) and its
# test. Two CPUs are what this machine has; a plant's head advertises its own.
# A head started from another checkout's environment (another Python build) refuses this
# one's drivers with "Version mismatch", so a head that is not this checkout's is restarted.
# The owner is the ray script's path *and* its inode and mtime: a checkout deleted and cloned
# again at the same path has a new environment, and the old head's workers would die loading
# the deleted one's libraries.
RAY_BIN="$ROOT/.venv/bin/ray"
RAY_OWNER=/tmp/inspection-ray-head.owner
ray_up() { (exec 3<>/dev/tcp/127.0.0.1/6390) 2>/dev/null; }
# The head runs with token authentication (without it, anyone who reaches its port runs code
# on it): the token is Ray's default file, made here readable by this user only.
RAY_TOKEN="$HOME/.ray/auth_token"
if [ -x "$RAY_BIN" ]; then
  if [ ! -s "$RAY_TOKEN" ]; then
    (umask 077; mkdir -p "$(dirname "$RAY_TOKEN")"; "$RAY_BIN" get-auth-token --generate >/dev/null)
  fi
  chmod 600 "$RAY_TOKEN"
  export RAY_AUTH_MODE=token
  owner="$RAY_BIN $(stat -c '%i %Y' "$RAY_BIN") token"
  if ray_up && [ "$(cat "$RAY_OWNER" 2>/dev/null)" != "$owner" ]; then
    echo "services: the Ray head on 6390 is another environment's; restarting it from $RAY_BIN"
    "$RAY_BIN" stop --force >/dev/null 2>&1 || true
    for _ in $(seq 1 40); do ray_up || break; sleep 0.25; done
    if ray_up; then  # a head whose environment was deleted can outlive `ray stop`
      pkill -9 -f -- "--gcs_server_port=6390" || true
      pkill -9 -f -- "--gcs-address=[^ ]*:6390" || true
      for _ in $(seq 1 40); do ray_up || break; sleep 0.25; done
    fi
  fi
  if ! ray_up; then
    "$RAY_BIN" start --head --node-ip-address=127.0.0.1 --port=6390 --num-cpus=2 \
      --include-dashboard=false --disable-usage-stats >/dev/null
    echo "$owner" > "$RAY_OWNER"
  fi
fi
if (exec 3<>/dev/tcp/127.0.0.1/6390) 2>/dev/null; then
  echo "services: Ray head ready at 127.0.0.1:6390"
else
  echo "services: no Ray head (pip install -e '.[plant]'); the Ray fleet test will skip" >&2
fi
