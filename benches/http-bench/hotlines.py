#!/usr/bin/env python3
"""The hot code of a request path, in level-1 instruction cache lines.

    valgrind --tool=callgrind --dump-instr=yes --callgrind-out-file=out.cg \\
        benches/target/release/nucleon-server --port 18500 -j 1 &
    wrk -t1 -c256 -d4s http://127.0.0.1:18500/json     # note "N requests"
    kill -INT %1
    python3 benches/http-bench/hotlines.py out.cg N [SETS] [WAYS] [TOP]

A code line (64 bytes) is hot when its instructions ran at least once for every two
requests. Printed: how many lines are hot (their size in KiB), how they fall into the
cache's sets (SETS=64 and WAYS=16 are a 64 KiB, 16-way cache: this machine's L1i,
`lscpu`), how many sets hold more hot lines than they have ways (every such line
misses on every request: the set is walked round in a cycle longer than it is), and
the TOP functions by hot lines.
"""

import collections
import re
import sys


def parse(path):
    """Instruction address -> (cost, function), from a callgrind --dump-instr file."""
    names, cost, function = {}, collections.Counter(), {}
    current, calling, address = None, False, 0

    def name(token):
        m = re.match(r"\((\d+)\)(?: (.*))?", token)
        if not m:
            return token
        if m.group(2) is not None:
            names[m.group(1)] = m.group(2)
        return names[m.group(1)]

    for raw in open(path, encoding="utf-8", errors="replace"):
        line = raw.rstrip("\n")
        if line.startswith("fn="):
            current = name(line[3:])
        elif line.startswith("cfn="):
            name(line[4:])  # may define a name used later
            calling = True
        elif line[:1].isdigit() or line[:1] in "+-*":
            fields = line.split()
            if not fields:
                continue
            position = fields[0]
            if position.startswith("+"):
                address += int(position[1:], 0)
            elif position.startswith("-"):
                address -= int(position[1:], 0)
            elif position != "*":
                address = int(position, 0)
            if calling:  # the cost of a call, not of this instruction
                calling = False
            elif len(fields) >= 3:
                cost[address] += int(fields[2])
                function[address] = current
    return cost, function


def main():
    path, requests = sys.argv[1], float(sys.argv[2])
    sets = int(sys.argv[3]) if len(sys.argv) > 3 else 64
    ways = int(sys.argv[4]) if len(sys.argv) > 4 else 16
    top = int(sys.argv[5]) if len(sys.argv) > 5 else 30
    cost, function = parse(path)
    hot = {a for a, c in cost.items() if c >= requests * 0.5}
    lines = {a >> 6 for a in hot}
    per_set = collections.Counter(line % sets for line in lines)
    full = [s for s, n in per_set.items() if n > ways]
    print(f"hot lines: {len(lines)} ({len(lines) * 64 / 1024:.1f} KiB)")
    print(f"most hot lines in one set: {max(per_set.values(), default=0)} (ways: {ways})")
    print(f"sets over their ways: {len(full)}, holding {sum(per_set[s] for s in full)} hot lines")
    by_function = collections.defaultdict(set)
    for a in hot:
        by_function[function[a]].add(a >> 6)
    for f, ls in sorted(by_function.items(), key=lambda t: -len(t[1]))[:top]:
        print(f"{len(ls):5d}  {f[:150]}")


if __name__ == "__main__":
    main()
