#!/usr/bin/env bash
# http-bench: nucleon against bare hyper, axum and actix-web, side by side.
#
#   benches/http-bench/run.sh
#
# Every server runs with 1 worker pinned to core 0 (taskset -c 0); wrk runs pinned to
# core 1 (taskset -c 1 wrk -t1 -c256 -d10s --latency). Rounds are interleaved
# (round-robin over servers, ROUNDS times per route), so drift hits every server alike.
# Measured per run: requests/s, p50/p99 (wrk --latency), server CPU time per request
# (utime+stime from /proc/<pid>/stat, before/after, ÷ requests wrk completed), and
# memory per idle keep-alive connection (VmRSS before/after IDLE_CONNS connections
# that each served one request, ÷ IDLE_CONNS). Everything is reported as a ratio
# against bare hyper in the same run; the table is printed and saved under
# benches/results/. Traffic goes to 127.0.0.1 only.
#
# Knobs (environment): ROUNDS=8 DURATION=4s CONNS=256 IDLE_CONNS=10000
#   SERVERS="hyper hyper-1send nucleon nucleon-log axum actix" ROUTES="/json /countries/gb/"
#   SKIP_BUILD=1 (use the existing release build)
set -euo pipefail

ROUNDS=${ROUNDS:-8}
DURATION=${DURATION:-4s}
CONNS=${CONNS:-256}
IDLE_CONNS=${IDLE_CONNS:-10000}
SERVERS=${SERVERS:-"hyper hyper-1send nucleon nucleon-log axum actix"}
ROUTES=${ROUTES:-"/json /countries/gb/"}
SERVER_CPU=0
CLIENT_CPU=1

here=$(cd "$(dirname "$0")" && pwd)
benches=$(dirname "$here")
bin=$benches/target/release
stamp=$(date -u +%Y-%m-%dT%H%M%SZ)
out=$benches/results/http-$stamp
mkdir -p "$out"
raw=$out/raw.tsv
log=$out/run.log
: >"$raw"
say() { echo "$*" | tee -a "$log" >&2; }

# --- tools -------------------------------------------------------------------------
if ! command -v wrk >/dev/null; then
    say "installing wrk (Debian package)"
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
    $sudo apt-get update -qq && $sudo apt-get install -y -qq wrk >/dev/null
fi
command -v taskset >/dev/null || { echo "taskset (util-linux) is required" >&2; exit 1; }
command -v python3 >/dev/null || { echo "python3 is required for the summary" >&2; exit 1; }
[ "$(nproc)" -ge 2 ] || { echo "needs at least 2 cores (server on $SERVER_CPU, wrk on $CLIENT_CPU)" >&2; exit 1; }

# 10,000 idle connections: both ends need the descriptors.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
if [ "$(ulimit -n)" -lt $((IDLE_CONNS + 256)) ]; then
    echo "ulimit -n is $(ulimit -n): too low for $IDLE_CONNS connections" >&2; exit 1
fi

if [ -z "${SKIP_BUILD:-}" ]; then
    say "building (release)"
    (cd "$benches" && cargo build --release -p http-bench --quiet)
fi

# --- servers -----------------------------------------------------------------------
declare -A PORT PID
port=18100
for s in $SERVERS; do PORT[$s]=$port; port=$((port + 1)); done

# The shell's own settings do not reach the servers (RUST_LOG=warn would turn
# nucleon-log's access log off; RUST_LOG=debug would add a span per request).
unset RUST_LOG NUCLEON_LOG NUCLEON_ENV NUCLEON_CONFIGURATION
while read -r var; do unset "$var"; done < <(env | sed -n 's/^\(NUCLEON_[A-Z_]*\)=.*/\1/p')

