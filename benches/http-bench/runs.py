"""Several run.sh runs side by side: each server's CPU/request and p99 as ratios against
bare hyper in the same run, per run and their mean.

    python3 benches/http-bench/runs.py benches/results/http-2026-11-26T*/raw.tsv

One run's ratios move with the machine (up to ±0.08x between runs of the same
binaries); the mean over runs, of one build, is the figure to compare with a target,
and its spread (the standard deviation of the runs' ratios) says how far to trust it.
"""

import statistics
import sys
from collections import defaultdict


def ratios(raw):
    """{(server, route): (cpu ratio, p99 ratio)} for one raw.tsv; refuses a run whose
    servers did not all run the same number of rounds (one stopped part way)."""
    ticks, requests, p99s = defaultdict(int), defaultdict(int), defaultdict(list)
    for line in open(raw):
        f = line.rstrip("\n").split("\t")
        if f[0] != "load":
            continue
        server, route, req, p99, t = f[1], f[2], int(f[4]), float(f[7]), int(f[8])
        ticks[(server, route)] += t
        requests[(server, route)] += req
        p99s[(server, route)].append(p99)
    rounds = {len(v) for v in p99s.values()}
    if len(rounds) != 1:
        sys.exit(f"{raw}: servers ran different numbers of rounds ({sorted(rounds)}): an incomplete run")
    cpu = {k: ticks[k] / requests[k] for k in ticks}
    p99 = {k: statistics.median(v) for k, v in p99s.items()}
    out = {}
    for (server, route) in cpu:
        base = ("hyper", route)
        if base in cpu:
            out[(server, route)] = (cpu[(server, route)] / cpu[base], p99[(server, route)] / p99[base])
    return out


def main(paths):
    runs = [(path, ratios(path)) for path in paths]
    keys = sorted({k for _, r in runs for k in r}, key=lambda k: (k[1], k[0] != "hyper", k[0]))
    names = [path.rstrip("/").split("/")[-2] if "/" in path else path for path, _ in runs]
    print("| route | server | " + " | ".join(f"CPU ×hyper, {n}" for n in names)
          + " | **CPU mean** | " + " | ".join(f"p99 ×hyper, {n}" for n in names)
          + " | **p99 mean** | CPU spread |")
    print("|---|---|" + "---:|" * (2 * len(runs) + 3))
    for key in keys:
        cpu = [r[key][0] for _, r in runs if key in r]
        p99 = [r[key][1] for _, r in runs if key in r]
        cells = lambda xs: " | ".join(f"{x:.2f}×" for x in xs)
        spread = f"±{statistics.stdev(cpu):.2f}" if len(cpu) > 1 else "–"
        print(f"| `{key[1]}` | {key[0]} | {cells(cpu)} | **{statistics.mean(cpu):.2f}×** "
              f"| {cells(p99)} | **{statistics.mean(p99):.2f}×** | {spread} (s.d.) |")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1:])
