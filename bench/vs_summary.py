#!/usr/bin/env python3
"""Summary of bench/vs-mosquitto's raw lines (docs/benchmarks.md, "the fair harness").

Reads the RESULT / TLS / FAILED / IDLE lines of one session, takes per system the median over
the runs that count (a failed run -- loss, duplicate, refusal, lost session -- or a
generator-bound run is not a result), prints a table (median, min-max, runs that count) and
the metric lines

    NAME m5s=<value> mosquitto=<value> ratio=<m5s/mosquitto>

(m5s = the system --main names: m5s with one worker per server core, m5s-w1 on a 2-core
machine), then writes everything as JSON (--json FILE).
With --plot BASE, the paced runs of the sweep (kind=sweep: latency against offered load) go to
BASE.dat and, when gnuplot is installed, to BASE.png (p50 and p99 against the offered rate).
Usage: vs_summary.py RAW --json FILE [--main m5s-wN] [--results PATH] [--keep-generator-bound]
                     [--plot BASE] [--meta k=v ...]
Exit status 1 when a run was generator-bound (the run is listed, not counted); with
--keep-generator-bound (the smoke test) such runs are listed and counted, exit status 0."""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys

ap = argparse.ArgumentParser()
ap.add_argument("raw")
ap.add_argument("--json", required=True)
ap.add_argument("--results", default="")
ap.add_argument("--meta", nargs="*", default=[])
ap.add_argument("--keep-generator-bound", action="store_true")
ap.add_argument("--plot", default="")
ap.add_argument("--main", default="m5s-w2")
a = ap.parse_args()


def kv(fields):
    d = {}
    for f in fields:
        if "=" in f:
            k, v = f.split("=", 1)
            try:
                d[k] = float(v) if "." in v or v.lstrip("-").isdigit() else v
            except ValueError:
                d[k] = v
    return d


runs, tls, failed, idle, notes = {}, [], set(), [], []
for line in open(a.raw):
    f = line.split()
    if not f:
        continue
    if f[0] == "RESULT":
        d = kv(f[1:])
        r = runs.setdefault(int(d["run"]), {"run": int(d["run"]), "round": int(d["round"]),
                                             "kind": d["kind"], "system": d["system"]})
        r[d["phase"]] = d
    elif f[0] == "TLS":
        tls.append(kv(f[1:]))
    elif f[0] == "FAILED":
        failed.add(int(kv(f[1:])["run"]))
    elif f[0] == "IDLE" and len(f) >= 3:
        idle.append((f[1], kv(f[2:]), " ".join(f[1:])))
    elif f[0] == "#":
        notes.append(line[2:].rstrip())

gen_bound = []
for n, r in sorted(runs.items()):
    w = r.get("sat") or r.get("paced")
    r["failed"] = n in failed or "total" not in r or r["total"].get("ok") != 1
    r["generator_bound"] = bool(w and w.get("gen_bound") == 1)
    r["missed_rate"] = bool(r.get("paced") and r["paced"].get("missed") == 1)
    r["counts"] = not r["failed"] and (a.keep_generator_bound or not r["generator_bound"]) and w is not None
    if r["generator_bound"]:
        gen_bound.append(n)
for n in failed:
    if n not in runs:
        runs[n] = {"run": n, "failed": True, "counts": False}

systems = []
for r in runs.values():
    s = r.get("system")
    if s and s not in systems:
        systems.append(s)


def values(sys_, kind, key):
    out = []
    for r in runs.values():
        if r.get("system") != sys_ or r.get("kind") != kind or not r["counts"]:
            continue
        w = r.get(kind)
        if w and key in w:
            out.append(float(w[key]))
    return out


def med(sys_, kind, key):
    v = values(sys_, kind, key)
    return statistics.median(v) if v else None


