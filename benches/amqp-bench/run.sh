#!/usr/bin/env bash
# amqp-bench/run.sh: nucleon-amqp against raw lapin on the local RabbitMQ, side by side
# in one run, with aio-pika as a peer for scale.
#
#   benches/amqp-bench/run.sh          # builds, then ~15 min; SKIP_BUILD=1 reuses the binary
#
# 1. Publish with confirms: N persistent messages to a durable queue declared fresh per
#    run, W in flight: nucleon (Broker::publish from W tasks on a runtime worker) vs
#    raw lapin (W tasks on a current-thread runtime, one confirm channel) vs aio-pika.
# 2. Consume with manual acks from a queue filled beforehand, prefetch P: nucleon
#    (Consumer::new(q, handler).concurrency(P)) vs raw lapin (basic.qos(P), a task per
#    delivery; and the ack awaited inline) vs aio-pika.
#    In both, `lapin-split` is raw lapin in nucleon's thread layout (the connection made
#    from another thread's runtime): a diagnostic that tells the layout's cost apart.
# 3. RPC round trips: nucleon Broker::call to an Amqp::rpc handler in another process,
#    one caller and C callers: calls/s, p50/p90/p99, CPU per call on both sides.
# Every variant runs as its own process and measures its own CPU (getrusage
# RUSAGE_SELF); variants are interleaved over ROUNDS rounds; medians and ratios.
#
# Knobs (environment): AMQP_URL (default the local broker as guest), N (100000),
# BODY (256), WINDOW (256), PREFETCH (64), ROUNDS (5), RPC_SEQUENTIAL (2000),
# RPC_CALLS (10000), RPC_CONCURRENCY (16), NO_PYTHON=1 to leave the peer out.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here/.."
B=target/release
URL=${AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
port_open 5672 || { echo "no broker on 127.0.0.1:5672 (start RabbitMQ first)" >&2; exit 1; }

[ -n "${SKIP_BUILD:-}" ] || cargo build --release -p amqp-bench

# The Python peer: aio-pika in a virtual environment of its own (gitignored).
python_args=()
if [ -z "${NO_PYTHON:-}" ]; then
  venv="$here/.venv"
  if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import aio_pika' 2>/dev/null; then
    python3 -m venv "$venv" && "$venv/bin/pip" install -q --disable-pip-version-check 'aio-pika==10.2.1' \
      || echo "could not install aio-pika: the Python peer is left out" >&2
  fi
  if "$venv/bin/python" -c 'import aio_pika' 2>/dev/null; then
    python_args=(--python "$venv/bin/python" --peer "$here/peer.py")
  fi
fi

out=results/amqp-$(date -u +%Y-%m-%dT%H%M%SZ); mkdir -p "$out"
cmd=("$B/amqp-bench" suite --out "$out" --url "$URL"
  --n "${N:-100000}" --body "${BODY:-256}" --window "${WINDOW:-256}" --prefetch "${PREFETCH:-64}"
  --rounds "${ROUNDS:-5}" --rpc-sequential "${RPC_SEQUENTIAL:-2000}" --rpc-calls "${RPC_CALLS:-10000}"
  --rpc-concurrency "${RPC_CONCURRENCY:-16}" "${python_args[@]}")
{
  echo "# amqp-bench, $(date -u +%Y-%m-%dT%H:%MZ), commit $(git rev-parse --short HEAD)"
  echo
  echo "machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p'), Linux $(uname -r);" \
    "RabbitMQ $(timeout 20 rabbitmqctl version 2>/dev/null | tail -1 || echo '?') on the same machine;" \
    "lapin $(sed -n '/^name = "lapin"$/{n;s/version = "\(.*\)"/\1/p}' Cargo.lock);" \
    "$([ ${#python_args[@]} -gt 0 ] && "$venv/bin/python" -c 'import sys, aio_pika; print(f"aio-pika {aio_pika.__version__} on Python {sys.version.split()[0]}")' || echo 'no Python peer')"
  echo
  echo "command: \`benches/amqp-bench/run.sh\` (${cmd[*]#"$PWD/"})"
  echo
  "${cmd[@]}" 2> >(tee "$out/progress.log" >&2)
} | tee "$out/summary.md"
echo "results: $out" >&2
