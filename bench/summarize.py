#!/usr/bin/env python3
"""Summary of bench/run.sh's RESULT lines: per system the median (min-max) of each metric over
the runs, and the ratios m5s(2 workers)/mosquitto and m5s 2 workers/1 worker (median over
median); then the group fan-out (phase=fan lines) the same way. Usage: summarize.py RAW_FILE"""
import statistics
import sys
from collections import defaultdict

vals = defaultdict(list)  # (system, phase, key) -> [float]
systems = []
for line in open(sys.argv[1]):
    if not line.startswith("RESULT "):
        continue
    kv = dict(f.split("=", 1) for f in line.split()[1:] if "=" in f)
    s = kv["system"]
    if s not in systems:
        systems.append(s)
    for k, v in kv.items():
        try:
            vals[(s, kv["phase"], k)].append(float(v))
        except ValueError:
            pass

ROWS = [
    ("sat", "rate", "saturation: delivered msg/s", 0),
    ("sat", "srv_cpu_pct", "saturation: server CPU %", 0),
    ("sat", "srv_sys_pct", "saturation: of which kernel (system) CPU %", 0),
    ("sat", "srv_us_per_msg", "saturation: server CPU us per delivered msg", 1),
    ("sat", "gen_cpu_pct", "saturation: generator CPU %", 0),
    ("sat", "srv_rss_kib", "saturation: server RSS KiB", 0),
    ("sat", "p50_us", "saturation: p50 latency us", 0),
    ("sat", "p99_us", "saturation: p99 latency us", 0),
    ("sat", "p999_us", "saturation: p99.9 latency us", 0),
    ("half", "rate", "50 % load: delivered msg/s", 0),
    ("half", "srv_cpu_pct", "50 % load: server CPU %", 0),
    ("half", "srv_us_per_msg", "50 % load: server CPU us per msg", 1),
    ("half", "p50_us", "50 % load: p50 latency us", 0),
    ("half", "p99_us", "50 % load: p99 latency us", 0),
    ("half", "p999_us", "50 % load: p99.9 latency us", 0),
    ("total", "lost", "lost per run", 0),
    ("total", "dup", "duplicated per run", 0),
    ("total", "failed", "refused by the server per run", 0),
]


def fmt(x, dec):
    return f"{x:,.{dec}f}"


def cell(s, ph, k, dec):
    v = vals.get((s, ph, k))
    if not v:
        return "-", None
    m = statistics.median(v)
    if len(v) == 1:
        return fmt(m, dec), m
    return f"{fmt(m, dec)} ({fmt(min(v), dec)}-{fmt(max(v), dec)})", m


FAN_ROWS = [
    ("fan", "deliveries_per_s", "burst: deliveries/s", 0),
    ("fan", "fanout_s", "burst: s until every member has every message", 3),
    ("fan", "reach_one_ms", "one message alone: ms until every member has it", 1),
    ("fan", "reach_p50_ms", "burst: ms from a message's send to its last member (median message)", 1),
    ("fan", "srv_us_per_delivery", "burst: server CPU us per delivery", 1),
    ("fan", "connect_s", "members' handshakes + REG: s", 2),
    ("fan", "hs_per_s", "members' handshakes + REG per s", 0),
    ("fan", "duplicates", "duplicated deliveries per run", 0),
    ("fan", "missing", "missing deliveries per run", 0),
    ("fan", "busy", "sender's messages answered 5.03 (sent again after Max-Age) per run", 0),
]

mq = "mosquitto" if "mosquitto" in systems else None
w2 = "m5s-w2" if "m5s-w2" in systems else None
w1 = "m5s-w1" if "m5s-w1" in systems else None
runs = max((len(vals.get((s, "sat", "rate"), [])) for s in systems), default=0)
fan_runs = max((len(vals.get((s, "fan", "deliveries_per_s"), [])) for s in systems), default=0)
if runs:
    print(f"Medians over {runs} runs (min-max).\n")
    head = ["metric"] + systems
    if mq and w2:
        head.append("m5s-w2 / mosquitto")
    if w1 and w2:
        head.append("m5s w2 / w1")
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for ph, k, label, dec in ROWS:
        row, med = [label], {}
        for s in systems:
            c, m = cell(s, ph, k, dec)
            row.append(c)
            med[s] = m
        if mq and w2:
            a, b = med.get(w2), med.get(mq)
            row.append(f"{a / b:.2f}" if a is not None and b else "-")
        if w1 and w2:
            a, b = med.get(w2), med.get(w1)
            row.append(f"{a / b:.2f}" if a is not None and b else "-")
        print("| " + " | ".join(row) + " |")

if fan_runs:
    fsys = [x for x in systems if (x, "fan", "deliveries_per_s") in vals]
    members = vals.get((fsys[0], "fan", "members"), [0])[0]
    print(f"\nGroup fan-out, {members:,.0f} members online: medians over {fan_runs} runs (min-max).\n")
    head = ["metric"] + fsys
    if mq in fsys and w2 in fsys:
        head.append("m5s-w2 / mosquitto")
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for ph, k, label, dec in FAN_ROWS:
        row, med = [label], {}
        for x in fsys:
            c, m = cell(x, ph, k, dec)
            row.append(c)
            med[x] = m
        if mq in fsys and w2 in fsys:
            a, b = med.get(w2), med.get(mq)
            row.append(f"{a / b:.2f}" if a is not None and b else "-")
        print("| " + " | ".join(row) + " |")
