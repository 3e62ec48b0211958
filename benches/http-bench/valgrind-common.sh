# http-bench/valgrind-common.sh: what instructions.sh and cache.sh share (sourced, not
# run): paths, tools, the build, and one server run under valgrind with a load.
#
# The sourcing script sets DURATION and CONNS first.

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
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

# Runs server NAME on PORT under `valgrind VALGRIND_ARGS...` (nucleon without its access
# log, as run.sh runs it), waits until it serves ROUTE, runs LOAD (a function called
# with the port and the route, printing the requests it completed), stops the server
# and prints what LOAD printed.
#   under_valgrind NAME PORT ROUTE LOAD VALGRIND_ARGS...
under_valgrind() {
    local name=$1 port=$2 route=$3 load=$4; shift 4
    NUCLEON_HTTP__ACCESS_LOG=false valgrind "$@" \
        "$bin/$name-server" --port "$port" -j 1 >/dev/null 2>"$out/err" &
    local pid=$!
    for _ in $(seq 150); do
        curl -sf -o /dev/null "http://127.0.0.1:$port$route" && break
        sleep 0.2
    done
    "$load" "$port" "$route"
    kill -INT $pid; sleep 1; kill -TERM $pid 2>/dev/null || true
    wait $pid 2>/dev/null || true
}

# The loads: wrk for DURATION over CONNS connections, or one request and DURATION idle
# (the server's start-up and idle threads, subtracted from the busy run).
load() { wrk -t1 -c"$CONNS" -d"$DURATION" "http://127.0.0.1:$1$2" | awk '/requests in/ {print $1}'; }
idle() { sleep "${DURATION%s}"; echo 1; }