ROWS = [
    ("sat", "rate", "saturation: delivered msg/s", 0),
    ("sat", "mach_us_per_msg", "saturation: CPU us per msg, machine-wide minus generator", 2),
    ("sat", "srv_us_per_msg", "saturation: CPU us per msg, server process", 2),
    ("sat", "mach_other_pct", "saturation: CPU % neither server nor generator (kernel threads, softirq, iowait, other jobs)", 0),
    ("sat", "mach_iowait_pct", "saturation: of which iowait %", 1),
    ("sat", "srv_cpu_pct", "saturation: server process CPU %", 0),
    ("sat", "gen_cpu_pct", "saturation: generator CPU % of its core", 0),
    ("sat", "srv_rss_kib", "saturation: server RSS KiB", 0),
    ("sat", "p50_us", "saturation: p50 latency us", 0),
    ("sat", "p99_us", "saturation: p99 latency us", 0),
    ("paced", "target_rate", "paced (open loop): offered msg/s", 0),
    ("paced", "send_rate", "paced: achieved send msg/s", 0),
    ("paced", "rate", "paced: delivered msg/s", 0),
    ("paced", "lag_p99_us", "paced: pacing lag p99 us", 0),
    ("paced", "p50_us", "paced: p50 latency us (from scheduled send)", 0),
    ("paced", "p99_us", "paced: p99 latency us", 0),
    ("paced", "p999_us", "paced: p99.9 latency us", 0),
    ("paced", "mach_us_per_msg", "paced: CPU us per msg, machine-wide minus generator", 2),
    ("paced", "srv_us_per_msg", "paced: CPU us per msg, server process", 2),
    ("paced", "mach_other_pct", "paced: CPU % neither server nor generator", 0),
    ("paced", "gen_cpu_pct", "paced: generator CPU % of its core", 0),
]


def fmt(x, dec):
    return f"{x:,.{dec}f}"


RATIOS = [(x, y, t) for x, y, t in ((a.main, "mosquitto", f"{a.main} / mosquitto"), ("m5s-w2", "m5s-w1", "m5s w2 / w1"),
                                     (a.main, "rabbitmq", f"{a.main} / rabbitmq")) if x in systems and y in systems]
print("| metric | " + " | ".join(systems) + "".join(f" | {t}" for _, _, t in RATIOS) + " |")
print("|---|" + "---|" * (len(systems) + len(RATIOS)))
table = {}
for kind, key, label, dec in ROWS:
    row, m = [label], {}
    for s in systems:
        v = values(s, kind, key)
        m[s] = statistics.median(v) if v else None
        row.append("-" if not v else fmt(m[s], dec) + (f" ({fmt(min(v), dec)}-{fmt(max(v), dec)})" if len(v) > 1 else ""))
        table.setdefault(f"{kind}.{key}", {})[s] = {"median": m[s], "min": min(v) if v else None,
                                                   "max": max(v) if v else None, "runs": len(v)}
    for sx, sy, _ in RATIOS:
        x, y = m.get(sx), m.get(sy)
        row.append(f"{x / y:.2f}" if x is not None and y else "-")
    print("| " + " | ".join(row) + " |")
counted = {s: sum(1 for r in runs.values() if r.get("system") == s and r["counts"]) for s in systems}
total = {s: sum(1 for r in runs.values() if r.get("system") == s) for s in systems}
missed = {s: sum(1 for r in runs.values() if r.get("system") == s and r.get("missed_rate")) for s in systems}
print("| runs that count / runs | " + " | ".join(f"{counted[s]} / {total[s]}" for s in systems) + " |")
print("| paced runs that missed their rate | " + " | ".join(str(missed[s]) for s in systems) + " |")
print()


def refused(s):
    return int(sum(r["total"].get("failed", 0) for r in runs.values() if r.get("system") == s and "total" in r))


def num(x, dec):
    return "-" if x is None else f"{x:.{dec}f}"


metrics = {}


