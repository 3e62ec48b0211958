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

port=18300
# Total instructions of one server run; the load is "$@" (run with the port as $1).
measure() { # server route load... -> "instructions requests"
    local name=$1 route=$2; shift 2
    port=$((port + 1))
    local file=$out/$name-$port.cg
    case $name in
        nucleon) NUCLEON_HTTP__ACCESS_LOG=false valgrind --tool=callgrind --callgrind-out-file="$file" \
            "$bin/nucleon-server" --port $port -j 1 >/dev/null 2>"$out/err" & ;;
        *) valgrind --tool=callgrind --callgrind-out-file="$file" \
            "$bin/$name-server" --port $port -j 1 >/dev/null 2>"$out/err" & ;;
    esac
    local pid=$!
    for _ in $(seq 150); do
        curl -sf -o /dev/null "http://127.0.0.1:$port$route" && break
        sleep 0.2
    done
    local requests
    requests=$("$@" "$port" "$route")
    kill -INT $pid; sleep 1; kill -TERM $pid 2>/dev/null || true
    wait $pid 2>/dev/null || true
    local total
    total=$(cat "$file"* | awk '/^summary:/ {s += $2} END {print s}')
    echo "$total $requests"
}
load() { wrk -t1 -c"$CONNS" -d"$DURATION" "http://127.0.0.1:$1$2" | awk '/requests in/ {print $1}'; }
idle() { sleep "${DURATION%s}"; echo 1; }

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
