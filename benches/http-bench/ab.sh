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
# with the kernel's share, and as a ratio to the first server; p50 and p99 are the
# medians over the rounds of wrk's latency percentiles, also as ratios.
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
# wrk's "  99%    1.23ms", in microseconds.
micros() { awk -v p="$1" '$1 == p { v = $2; u = 1
    if (v ~ /ms$/) u = 1000; else if (v ~ /us$/) u = 1; else if (v ~ /s$/) u = 1000000
    sub(/[mu]?s$/, "", v); print v * u }'; }
rounds=$(mktemp); trap 'cleanup; rm -f "$rounds"' EXIT
for round in $(seq "$ROUNDS"); do
    for n in "${names[@]}"; do
        read -r t0 k0 < <(ticks "${PID[$n]}")
        out=$(taskset -c 1 wrk -t1 -c"$CONNS" -d"$DURATION" --latency "http://127.0.0.1:${PORT[$n]}$route")
        read -r t1 k1 < <(ticks "${PID[$n]}")
        requests=$(echo "$out" | awk '/requests in/ {print $1}')
        p50=$(echo "$out" | micros 50%); p99=$(echo "$out" | micros 99%)
        printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$n" $((t1 - t0)) $((k1 - k0)) "$requests" "$p50" "$p99" >>"$rounds"
        echo "round $round $n: $requests requests, $((t1 - t0)) ticks, p50 ${p50} µs, p99 ${p99} µs" >&2
    done
done

python3 - "$rounds" "$(getconf CLK_TCK)" "${names[@]}" <<'EOF'
import statistics, sys
path, hz, names = sys.argv[1], float(sys.argv[2]), sys.argv[3:]
rows = {n: [] for n in names}
for line in open(path):
    n, *v = line.split("\t")
    rows[n].append(list(map(float, v)))
first = None
print(f"| server | requests | CPU µs/request | kernel | ×{names[0]} | p50 | × | p99 | × |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
for n in names:
    ticks = sum(r[0] for r in rows[n]); kernel = sum(r[1] for r in rows[n])
    requests = sum(r[2] for r in rows[n])
    us = ticks / hz * 1e6 / requests
    p50 = statistics.median(r[3] for r in rows[n]); p99 = statistics.median(r[4] for r in rows[n])
    first = first or (us, p50, p99)
    print(f"| {n} | {requests:,.0f} | {us:.3f} | {kernel / ticks:.0%} | {us / first[0]:.3f}× "
          f"| {p50:.0f} µs | {p50 / first[1]:.2f}× | {p99:.0f} µs | {p99 / first[2]:.2f}× |")
EOF
