#!/usr/bin/env bash
# db-bench/run.sh: nucleon-db against bare hyper + raw sqlx, side by side in one run.
#
#   benches/db-bench/run.sh            # ~6 min; SKIP_BUILD=1 to reuse the binaries
#
# 1. An HTTP route doing one primary-key SELECT served as JSON (`GET /countries/gb`):
#    server CPU per request, p50 and p99 (http-bench's ab.sh: servers on core 0, wrk on
#    core 1, 8 interleaved rounds of 4 s, 256 connections). Bare hyper + raw sqlx with a
#    pool of 10 on PostgreSQL; nucleon with the same pool size on PostgreSQL; nucleon on
#    SQLite (a file in a temp dir). PostgreSQL itself runs unpinned, on both cores.
# 2. The query API's overhead per query against raw sqlx on one connection, PostgreSQL
#    and SQLite (db-overhead: 8 interleaved rounds of 5,000 queries).
# 3. pgbench -S (select-only, 8 clients, 10 s) as the database's own ceiling here.
#
# Knobs: DB_URL (default postgres://postgres@127.0.0.1:5432/postgres).
set -euo pipefail
cd "$(dirname "$0")/.."
B=target/release
URL=${DB_URL:-postgres://postgres@127.0.0.1:5432/postgres}
[ -n "${SKIP_BUILD:-}" ] || cargo build --release -p db-bench
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
out=results/db-$(date -u +%Y-%m-%dT%H%M%SZ); mkdir -p "$out"
{
  echo "# db-bench, $(date -u +%Y-%m-%dT%H:%MZ), commit $(git rev-parse --short HEAD)"
  echo "machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p')"
  echo
  echo "## GET /countries/gb: server CPU per request"
  http-bench/ab.sh /countries/gb \
    "hyper-sqlx=$B/db-hyper --port 18801 -j 1 --url $URL --pool 10" \
    "nucleon-pg=$B/db-nucleon --port 18802 -j 1 --url $URL --pool 10" \
    "nucleon-sqlite=$B/db-nucleon --port 18803 -j 1 --url sqlite://$tmp/bench.db --pool 10" 2>"$out/http-rounds.txt"
  echo
  echo "## The query API against raw sqlx, one connection"
  taskset -c 0 "$B/db-overhead" --url "$URL"
  taskset -c 0 "$B/db-overhead" --url "sqlite://$tmp/overhead.db" | tail -1
  echo
  echo "## pgbench -S (the database's ceiling here)"
  pgbench -i -s 1 -q -h 127.0.0.1 -U postgres postgres >/dev/null 2>&1
  pgbench -n -S -c 8 -j 1 -T 10 -h 127.0.0.1 -U postgres postgres 2>/dev/null | grep -E "^tps|latency average"
} | tee "$out/summary.md"
echo "results: $out" >&2