start_server() { # name port [extra env...] -> sets PID[name]
    local name=$1 p=$2
    case $name in
        hyper) taskset -c $SERVER_CPU "$bin/hyper-server" --port "$p" -j 1 & ;;
        # Bare hyper sending each response in one buffer, as nucleon does (see hyper.rs).
        hyper-1send) BARE_HYPER_WRITEV=false taskset -c $SERVER_CPU "$bin/hyper-server" --port "$p" -j 1 & ;;
        axum) taskset -c $SERVER_CPU "$bin/axum-server" --port "$p" -j 1 & ;;
        actix) taskset -c $SERVER_CPU "$bin/actix-server" --port "$p" -j 1 >/dev/null 2>&1 & ;;
        # Nucleon as configured by the countries example, without the access log (no
        # peer logs a line per request by default)...
        nucleon) NUCLEON_HTTP__ACCESS_LOG=false NUCLEON_HTTP__HEADER_READ_TIMEOUT=${NUCLEON_HEADER_TIMEOUT:-10s} \
            taskset -c $SERVER_CPU "$bin/nucleon-server" --port "$p" -j 1 >/dev/null & ;;
        # ...and with it (the default): one line per request to stdout (/dev/null here)
        # through the non-blocking writer, whose thread also runs on core 0.
        nucleon-log) taskset -c $SERVER_CPU "$bin/nucleon-server" --port "$p" -j 1 >/dev/null & ;;
        *) echo "unknown server $name" >&2; exit 1 ;;
    esac
    PID[$name]=$!
}

wait_up() { # port
    for _ in $(seq 100); do
        curl -sf -o /dev/null "http://127.0.0.1:$1/json" && return 0
        sleep 0.1
    done
    echo "server on port $1 did not come up" >&2; exit 1
}

cleanup() {
    for s in "${!PID[@]}"; do kill "${PID[$s]}" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT

cpu_ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; } # utime+stime
sys_ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{print $13}'; }       # stime
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

busy() { pgrep -c rustc 2>/dev/null || true; }

# --- machine -----------------------------------------------------------------------
{
    echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "machine: $(nproc) cores, $(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -1), kernel $(uname -r)"
    echo "rustc processes at start: $(busy); load average: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "wrk: taskset -c $CLIENT_CPU wrk -t1 -c$CONNS -d$DURATION --latency; servers: 1 worker, taskset -c $SERVER_CPU"
    echo "rounds: $ROUNDS per route, interleaved; idle connections: $IDLE_CONNS"
} >"$out/machine.txt"
cat "$out/machine.txt" | tee -a "$log" >&2

# --- throughput, latency, CPU per request -----------------------------------------
for s in $SERVERS; do start_server "$s" "${PORT[$s]}"; done
for s in $SERVERS; do wait_up "${PORT[$s]}"; done

# Same bytes everywhere.
for route in $ROUTES; do
    want=""
    for s in $SERVERS; do
        got=$(curl -sf "http://127.0.0.1:${PORT[$s]}$route")
        if [ -z "$want" ]; then want=$got
        elif [ "$got" != "$want" ]; then echo "$s serves a different body on $route: $got" >&2; exit 1; fi
    done
    say "body of $route (all servers): $want"
done

# Warm-up, unmeasured.
for route in $ROUTES; do
    for s in $SERVERS; do
        taskset -c $CLIENT_CPU wrk -t1 -c"$CONNS" -d2s "http://127.0.0.1:${PORT[$s]}$route" >/dev/null
    done
done

to_us() { # "1.23ms" -> microseconds
    python3 -c 'import re,sys; m=re.match(r"([\d.]+)(us|ms|s)$", sys.argv[1]); print(float(m[1])*{"us":1,"ms":1e3,"s":1e6}[m[2]])' "$1"
}

