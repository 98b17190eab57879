#!/usr/bin/env python3
"""Per-variant table of a results.jsonl from scripts/bench.sh: every kept run's req/s and the
server's CPU-µs per request (server cores / req/s), with p50/p99, in file order.

Usage: scripts/bench/cpu_table.py DIR/results.jsonl [SECTION]
"""
import json
import sys
from collections import OrderedDict


def main():
    path = sys.argv[1]
    section = sys.argv[2] if len(sys.argv) > 2 else None
    groups = OrderedDict()
    for line in open(path):
        r = json.loads(line)
        if section and r.get("section") != section:
            continue
        if "requests_per_sec" not in r:
            continue
        groups.setdefault((r.get("section"), r.get("variant")), []).append(r)
    print("| section | variant | req/s (runs) | server CPU-µs/request (runs) | p50 ms | p99 ms | other cores (max) |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for (sec, var), rs in groups.items():
        rps = [r["requests_per_sec"] for r in rs]
        cpu = []
        for r in rs:
            cores = sum(s["cores"] for s in (r.get("cpu") or {}).get("server_cores") or [])
            cpu.append(cores / r["requests_per_sec"] * 1e6 if r["requests_per_sec"] else float("nan"))
        other = max((r.get("cpu") or {}).get("other_cores") or 0 for r in rs)
        p50 = sorted(r["p50_ms"] for r in rs)
        p99 = sorted(r["p99_ms"] for r in rs)
        rng = lambda v, f: f.format(v[0]) if len(v) == 1 or v[0] == v[-1] else (f + "–" + f).format(v[0], v[-1])
        print(f"| {sec} | {var} | {', '.join(f'{x:,.0f}' for x in rps)} | "
              f"{', '.join(f'{x:.0f}' for x in cpu)} | {rng(p50, '{:.3f}')} | {rng(p99, '{:.3f}')} | {other:.2f} |")


if __name__ == "__main__":
    main()
