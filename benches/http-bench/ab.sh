#!/usr/bin/env bash
# http-bench/ab.sh: CPU time per request of two or more server binaries (two builds of
# nucleon, say), side by side, in interleaved rounds.
#
#   benches/http-bench/ab.sh ROUTE NAME=COMMAND [NAME=COMMAND...]
#
#   B=benches/target/release
#   benches/http-bench/ab.sh /json "hyper=$B/hyper-server --port 18731 -j 1" \
#       "new=env NUCLEON_HTTP__ACCESS_LOG=false $B/nucleon-server --port 18732 -j 1" \
#       "old=env NUCLEON_HTTP__ACCESS_LOG=false /tmp/old/nucleon-server --port 18733 -j 1"
#
# Each COMMAND must serve ROUTE on the port written after its `--port`. Every server
# runs pinned to core 0, wrk to core 1; after a 2 s warm-up each, ROUNDS rounds go
# through every server in turn (DURATION each), and CPU time per request is the
# server's utime+stime (/proc) over the rounds divided by the requests wrk completed,
# with the kernel's share, and as a ratio to the first server.
#
# Knobs: ROUNDS=8 DURATION=4s CONNS=256
set -euo pipefail

ROUNDS=${ROUNDS:-8}
DURATION=${DURATION:-4s}
CONNS=${CONNS:-256}
[ $# -ge 3 ] || { sed -n '2,16p' "$0" >&2; exit 2; }
route=$1; shift

names=(); declare -A PID PORT
cleanup() { for n in "${names[@]}"; do kill "${PID[$n]}" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
for spec in "$@"; do
    name=${spec%%=*}; command=${spec#*=}
    port=$(echo "$command" | sed -n 's/.*--port[ =]\([0-9]*\).*/\1/p')
    [ -n "$port" ] || { echo "$name: no --port in its command" >&2; exit 2; }
    # shellcheck disable=SC2086 # the command is split into words on purpose
    taskset -c 0 $command >/dev/null 2>&1 &
    names+=("$name"); PID[$name]=$!; PORT[$name]=$port
done
for n in "${names[@]}"; do
    for _ in $(seq 100); do curl -sf -o /dev/null "http://127.0.0.1:${PORT[$n]}$route" && break; sleep 0.1; done
    taskset -c 1 wrk -t1 -c"$CONNS" -d2s "http://127.0.0.1:${PORT[$n]}$route" >/dev/null
done

ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{print $12 + $13, $13}'; } # total, kernel
declare -A TOTAL KERNEL REQUESTS
for n in "${names[@]}"; do TOTAL[$n]=0; KERNEL[$n]=0; REQUESTS[$n]=0; done
for round in $(seq "$ROUNDS"); do
    for n in "${names[@]}"; do
        read -r t0 k0 < <(ticks "${PID[$n]}")
        requests=$(taskset -c 1 wrk -t1 -c"$CONNS" -d"$DURATION" "http://127.0.0.1:${PORT[$n]}$route" |
            awk '/requests in/ {print $1}')
        read -r t1 k1 < <(ticks "${PID[$n]}")
        TOTAL[$n]=$((TOTAL[$n] + t1 - t0)); KERNEL[$n]=$((KERNEL[$n] + k1 - k0))
        REQUESTS[$n]=$((REQUESTS[$n] + requests))
        echo "round $round $n: $requests requests, $((t1 - t0)) ticks" >&2
    done
done

hz=$(getconf CLK_TCK)
first=""
printf '| server | requests | CPU µs/request | kernel | ×%s |\n|---|---:|---:|---:|---:|\n' "${names[0]}"
for n in "${names[@]}"; do
    python3 - "$n" "${TOTAL[$n]}" "${KERNEL[$n]}" "${REQUESTS[$n]}" "$hz" "${first:-}" <<'EOF'
import sys
name, total, kernel, requests, hz = sys.argv[1], *map(float, sys.argv[2:6])
first = float(sys.argv[6]) if sys.argv[6] else None
us = total / hz * 1e6 / requests
print(f"| {name} | {requests:,.0f} | {us:.3f} | {kernel / total:.0%} | {us / (first or us):.3f}× |")
EOF
    [ -n "$first" ] || first=$(python3 -c "print(${TOTAL[$n]} / $hz * 1e6 / ${REQUESTS[$n]})")
done
