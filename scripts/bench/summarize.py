#!/usr/bin/env python3
"""Helpers of scripts/bench.sh (standard library only).

  summarize.py summary DIR
      Markdown tables (medians of the runs) from DIR/results.jsonl and DIR/raw.jsonl.
  summarize.py proxy-latency LOG FROM TO SECTION VARIANT RUN [WARMUP_SECS]
      One JSON line with the xks-proxy's own per-request latency (its `xks request` log lines
      FROM..TO of LOG, Encrypt only, the first WARMUP_SECS seconds after the first line dropped).
"""

import json
import math
import re
import statistics
import sys
from collections import OrderedDict
from datetime import datetime


def load(path):
    try:
        with open(path) as f:
            return [json.loads(l) for l in f if l.strip()]
    except FileNotFoundError:
        return []


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt(x, digits=3):
    if x is None:
        return "–"
    if isinstance(x, float) and digits == 0:
        return f"{x:,.0f}"
    return f"{x:.{digits}f}"


def cpu(r, which):
    c = r.get("cpu") or {}
    if which == "server":
        s = c.get("server_cores") or []
        return s[0]["cores"] if s else None
    if which == "server2":
        s = c.get("server_cores") or []
        return s[1]["cores"] if len(s) > 1 else None
    return c.get(f"{which}_cores")


def groups(rows, section):
    g = OrderedDict()
    for r in rows:
        if r.get("section") == section and "requests_per_sec" in r:
            g.setdefault(r["variant"], []).append(r)
    return g


def load_table(rows, section, title, extra_server=False):
    g = groups(rows, section)
    if not g:
        return []
    out = [f"### {title}", ""]
    head = "| variant | runs | req/s median [min–max] | p50 ms | p99 ms | p99.9 ms | max ms (worst) | server cores |"
    sep = "|---|---:|---:|---:|---:|---:|---:|---:|"
    if extra_server:
        head += " proxy cores |"
        sep += "---:|"
    head += " client cores | other cores (max) | errors |"
    sep += "---:|---:|---:|"
    out += [head, sep]
    for variant, rs in g.items():
        rps = [r["requests_per_sec"] for r in rs]
        line = (
            f"| {variant} | {len(rs)} | {fmt(med(rps), 0)} [{fmt(min(rps), 0)}–{fmt(max(rps), 0)}] "
            f"| {fmt(med([r['p50_ms'] for r in rs]))} | {fmt(med([r['p99_ms'] for r in rs]))} "
            f"| {fmt(med([r['p999_ms'] for r in rs]), 2)} | {fmt(max(r['max_ms'] for r in rs), 1)} "
            f"| {fmt(med([cpu(r, 'server') for r in rs]), 2)} |"
        )
        if extra_server:
            line += f" {fmt(med([cpu(r, 'server2') for r in rs]), 2)} |"
        others = [cpu(r, "other") for r in rs if cpu(r, "other") is not None]
        line += (
            f" {fmt(med([cpu(r, 'client') for r in rs]), 2)} | {fmt(max(others) if others else None, 2)} "
            f"| {sum(r['errors'] for r in rs)} |"
        )
        out.append(line)
    out.append("")
    return out


def acl_table(rows):
    g = groups(rows, "acl")
    out = []
    for c in ("8", "32"):
        b, a = g.get(f"before/encrypt/{c}", []), g.get(f"after/encrypt/{c}", [])
        if not b or not a:
            continue
        mb, ma = med([r["requests_per_sec"] for r in b]), med([r["requests_per_sec"] for r in a])
        pairs = {}
        for r in b:
            pairs.setdefault(r["run"], {})["b"] = r["requests_per_sec"]
        for r in a:
            pairs.setdefault(r["run"], {})["a"] = r["requests_per_sec"]
        ratios = [p["a"] / p["b"] for p in pairs.values() if "a" in p and "b" in p]
        out.append(
            f"- Encrypt, {c} connections: after/before = {ma / mb:.3f} (medians {ma:,.0f} / {mb:,.0f} req/s); "
            f"per pair: {', '.join(f'{x:.3f}' for x in ratios)} (median {med(ratios):.3f})"
        )
    if out:
        out = ["Access-control ratio (req/s after ÷ before):", ""] + out + [""]
    return out


