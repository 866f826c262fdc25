#!/usr/bin/env python3
"""Attributes an Nsight Compute per-instruction profile to regions of a kernel's source.

ncu's source page (`ncu -i R.ncu-rep --page source --csv --print-source sass`) lists a kernel's
SASS with stall samples and execution counts but, without the source on the GPU machine, no
line numbers. This joins it, instruction by instruction, with `nvdisasm -gi` of the same code
built here (`nvcc ... -cubin -lineinfo`), takes the outermost line of the kernel's file for each
instruction (inlined helpers and lambdas count where they are called; a value the compiler
recomputes inside a loop counts at the line that defines it), and sums samples,
executed instructions and the top stall reasons per region. Regions start at marker strings:

  scripts/ncu_regions.py SASS.csv[.gz] KERNEL.cubin SOURCE.cu KERNEL_SUBSTRING \
      --warps N 'marker text=region name' ...

The cubin must be built from SOURCE.cu exactly as the profiled binary was (check the
"instructions matched" line: the opcode sequences must agree). --warps divides the executed
counts into per-warp figures (blocks x warps per block).
"""
import argparse
import collections
import csv
import gzip
import re
import subprocess
import sys


def read_profile(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt") as f:
        rows = list(csv.reader(f))
    header = next(i for i, r in enumerate(rows) if r and r[0] == "Address")
    cols = rows[header]
    return cols, [dict(zip(cols, r)) for r in rows[header + 1:] if len(r) == len(cols)]


def read_lines(cubin, kernel, source_name):
    dis = subprocess.run(["nvdisasm", "-gi", "-c", cubin], capture_output=True, text=True,
                         check=True).stdout.split("\n")
    starts = [i for i, l in enumerate(dis) if l.startswith(".text.") and kernel in l]
    if not starts:
        sys.exit(f"no function matching {kernel!r} in {cubin}")
    line, out = None, []
    pattern = re.compile(re.escape(source_name) + r'", line (\d+)')
    for l in dis[starts[0] + 1:]:
        if l.startswith(".text.") or l.startswith("//----"):
            break
        if "//## File" in l:
            found = pattern.findall(l)
            line = int(found[-1]) if found else None
            continue
        m = re.match(r"\s+/\*[0-9a-f]{4,}\*/\s+(.*?);", l)
        if m:
            out.append((line, m.group(1).strip()))
    return out


def opcode(text):
    words = text.split()
    return (words[1] if words and words[0].startswith("@") else words[0]) if words else ""


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("sass")
    ap.add_argument("cubin")
    ap.add_argument("source")
    ap.add_argument("kernel")
    ap.add_argument("markers", nargs="+", help="'text=name': a region starts at the first line "
                    "containing text")
    ap.add_argument("--warps", type=int, default=1)
    args = ap.parse_args()

    cols, prof = read_profile(args.sass)
    lines = read_lines(args.cubin, args.kernel, args.source.split("/")[-1])
    if len(lines) != len(prof):
        sys.exit(f"{len(lines)} instructions in the cubin, {len(prof)} in the profile: "
                 "not the same build")
    same = sum(opcode(a[1]) == opcode(b["Source"]) for a, b in zip(lines, prof))
    print(f"instructions matched: {same} of {len(prof)} opcodes")

    text = open(args.source).read()
    starts = []
    for m in args.markers:
        marker, name = m.rsplit("=", 1)
        pos = text.find(marker.encode().decode("unicode_escape"))
        if pos < 0:
            sys.exit(f"marker not found: {marker!r}")
        starts.append((text[:pos].count("\n") + 1, name))
    starts.sort()

    def region(line):
        name = "(before the first marker)"
        for first, n in starts:
            if line is not None and line >= first:
                name = n
        return name if line is not None else "(no line)"

    stalls = [c for c in cols if c.startswith("stall_") and "Not Issued" not in c]
    samples, executed = collections.Counter(), collections.Counter()
    reasons = collections.defaultdict(collections.Counter)
    for (line, _), row in zip(lines, prof):
        r = region(line)
        samples[r] += int(row["# Samples"] or 0)
        executed[r] += int(row["Instructions Executed"] or 0)
        for c in stalls:
            reasons[r][c] += int(row[c] or 0)
    total_s, total_e = sum(samples.values()) or 1, sum(executed.values()) or 1
    print(f"samples {total_s}, executed instructions {total_e}")
    print("| region | samples | executed | per warp | top stalls |")
    print("|---|---:|---:|---:|---|")
    for name in [n for _, n in starts] + ["(before the first marker)", "(no line)"]:
        if samples[name] or executed[name]:
            top = ", ".join(f"{k[6:]} {v}" for k, v in reasons[name].most_common(3))
            print(f"| {name} | {100 * samples[name] / total_s:.1f}% | "
                  f"{100 * executed[name] / total_e:.1f}% | {executed[name] / args.warps:.0f} | "
                  f"{top} |")


if __name__ == "__main__":
    main()