# Each round starts one server further along (and every other round takes the routes
# the other way round): a drift in the machine's speed during a round does not always
# fall on the same servers.
read -ra ALL_SERVERS <<<"$SERVERS"
read -ra ALL_ROUTES <<<"$ROUTES"
in_turn() { # round -> the servers, rotated by round - 1
    local r=$1 n=${#ALL_SERVERS[@]} i
    for ((i = 0; i < n; i++)); do printf '%s ' "${ALL_SERVERS[(i + r - 1) % n]}"; done
}
routes_for() { # round -> the routes, reversed on even rounds
    local r=$1 i n=${#ALL_ROUTES[@]}
    if ((r % 2)); then printf '%s ' "${ALL_ROUTES[@]}"
    else for ((i = n - 1; i >= 0; i--)); do printf '%s ' "${ALL_ROUTES[i]}"; done; fi
}

hz=$(getconf CLK_TCK)
for round in $(seq "$ROUNDS"); do
    for route in $(routes_for "$round"); do
        for s in $(in_turn "$round"); do
            pid=${PID[$s]}
            t0=$(cpu_ticks "$pid"); k0=$(sys_ticks "$pid")
            text=$(taskset -c $CLIENT_CPU wrk -t1 -c"$CONNS" -d"$DURATION" --latency "http://127.0.0.1:${PORT[$s]}$route")
            t1=$(cpu_ticks "$pid"); k1=$(sys_ticks "$pid")
            echo "$text" >"$out/wrk-$s-$(echo "$route" | tr -c 'a-z0-9' _)-$round.txt"
            requests=$(echo "$text" | awk '/requests in/ {print $1}')
            rps=$(echo "$text" | awk '/^Requests\/sec:/ {print $2}')
            p50=$(to_us "$(echo "$text" | awk '$1 == "50%" {print $2}')")
            p99=$(to_us "$(echo "$text" | awk '$1 == "99%" {print $2}')")
            errors=$(echo "$text" | grep -E 'Socket errors|Non-2xx' | tr -s ' ' | tr '\n' ';' || true)
            printf 'load\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' \
                "$s" "$route" "$round" "$requests" "$rps" "$p50" "$p99" "$((t1 - t0))" "$hz" "$errors" "$((k1 - k0))" >>"$raw"
            say "round $round $route $s: $rps req/s, p50 ${p50}us, p99 ${p99}us, $((t1 - t0)) ticks for $requests requests ${errors:+($errors)} [rustc: $(busy)]"
        done
    done
done
cleanup; PID=()

# --- memory per idle keep-alive connection ----------------------------------------
# A fresh process per server: RSS after one request, then after IDLE_CONNS connections
# that each served one GET /json and now sit idle (the client holds them open).
fifo=$out/hold
for s in $SERVERS; do
    [ "$s" = nucleon-log ] && continue # same server, the log does not change idle memory
    [ "$s" = hyper-1send ] && continue # same server as hyper
    p=${PORT[$s]}
    # Nucleon's idle keep-alive timeout is its header read timeout (10 s by default):
    # raised so that no connection times out while the 10,000 open.
    NUCLEON_HEADER_TIMEOUT=60s start_server "$s" "$p"
    wait_up "$p"
    "$bin/idle-conns" "$p" 1 </dev/null >/dev/null
    sleep 0.5
    before=$(rss_kb "${PID[$s]}")
    rm -f "$fifo"; mkfifo "$fifo"
    taskset -c $CLIENT_CPU "$bin/idle-conns" "$p" "$IDLE_CONNS" /json <"$fifo" >"$out/idle-$s.out" &
    client=$!
    exec 9>"$fifo"
    for _ in $(seq 600); do grep -q ready "$out/idle-$s.out" && break; sleep 0.1; done
    grep -q "ready $IDLE_CONNS" "$out/idle-$s.out" || { echo "$s: the client did not get $IDLE_CONNS connections" >&2; exit 1; }
    sleep 1
    after=$(rss_kb "${PID[$s]}")
    open=$(ls "/proc/${PID[$s]}/fd" | wc -l)
    exec 9>&-
    wait "$client" || true
    printf 'mem\t%s\t%s\t%s\t%s\t%s\n' "$s" "$before" "$after" "$IDLE_CONNS" "$open" >>"$raw"
    say "idle $s: VmRSS $before kB -> $after kB with $IDLE_CONNS connections ($open fds open)"
    kill "${PID[$s]}"; wait "${PID[$s]}" 2>/dev/null || true
    unset "PID[$s]"
done
rm -f "$fifo"
echo "rustc processes at end: $(busy); load average: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$out/machine.txt" "$log" >&2

# --- summary -----------------------------------------------------------------------
python3 "$here/summary.py" "$raw" "$out/machine.txt" | tee "$out/table.md"
cp "$out/table.md" "$benches/results/http-latest.md"
echo >&2
echo "saved: $out/ (table.md, raw.tsv, wrk outputs)" >&2