def line(name, m5, mq, dec, ratio=True):
    metrics[name] = {"m5s": m5, "mosquitto": mq,
                     "ratio": (m5 / mq) if ratio and m5 is not None and mq else None}
    r = metrics[name]["ratio"]
    print(f"{name} m5s={num(m5, dec)} mosquitto={num(mq, dec)}" + (f" ratio={r:.3f}" if r is not None else ""))


M5, MQ = a.main, "mosquitto"
line("p2p_msgs_per_s", med(M5, "sat", "rate"), med(MQ, "sat", "rate"), 0)
p99 = lambda s: None if med(s, "paced", "p99_us") is None else med(s, "paced", "p99_us") / 1000
line("p99_ms_at_half_load", p99(M5), p99(MQ), 3)
line("cpu_us_per_msg", med(M5, "sat", "mach_us_per_msg"), med(MQ, "sat", "mach_us_per_msg"), 2)
line("cpu_us_per_msg_at_half_load", med(M5, "paced", "mach_us_per_msg"), med(MQ, "paced", "mach_us_per_msg"), 2)
for name, d, text in idle:  # bench/idle.sh's lines, printed as it wrote them
    metrics[name] = d
    print(text)
rm5, rmq = refused(M5), refused(MQ)
metrics["refused"] = {"m5s": rm5, "mosquitto": rmq, "ratio": (rm5 / rmq) if rm5 and rmq else None}
print(f"refused m5s={rm5} mosquitto={rmq}" + (f" ratio={rm5 / rmq:.3f}" if rm5 and rmq else ""))
# the durable peer (--rabbitmq): the same metrics against RabbitMQ's MQTT plugin
if "rabbitmq" in systems:
    RB = "rabbitmq"
    for name, x, y, dec in (("rabbitmq_p2p_msgs_per_s", med(M5, "sat", "rate"), med(RB, "sat", "rate"), 0),
                            ("rabbitmq_p99_ms_at_half_load", p99(M5), p99(RB), 3),
                            ("rabbitmq_cpu_us_per_msg", med(M5, "sat", "mach_us_per_msg"), med(RB, "sat", "mach_us_per_msg"), 2)):
        metrics[name] = {"m5s": x, "rabbitmq": y, "ratio": (x / y) if x is not None and y else None}
        print(f"{name} m5s={num(x, dec)} rabbitmq={num(y, dec)}"
              + (f" ratio={metrics[name]['ratio']:.3f}" if metrics[name]["ratio"] is not None else ""))
# m5s's paths Mosquitto has no peer for: no ratio
# A generator-bound run of these is not a result, but it compares with nothing either: when
# every run of one was generator-bound, the line gives "-" and the rate m5s reached anyway as
# a lower bound, and the session does not fail for it (the generator, not m5s, ran out).
UNPAIRED = ("m5s-dtls", "m5s-north")
for name, s_ in (("dtls_p2p_msgs_per_s", "m5s-dtls"), ("north_a2p_msgs_per_s", "m5s-north")):
    if s_ in systems:
        metrics[name] = {"m5s": med(s_, "sat", "rate")}
        low = [float(r["sat"]["rate"]) for r in runs.values() if r.get("system") == s_
               and r.get("generator_bound") and not r["failed"] and "sat" in r]
        if metrics[name]["m5s"] is None and low:
            metrics[name]["m5s_at_least"] = statistics.median(low)
            print(f"{name} m5s=- (generator-bound: m5s delivered at least {statistics.median(low):.0f})")
        else:
            print(f"{name} m5s={num(metrics[name]['m5s'], 0)}")
if "m5s-w1" in systems and "m5s-w2" in systems:
    w1 = med("m5s-w1", "sat", "rate")
    w2 = med("m5s-w2", "sat", "rate")
    metrics["w2_over_w1_msgs_per_s"] = {"m5s": w2 / w1 if w1 and w2 else None}
    print(f"w2_over_w1_msgs_per_s m5s={num(metrics['w2_over_w1_msgs_per_s']['m5s'], 3)}")