def xks_overhead(rows):
    g = groups(rows, "xks")
    out = []
    for c in ("1", "8"):
        k, p = g.get(f"kmsd-xks-encrypt/{c}", []), g.get(f"proxy-direct-encrypt/{c}", [])
        pl = [r for r in rows if r.get("variant") == f"proxy-log/kmsd-xks-encrypt/{c}"]
        if not k or not p:
            continue
        kp50, pp50 = med([r["p50_ms"] for r in k]), med([r["p50_ms"] for r in p])
        line = (
            f"- {c} connection(s): kmsd XKS-key Encrypt p50 {kp50:.3f} ms − proxy alone p50 {pp50:.3f} ms "
            f"= **{kp50 - pp50:.3f} ms** added by kmsd"
        )
        if pl:
            lp50 = med([r["proxy_p50_ms"] for r in pl])
            line += f"; the proxy's own logged latency under kmsd p50 {lp50:.3f} ms (kmsd p50 − that = {kp50 - lp50:.3f} ms)"
        out.append(line)
    if out:
        out = ["kmsd's own latency on XKS-key Encrypt:", ""] + out + [""]
    return out


def raw_table(raw):
    if not raw:
        return []
    out = ["### Raw primitives (one thread)", "", "| what | bytes | ns/op | ops/s |", "|---|---:|---:|---:|"]
    for r in raw:
        out.append(f"| {r['mode']} | {r['bytes']} | {r['ns_per_op']:,.0f} | {r['ops_per_sec']:,.0f} |")
    out.append("")
    return out


def summary(d):
    rows = load(f"{d}/results.jsonl")
    raw = load(f"{d}/raw.jsonl")
    out = ["## kmsd-bench summary (medians of runs)", ""]
    try:
        with open(f"{d}/machine.txt") as f:
            out += ["```", f.read().rstrip(), "```", ""]
    except FileNotFoundError:
        pass
    out += load_table(rows, "default", "Default store, verifying server (variant = op/connections/audit durability)")
    out += load_table(rows, "acl", "Access control: before vs after (Encrypt; kmsd flags: see acl flags above)")
    out += acl_table(rows)
    out += load_table(rows, "asym", "Sign / Verify / GenerateMac at 8 connections")
    out += raw_table(raw)
    out += load_table(rows, "cloudhsm", "CloudHSM key store (SoftHSM2) Encrypt")
    out += load_table(rows, "xks", "External key store through xks-proxy", extra_server=True)
    pl = [r for r in rows if r.get("section") == "xks" and "proxy_p50_ms" in r]
    if pl:
        out += ["| proxy log window | runs | requests | proxy p50 ms | proxy p99 ms |", "|---|---:|---:|---:|---:|"]
        g = OrderedDict()
        for r in pl:
            g.setdefault(r["variant"], []).append(r)
        for v, rs in g.items():
            out.append(
                f"| {v} | {len(rs)} | {med([r['requests'] for r in rs]):,.0f} | {fmt(med([r['proxy_p50_ms'] for r in rs]))} "
                f"| {fmt(med([r['proxy_p99_ms'] for r in rs]))} |"
            )
        out.append("")
    out += xks_overhead(rows)
    print("\n".join(out))


TS = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?)Z")
LAT = re.compile(r"\blatency_ms=([0-9.]+)")


def parse_ts(line):
    m = TS.match(line)
    if not m:
        return None
    s = m.group(1)
    if "." in s:
        head, frac = s.split(".")
        s = f"{head}.{frac[:6]}"
        return datetime.strptime(s, "%Y-%m-%dT%H:%M:%S.%f")
    return datetime.strptime(s, "%Y-%m-%dT%H:%M:%S")


def proxy_latency(log, start, end, section, variant, run, warmup=2.0):
    with open(log, errors="replace") as f:
        lines = f.readlines()[int(start) : int(end)]
    lines = [l for l in lines if "xks request" in l and "operation=Encrypt" in l]
    first = next((parse_ts(l) for l in lines if parse_ts(l)), None)
    lat = []
    for l in lines:
        t = parse_ts(l)
        if first is not None and t is not None and (t - first).total_seconds() < float(warmup):
            continue
        m = LAT.search(l)
        if m:
            lat.append(float(m.group(1)))
    lat.sort()

    def pct(q):
        if not lat:
            return None
        return lat[min(len(lat), max(1, math.ceil(q * len(lat)))) - 1]

    print(
        json.dumps(
            {
                "section": section,
                "variant": variant,
                "run": int(run),
                "requests": len(lat),
                "proxy_p50_ms": pct(0.5),
                "proxy_p99_ms": pct(0.99),
            }
        )
    )


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "summary":
        summary(sys.argv[2])
    elif len(sys.argv) >= 8 and sys.argv[1] == "proxy-latency":
        proxy_latency(*sys.argv[2:])
    else:
        sys.exit(__doc__)
