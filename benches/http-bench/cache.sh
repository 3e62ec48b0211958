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

# shellcheck source=valgrind-common.sh
source "$(dirname "$0")/valgrind-common.sh"

EVENTS="Ir I1mr D1mr D1mw Bcm"
port=18400
# Every event's total over one server run, after the requests its load completed.
measure() { # server route load -> "requests Ir I1mr ..."
    local name=$1 route=$2 load=$3
    port=$((port + 1))
    local file=$out/$name-$port.cg requests
    requests=$(under_valgrind "$name" $port "$route" "$load" \
        --tool=cachegrind --cache-sim=yes --branch-sim=yes --cachegrind-out-file="$file")
    # "events: Ir I1mr ..." then "summary: n n ...": pick EVENTS by name.
    awk -v want="$EVENTS" -v requests="$requests" '
        /^events:/ { for (i = 2; i <= NF; i++) col[$i] = i }
        /^summary:/ { line = requests; n = split(want, w, " ")
                      for (i = 1; i <= n; i++) line = line " " $(col[w[i]])
                      print line }' "$file"
}

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
