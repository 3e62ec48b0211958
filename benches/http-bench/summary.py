"""Summarises run.sh's raw.tsv as markdown: ratios against bare hyper, targets."""

import statistics
import sys
from collections import defaultdict

raw, machine = sys.argv[1], sys.argv[2]
load = defaultdict(list)  # (server, route) -> rows
mem = {}
order, routes = [], []
for line in open(raw):
    f = line.rstrip("\n").split("\t")
    if f[0] == "load":
        _, server, route, _round, req, rps, p50, p99, ticks, hz, errors = f[:11]
        # The system-time share was added later: older raw files have no such field.
        sys_ticks = int(f[11]) if len(f) > 11 else None
        load[(server, route)].append(
            dict(req=int(req), rps=float(rps), p50=float(p50), p99=float(p99),
                 ticks=int(ticks), hz=int(hz), errors=errors, sys_ticks=sys_ticks))
        if server not in order:
            order.append(server)
        if route not in routes:
            routes.append(route)
    elif f[0] == "mem":
        _, server, before, after, n, _fds = f
        mem[server] = (int(before), int(after), int(n))
        if server not in order:
            order.append(server)


def agg(rows):
    requests = sum(r["req"] for r in rows)
    ticks = sum(r["ticks"] for r in rows)
    return dict(
        rps=statistics.mean(r["rps"] for r in rows),
        p50=statistics.median(r["p50"] for r in rows),
        p99=statistics.median(r["p99"] for r in rows),
        cpu=ticks * 1e6 / rows[0]["hz"] / requests,
        sys=(sum(r["sys_ticks"] for r in rows) / ticks
             if ticks and all(r["sys_ticks"] is not None for r in rows) else None),
        rounds=len(rows),
        errors=";".join(sorted({r["errors"] for r in rows if r["errors"]})),
    )


def ms(us):
    return f"{us / 1000:.2f} ms"


print("# http-bench\n")
print("```")
print(open(machine).read().rstrip())
print("```\n")
print("Ratios are against bare hyper in the same run (lower is better for CPU and latency,")
print("higher for requests/s). CPU µs/req = server utime+stime ÷ requests completed,")
print("summed over the rounds; req/s is the mean of the rounds; p50/p99 are medians.")
print("sys = the kernel's share of that CPU time (stime, sampled per clock tick).\n")
stats = {}
for route in routes:
    print(f"## GET {route}\n")
    print("| server | req/s | ×hyper | p50 | ×hyper | p99 | ×hyper | CPU µs/req | ×hyper | sys |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    base = agg(load[("hyper", route)]) if ("hyper", route) in load else None
    for server in order:
        if (server, route) not in load:
            continue
        a = agg(load[(server, route)])
        stats[(server, route)] = a
        r = (lambda k: f"{a[k] / base[k]:.2f}×") if base else (lambda k: "–")
        share = "–" if a["sys"] is None else f"{a['sys']:.0%}"
        print(f"| {server} | {a['rps']:,.0f} | {r('rps')} | {ms(a['p50'])} | {r('p50')} "
              f"| {ms(a['p99'])} | {r('p99')} | {a['cpu']:.2f} | **{r('cpu')}** | {share} |")
        if a["errors"]:
            print(f"| ↳ {server} wrk reported | {a['errors']} | | | | | | | | |")
    print()

if mem:
    print("## Memory per idle keep-alive connection\n")
    n = next(iter(mem.values()))[2]
    print(f"{n:,} connections, each after one `GET /json`, held open and idle; "
          "server VmRSS before and after.\n")
    print("| server | VmRSS before | VmRSS after | KiB per connection | ×hyper |")
    print("|---|---:|---:|---:|---:|")
    per = {s: (after - before) / n for s, (before, after, n) in mem.items()}
    for server in order:
        if server not in mem:
            continue
        before, after, _ = mem[server]
        ratio = f"{per[server] / per['hyper']:.2f}×" if per.get("hyper") else "–"
        print(f"| {server} | {before / 1024:.1f} MiB | {after / 1024:.1f} MiB "
              f"| {per[server]:.2f} | {ratio} |")
    print()

print("## Targets (nucleon)\n")
print("| target | figure | met |")
print("|---|---|---|")
for route in routes:
    n, h = stats.get(("nucleon", route)), stats.get(("hyper", route))
    if not (n and h):
        continue
    ratio = n["cpu"] / h["cpu"]
    print(f"| CPU/request ≤ 1.05× hyper, `{route}` | {ratio:.2f}× | {'yes' if ratio <= 1.05 else '**no**'} |")
    for peer in ("axum", "actix"):
        p = stats.get((peer, route))
        if p:
            print(f"| CPU/request < {peer}, `{route}` | {n['cpu']:.2f} vs {p['cpu']:.2f} µs "
                  f"| {'yes' if n['cpu'] < p['cpu'] else '**no**'} |")
    ratio = n["p99"] / h["p99"]
    print(f"| p99 ≤ 1.1× hyper, `{route}` | {ratio:.2f}× | {'yes' if ratio <= 1.1 else '**no**'} |")
if "nucleon" in mem:
    before, after, count = mem["nucleon"]
    kib = (after - before) / count
    print(f"| ≤ 12 KB per idle connection | {kib:.2f} KiB ({kib * 1.024:.2f} kB) "
          f"| {'yes' if kib <= 12 else '**no**'} |")
