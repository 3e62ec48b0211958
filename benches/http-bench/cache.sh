#!/usr/bin/env bash
# http-bench/cache.sh: what each request costs the CPU's caches and branch predictor,
# simulated by valgrind's cachegrind (repeatable, like instructions.sh).
#
#   benches/http-bench/cache.sh
#
# For each server and route: the server runs under cachegrind (cache and branch
# simulation, with the caches of the machine it runs on) while wrk sends it requests
# for DURATION over CONNS connections, then again for the same time with one request;
# the difference over the requests completed is the figure per request:
#   Ir    instructions             I1mr  level-1 instruction cache misses
#   D1mr  level-1 data read misses D1mw  level-1 data write misses
#   Bcm   mispredicted conditional branches
# I1mr is the one to watch: a request path whose code does not fit the level-1
# instruction cache misses on every request, whatever its instruction count
# (hotlines.py tells which functions its hot code lines come from).
#
# Knobs: SERVERS="hyper nucleon axum actix" ROUTES="/json /countries/gb/"
#        DURATION=8s CONNS=256 SKIP_BUILD=1
set -euo pipefail

SERVERS=${SERVERS:-"hyper nucleon axum actix"}
ROUTES=${ROUTES:-"/json /countries/gb/"}
DURATION=${DURATION:-8s}
CONNS=${CONNS:-256}

here=$(cd "$(dirname "$0")" && pwd)
benches=$(dirname "$here")
bin=$benches/target/release
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

command -v valgrind >/dev/null || { echo "valgrind is required" >&2; exit 1; }
if ! command -v wrk >/dev/null; then
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
    $sudo apt-get update -qq && $sudo apt-get install -y -qq wrk >/dev/null
fi
if [ -z "${SKIP_BUILD:-}" ]; then
    (cd "$benches" && cargo build --release -p http-bench --quiet)
fi
ulimit -n 65536 2>/dev/null || true

EVENTS="Ir I1mr D1mr D1mw Bcm"
port=18400
# Every event's total over one server run; the load is "$@" (run with the port as $1).
measure() { # server route load... -> "requests Ir I1mr ..."
    local name=$1 route=$2; shift 2
    port=$((port + 1))
    local file=$out/$name-$port.cg
    NUCLEON_HTTP__ACCESS_LOG=false valgrind --tool=cachegrind --cache-sim=yes \
        --branch-sim=yes --cachegrind-out-file="$file" \
        "$bin/$name-server" --port $port -j 1 >/dev/null 2>"$out/err" &
    local pid=$!
    for _ in $(seq 150); do
        curl -sf -o /dev/null "http://127.0.0.1:$port$route" && break
        sleep 0.2
    done
    local requests
    requests=$("$@" "$port" "$route")
    kill -INT $pid; sleep 1; kill -TERM $pid 2>/dev/null || true
    wait $pid 2>/dev/null || true
    # "events: Ir I1mr ..." then "summary: n n ...": pick EVENTS by name.
    awk -v want="$EVENTS" -v requests="$requests" '
        /^events:/ { for (i = 2; i <= NF; i++) col[$i] = i }
        /^summary:/ { line = requests; n = split(want, w, " ")
                      for (i = 1; i <= n; i++) line = line " " $(col[w[i]])
                      print line }' "$file"
}
load() { wrk -t1 -c"$CONNS" -d"$DURATION" "http://127.0.0.1:$1$2" | awk '/requests in/ {print $1}'; }
idle() { sleep "${DURATION%s}"; echo 1; }

printf '| server | route | requests |'; for e in $EVENTS; do printf ' %s/request |' "$e"; done; echo
printf '|---|---|---:|'; for _ in $EVENTS; do printf -- '---:|'; done; echo
for route in $ROUTES; do
    for s in $SERVERS; do
        read -r -a busy < <(measure "$s" "$route" load)
        read -r -a quiet < <(measure "$s" "$route" idle)
        requests=${busy[0]}
        printf '| %s | `%s` | %d |' "$s" "$route" "$requests"
        for i in $(seq 1 $(($(echo "$EVENTS" | wc -w)))); do
            python3 -c 'import sys; r, b, q = map(float, sys.argv[1:]); print(f" {(b - q) / r:,.1f} |", end="")' \
                "$requests" "${busy[$i]}" "${quiet[$i]}"
        done
        echo
    done
done