for n in gen_bound:
    print(f"# run {n} ({runs[n]['system']} {runs[n]['kind']}) GENERATOR-BOUND: not a result"
          + (" (counted: --keep-generator-bound)" if a.keep_generator_bound else ""))
for n in sorted(failed):
    print(f"# run {n} ({runs[n].get('system', '?')} {runs[n].get('kind', '?')}) FAILED: not a result")

# ---- latency against offered load (the sweep) ----
sweep = []
for r in runs.values():
    if r.get("kind") != "sweep" or "paced" not in r:
        continue
    w = r["paced"]
    sweep.append({"system": r["system"], "run": r["run"], "offered": w["target_rate"],
                  "delivered": w["rate"], "p50_ms": w["p50_us"] / 1000, "p99_ms": w["p99_us"] / 1000,
                  "missed": w.get("missed") == 1, "counts": r["counts"],
                  "generator_bound": r["generator_bound"], "failed": r["failed"]})
sweep.sort(key=lambda x: (x["system"], x["offered"]))
if sweep and a.plot:
    ssys = [s_ for s_ in systems if any(x["system"] == s_ for x in sweep)]
    with open(a.plot + ".dat", "w") as fh:
        fh.write("# latency against offered load (open loop); per system a block:\n"
                 "# offered_msgs_per_s delivered_msgs_per_s p50_ms p99_ms missed counts\n")
        for s_ in ssys:
            fh.write(f"# {s_}\n")
            for x in sweep:
                if x["system"] == s_:
                    fh.write(f"{x['offered']:.0f} {x['delivered']:.0f} {x['p50_ms']:.3f} {x['p99_ms']:.3f} "
                             f"{int(x['missed'])} {int(x['counts'])}\n")
            fh.write("\n\n")
    # named without their directory: results files must not carry a path of this machine
    print(f"# latency against offered load: {os.path.basename(a.plot)}.dat")
    if shutil.which("gnuplot"):
        plots = []
        for i, s_ in enumerate(ssys):
            plots.append(f"'{a.plot}.dat' index {i} using 1:4 with linespoints title '{s_} p99'")
            plots.append(f"'{a.plot}.dat' index {i} using 1:3 with linespoints dashtype 2 title '{s_} p50'")
        for i, s_ in enumerate(ssys):  # a run below 95 % of its offered rate: circled
            plots.append(f"'{a.plot}.dat' index {i} using 1:($5 > 0 ? $4 : 1/0) with points pointtype 6 "
                         f"pointsize 3 lc rgb 'red' " + ("title 'missed its rate'" if i == 0 else "notitle"))
        gp = (f"set terminal png size 900,600\nset output '{a.plot}.png'\n"
              "set title 'Latency against offered load (open loop, 64-byte point-to-point)'\n"
              "set xlabel 'offered msg/s'\nset ylabel 'latency ms (from the scheduled send)'\n"
              "set logscale y\nset key left top\nset grid\nplot " + ", ".join(plots) + "\n")
        rc = subprocess.run(["gnuplot"], input=gp, text=True).returncode
        print(f"# plot: {os.path.basename(a.plot)}.png" if rc == 0 else "# plot: gnuplot failed")
    else:
        print("# plot: gnuplot not installed (make bench-full installs gnuplot-nox)")

meta = dict(m.split("=", 1) for m in a.meta if "=" in m)
doc = {"results_file": a.results, "meta": meta, "metrics": metrics, "table": table, "tls": tls,
       "runs": [runs[n] for n in sorted(runs)], "notes": notes, "sweep": sweep}
with open(a.json, "w") as fh:
    json.dump(doc, fh, indent=1, sort_keys=True)
paired_gen_bound = [n for n in gen_bound if runs[n].get("system") not in UNPAIRED]
sys.exit(1 if paired_gen_bound and not a.keep_generator_bound else 0)
