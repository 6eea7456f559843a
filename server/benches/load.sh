#!/usr/bin/env bash
# The DM load benchmark of server/benches/LOAD.md: one release server on
# loopback with a fresh SQLite data directory, a fleet of N simulated
# devices imported and enrolled, an operator's API token, then
# `handover sim bench` with the Get and Replace queued through the API
# before every session.
#
#   server/benches/load.sh BIN N DURATION WORKDIR [server wrapper...]
#
# With a wrapper (e.g. `valgrind --tool=callgrind`), the server runs under
# it for the bench only (set-up and enrolment run without it). SIM_BIN=path
# runs the simulator from another build than the server (e.g. an older
# server against this simulator). API_CONCURRENCY=n sets the API requests
# the bench keeps in flight (64 by default). BENCH_ARGS adds arguments to
# `sim bench` (e.g. --canned-in-process).
set -euo pipefail
B=$1 N=$2 D=$3 W=$4
S=${SIM_BIN:-$B}
shift 4
rm -rf "$W" && mkdir -p "$W"
serve() {
  # Ports below the ephemeral range (32768 and up), so no client of an
  # earlier run holds them; one that is taken all the same means another
  # pair is tried.
  for _ in 1 2 3 4 5; do
    DM=$((20000 + RANDOM % 12000)) PORTAL=$((DM + 1))
    local from=$(($(wc -c <"$W/server.log" 2>/dev/null || echo 0) + 1))
    "$@" "$B" --data-dir "$W/data" serve --dm-addr 127.0.0.1:$DM \
      --portal-addr 127.0.0.1:$PORTAL --peer-addr 127.0.0.1:0 >>"$W/server.log" 2>&1 &
    echo $! >"$W/server.pid"
    for _ in $(seq 600); do
      curl -s -o /dev/null "http://127.0.0.1:$PORTAL/healthz" && return 0
      kill -0 "$(cat "$W/server.pid")" 2>/dev/null || break
      sleep 0.2
    done
    tail -c +"$from" "$W/server.log" | grep -q "Address already in use" || break
  done
  echo "server did not start" >&2
  exit 1
}
stop() { kill "$(cat "$W/server.pid")"; wait "$(cat "$W/server.pid")" 2>/dev/null || true; }
rss() { echo "server VmRSS $1: $(awk '/VmRSS/ {print $2}' /proc/"$(cat "$W/server.pid")"/status) kB"; }
serve
rss "idle after start"
# The fleet: created, its devices.csv imported, enrolled (DevDetail reads).
"$B" sim --devices "$N" --server "http://127.0.0.1:$DM/dm" --state "$W/sim" 2>"$W/sim-create.log" &
SIM=$!
until grep -q "devices, state in" "$W/sim-create.log"; do sleep 0.2; done
kill $SIM; wait $SIM 2>/dev/null || true
"$B" --data-dir "$W/data" admin devices import "$W/sim/devices.csv"
echo bench-password | "$B" --data-dir "$W/data" admin user create bench --role operator --password-stdin >/dev/null
TOKEN=$("$B" --data-dir "$W/data" admin token create --user bench --label bench | grep -o 'hov_[A-Za-z0-9_-]*')
"$B" sim --server "http://127.0.0.1:$DM/dm" --state "$W/sim" --once --concurrency 256
rss "after enrolment"
if [ $# -gt 0 ]; then
  stop
  serve "$@"
fi
${BEFORE_BENCH:+eval "$BEFORE_BENCH $(cat "$W/server.pid")"}
uptime
HANDOVER_API_TOKEN=$TOKEN "$S" sim bench --server "http://127.0.0.1:$DM/dm" \
  --api "http://127.0.0.1:$PORTAL" --state "$W/sim" --server-pid "$(cat "$W/server.pid")" \
  --duration "$D" --devices "$N" ${API_CONCURRENCY:+--api-concurrency $API_CONCURRENCY} ${BENCH_ARGS:-}
uptime
stop
