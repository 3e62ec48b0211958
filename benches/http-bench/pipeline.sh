#!/usr/bin/env bash
# http-bench/pipeline.sh: instructions per request of nucleon-http's own pipeline,
# in-process (`HttpService::call`: no socket, no hyper, no kernel), for several commits
# side by side, counted by valgrind's cachegrind: repeatable to a few instructions, so
# it tells a change of 0.3 % apart where run.sh's CPU time cannot.
#
#   benches/http-bench/pipeline.sh [REV...]            (default: HEAD~1 HEAD)
#   HEADERS="traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01" \
#       benches/http-bench/pipeline.sh 56cb577 HEAD
#
# Each commit's crates are exported (git archive, no worktree) and linked into the
# harness in pipeline/main.rs (release, fat LTO, one target folder for all); the
# harness serves N1 then N2 requests, and (I(N2) - I(N1)) / (N2 - N1) is the figure
# (start-up cancels out). The requests' own building (the harness's work, e.g. a
# header it adds) is in the figure too: compare commits with the same HEADERS.
#
# Knobs: ROUTE=/json HEADERS="name: value" (one header) N1=20000 N2=120000
#        WORK=/tmp/nucleon-pipeline (kept between runs: one target folder, so the
#        dependencies build once)
set -euo pipefail

ROUTE=${ROUTE:-/json}
HEADERS=${HEADERS:-}
N1=${N1:-20000}
N2=${N2:-120000}
WORK=${WORK:-/tmp/nucleon-pipeline}
here=$(cd "$(dirname "$0")" && pwd)
repo=$(git -C "$here" rev-parse --show-toplevel)
[ $# -gt 0 ] || set -- HEAD~1 HEAD
command -v valgrind >/dev/null || { apt-get update -qq && apt-get install -y -qq valgrind; }

instructions() { # binary n -> total instructions
    valgrind --tool=cachegrind --cache-sim=no --cachegrind-out-file=/dev/null \
        "$1" "$2" "$ROUTE" ${HEADERS:+"$HEADERS"} 2>&1 |
        awk '/I *refs:/ {gsub(",", "", $NF); print $NF}'
}

printf '| commit | route | headers | instructions/request |\n|---|---|---|---:|\n'
for rev in "$@"; do
    sha=$(git -C "$repo" rev-parse --short "$rev")
    src=$WORK/src-$sha harness=$WORK/harness-$sha
    if [ ! -d "$src" ]; then
        mkdir -p "$src"
        git -C "$repo" archive "$sha" crates Cargo.toml Cargo.lock | tar -x -C "$src"
        # Only the crates: the examples and tests of that commit are not exported.
        sed -i 's|^members = .*|members = ["crates/*"]|' "$src/Cargo.toml"
    fi
    mkdir -p "$harness/src"
    cp "$here/pipeline/main.rs" "$harness/src/main.rs"
    cp "$src/Cargo.lock" "$harness/Cargo.lock"
    cat > "$harness/Cargo.toml" <<TOML
[package]
name = "pipeline-harness"
version = "0.1.0"
edition = "2024"
publish = false

[dependencies]
nucleon-http = { path = "$src/crates/nucleon-http" }
tokio = { version = "1", features = ["rt"] }
serde_json = "1"

[profile.release]
lto = "fat"
codegen-units = 1
TOML
    CARGO_TARGET_DIR=$WORK/target cargo build --quiet --release \
        --manifest-path "$harness/Cargo.toml"
    bin=$WORK/pipeline-harness-$sha
    cp "$WORK/target/release/pipeline-harness" "$bin"
    a=$(instructions "$bin" "$N1")
    b=$(instructions "$bin" "$N2")
    printf '| %s | `%s` | %s | %d |\n' "$sha" "$ROUTE" "${HEADERS:-none}" $(((b - a) / (N2 - N1)))
done
