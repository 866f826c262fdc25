#!/usr/bin/env python3
"""Where a repeated step's time goes, from a kernel_trace.csv (scripts/kernel_trace).

Groups the kernels of CUDA-graph replays (graph_id != 0) into steps, one per replay, and
prints per kernel position of the step (averaged over the replays after --skip):
  dur      its own start-to-end time,
  lag      its start minus the end of every kernel before it (negative: it started early, as a
           programmatic dependent launch or beside the kernel before it),
  exposed  how far it moved the step's end: max(0, end - latest end before it). The exposed
           times add up to the step's span minus the idle gaps, so they say which kernels the
           step waits for.
Positions with the same name inside a step (the layers) are also summed per name.

Usage: timeline.py trace.csv [--graph N (default: the graph with most replays)] [--skip 3]
"""
import argparse
import collections
import csv
import re
import shutil
import statistics
import subprocess


def short_name(mangled):
    name = mangled
    if shutil.which("c++filt"):
        name = subprocess.run(["c++filt"], input=mangled, capture_output=True,
                              text=True).stdout.strip() or mangled
    name = name.replace("(anonymous namespace)::", "").replace("mambaserve::", "")
    name = re.sub(r"\(.*$", "", name)           # arguments
    name = re.sub(r"^(void|auto) ", "", name)
    return name[:70]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("csv")
    ap.add_argument("--graph", type=int, default=-1)
    ap.add_argument("--skip", type=int, default=3)
    args = ap.parse_args()
    rows = list(csv.DictReader(open(args.csv)))
    by_graph = collections.defaultdict(list)
    for r in rows:
        g = int(r["graph_id"])
        if g != 0:
            by_graph[g].append(r)
    if not by_graph:
        print("no CUDA-graph kernels in the trace")
        return
    gid = args.graph if args.graph >= 0 else max(by_graph, key=lambda g: len(by_graph[g]))
    # A replay = the kernels sharing one correlation id (that of its cudaGraphLaunch).
    replays = collections.defaultdict(list)
    for r in by_graph[gid]:
        replays[int(r["correlation"])].append(r)
    steps = [sorted(v, key=lambda r: int(r["start_ns"])) for _, v in sorted(replays.items())]
    steps = steps[args.skip:]
    n = min(len(s) for s in steps)
    if any(len(s) != n for s in steps):
        print("warning: replays differ in kernel count; using the first", n)
    names = {}
    per_pos = collections.defaultdict(lambda: {"dur": [], "lag": [], "exp": []})
    spans, idles = [], []
    for s in steps:
        t0 = int(s[0]["start_ns"])
        latest = t0
        idle = 0
        for i, r in enumerate(s[:n]):
            st, en = int(r["start_ns"]), int(r["end_ns"])
            names.setdefault(i, short_name(r["name"]))
            per_pos[i]["dur"].append((en - st) / 1e3)
            per_pos[i]["lag"].append((st - latest) / 1e3)
            per_pos[i]["exp"].append(max(0, en - latest) / 1e3)
            idle += max(0, st - latest)
            latest = max(latest, en)
        spans.append((latest - t0) / 1e3)
        idles.append(idle / 1e3)
    med = statistics.median
    print(f"graph {gid}: {len(steps)} replays of {n} kernels; span median {med(spans):.1f} us "
          f"(idle gaps {med(idles):.1f} us)\n")
    print("| # | kernel | grid | dur us | lag us | exposed us |")
    print("|---:|---|---|---:|---:|---:|")
    for i in range(n):
        p = per_pos[i]
        print(f"| {i} | {names[i]} | {steps[0][i]['grid']} | {med(p['dur']):.2f} | "
              f"{med(p['lag']):.2f} | {med(p['exp']):.2f} |")
    tot = collections.defaultdict(lambda: [0, 0.0, 0.0])
    for i in range(n):
        t = tot[names[i]]
        t[0] += 1
        t[1] += med(per_pos[i]["dur"])
        t[2] += med(per_pos[i]["exp"])
    print("\n| kernel | count | sum dur us | sum exposed us | exposed per call us |")
    print("|---|---:|---:|---:|---:|")
    for name, (c, d, e) in sorted(tot.items(), key=lambda kv: -kv[1][2]):
        print(f"| {name} | {c} | {d:.1f} | {e:.1f} | {e / c:.2f} |")


if __name__ == "__main__":
    main()
