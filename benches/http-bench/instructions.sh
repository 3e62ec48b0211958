#!/usr/bin/env bash
# http-bench/instructions.sh: user-space instructions per request, counted by
# valgrind's callgrind (repeatable whatever else the machine does, unlike CPU time).
#
#   benches/http-bench/instructions.sh
#
# For each server and route: the server runs under callgrind while wrk sends it
# requests for DURATION over CONNS connections; then it runs again for the same time
# with one request only (its start-up, its idle threads); the difference divided by
# the requests wrk completed is the figure. Kernel work (the recv/send of every
# request, epoll) is not counted: run.sh's CPU time per request has it.
#
# Knobs: SERVERS="hyper nucleon axum actix" ROUTES="/json /countries/gb/"
#        DURATION=10s CONNS=32 SKIP_BUILD=1
set -euo pipefail

SERVERS=${SERVERS:-"hyper nucleon axum actix"}
ROUTES=${ROUTES:-"/json /countries/gb/"}
DURATION=${DURATION:-10s}
CONNS=${CONNS:-32}

# shellcheck source=valgrind-common.sh
source "$(dirname "$0")/valgrind-common.sh"

port=18300
# Total instructions of one server run, and the requests its load completed.
measure() { # server route load -> "instructions requests"
    local name=$1 route=$2 load=$3
    port=$((port + 1))
    local file=$out/$name-$port.cg requests
    requests=$(under_valgrind "$name" $port "$route" "$load" \
        --tool=callgrind --callgrind-out-file="$file")
    echo "$(cat "$file"* | awk '/^summary:/ {s += $2} END {print s}') $requests"
}

printf '| server | route | requests | instructions/request | ×hyper |\n|---|---|---:|---:|---:|\n'
for route in $ROUTES; do
    base=""
    for s in $SERVERS; do
        read -r busy requests < <(measure "$s" "$route" load)
        read -r quiet _ < <(measure "$s" "$route" idle)
        per=$(( (busy - quiet) / requests ))
        [ -z "$base" ] && base=$per
        printf '| %s | `%s` | %d | %d | %s× |\n' "$s" "$route" "$requests" "$per" \
            "$(python3 -c "print(f'{$per / $base:.2f}')")"
    done
done
