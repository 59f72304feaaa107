"""table: the medians of bench/proxies.sh's rounds as Markdown tables.

    table.py RESULTS ROUNDS SECS [FULL LIMIT HOLD]

RESULTS lines: peer rps p50_ms p99_ms newconn_rps gbit idle_kib load_kib
per_conn_bytes fixed_p50_ms fixed_p99_ms, then (newer runs) CPU ms per 10k
requests client/server, CPU s per GB client/server, RSS KiB client/server 1 s
and 10 s after the load; one line per peer and round. FULL lines: peer
newconn_rps with resumption off. LIMIT: hs_bench's full handshakes/s on one
core. HOLD lines: n client_before server_before client_held server_held (KiB).
Ratios are to the direct (plaintext, no proxy) baseline and to the best
peer (stunnel, HAProxy, nginx) measured in the same run; with a `before`
peer (proxies.sh --before), the cinch/before ratios of the same run too.
"""
import statistics
import sys

COLS = ["rps", "p50", "p99", "nc", "gbit", "idle", "load", "per", "fp50", "fp99"]
MORE = ["cpu_req_c", "cpu_req_s", "cpu_gb_c", "cpu_gb_s", "rss1_c", "rss1_s", "rss10_c",
        "rss10_s"]
PEERS = ("stunnel", "haproxy", "nginx")


def medians(path, ncols):
    runs = {}
    for line in open(path):
        f = line.split()
        if len(f) != 1 + ncols:
            continue
        runs.setdefault(f[0], []).append([float(x) for x in f[1:]])
    return {p: [statistics.median(r[i] for r in rs) for i in range(ncols)]
            for p, rs in runs.items()}


def best(med, key, lower=False):
    vals = [med[p][key] for p in PEERS if p in med]
    if not vals:
        return None
    return min(vals) if lower else max(vals)


def ratio(a, b):
    # "-" for no reference, or a non-positive one (an added p99 below
    # the direct path's own: the noise of that run, no base for a ratio)
    return "%.2f" % (a / b) if b > 0 else "-"


def main():
    path, rounds, secs = sys.argv[1], sys.argv[2], sys.argv[3]
    cols = COLS + MORE
    raw = medians(path, len(cols))
    if not raw:  # results of a run before the CPU and idle columns
        cols = COLS
        raw = medians(path, len(cols))
    med = {p: dict(zip(cols, v)) for p, v in raw.items()}
    base = med.get("direct")
    if med:
        main_table(med, base, rounds, secs)
    extra_tables(med, base, cols)
    if "plain" in med and "cinch" in med and "cpu_req_c" in cols:
        floor_table(med, base)
    if "before" in med and "cinch" in med:
        before_after(med["before"], med["cinch"], cols)


def floor_table(med, base):
    """Each measure against the plaintext relay pair (peer plain): what a
    pair of user-space relays costs on this machine before any TLS."""
    print("\nAgainst the floor: the same two relays carrying plaintext (peer `plain`, "
          "nginx stream without TLS), medians of the same run:\n")
    print("| measure | plain (floor) | cinch | cinch / floor | best TLS peer | best / floor |")
    print("|---|---|---|---|---|---|")
    both = {p: {k: m[k + "_c"] + m[k + "_s"] for k in ("cpu_req", "cpu_gb")}
            for p, m in med.items() if p != "direct"}
    for label, key, lower in (("keep-alive req/s", "rps", False),
                              ("iperf3 Gbit/s", "gbit", False),
                              ("p99 added ms at 1,000 req/s", "fp99", True),
                              ("CPU ms per 10k requests, both sides", "cpu_req", True),
                              ("CPU s per GB, both sides", "cpu_gb", True)):
        if key.startswith("cpu"):
            val = {p: both[p][key] for p in both}
        elif key == "fp99":
            if not base:
                continue
            val = {p: m["fp99"] - base["fp99"] for p, m in med.items() if p != "direct"}
        else:
            val = {p: m[key] for p, m in med.items()}
        peers = [val[p] for p in PEERS if p in val]
        b = (min(peers) if lower else max(peers)) if peers else 0
        print("| %s | %.2f | %.2f | %s | %.2f | %s |" % (
            label, val["plain"], val["cinch"], ratio(val["cinch"], val["plain"]), b,
            ratio(b, val["plain"])))


def before_after(b, a, cols):
    print("\nThe agent before and after (peer `before` is the --before build, `cinch` "
          "the --bin build), medians; ratio after/before:\n")
    print("| measure | before | after | after / before |")
    print("|---|---|---|---|")
    rows = [("keep-alive req/s", "rps", 1), ("new conn/s (resumption)", "nc", 1),
            ("iperf3 Gbit/s", "gbit", 1), ("RSS idle MiB, both sides", "idle", 1024),
            ("RSS loaded MiB, both sides", "load", 1024),
            ("KiB per idle conn, both sides", "per", 1024)]
    if "rss1_c" in cols:
        rows += [("RSS MiB 1 s after load, both sides", ("rss1_c", "rss1_s"), 1024),
                 ("RSS MiB 10 s after load, both sides", ("rss10_c", "rss10_s"), 1024),
                 ("CPU ms per 10k requests, both sides", ("cpu_req_c", "cpu_req_s"), 1),
                 ("CPU s per GB, both sides", ("cpu_gb_c", "cpu_gb_s"), 1)]
    for label, key, div in rows:
        keys = key if isinstance(key, tuple) else (key,)
        bv, av = (sum(m[k] for k in keys) / div for m in (b, a))
        print("| %s | %.2f | %.2f | %s |" % (label, bv, av, ratio(av, bv)))


def main_table(med, base, rounds, secs):
    print(f"Medians of {rounds} rounds, {secs} s per measurement, all peers side by side "
          "in one run on the same two namespaces.\n")
    print("| peer | keep-alive req/s | × plaintext | p50 / p99 ms (saturated) "
          "| p50 / p99 ms at 1,000 req/s | p99 added ms at 1,000 req/s "
          "| new conn/s | iperf3 Gbit/s | × plaintext | RSS idle MiB | RSS loaded MiB "
          "| KiB per idle conn |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for p, m in med.items():
        print("| %s | %.0f | %s | %.2f / %.2f | %.2f / %.2f | %s | %.0f | %.2f | %s | %s | %s "
              "| %s |" % (
                  p, m["rps"], ratio(m["rps"], base["rps"]) if base else "-", m["p50"], m["p99"],
                  m["fp50"], m["fp99"],
                  "%.2f" % (m["fp99"] - base["fp99"]) if base and p != "direct" else "-",
                  m["nc"], m["gbit"], ratio(m["gbit"], base["gbit"]) if base else "-",
                  "-" if p == "direct" else "%.1f" % (m["idle"] / 1024),
                  "-" if p == "direct" else "%.1f" % (m["load"] / 1024),
                  "-" if p == "direct" else "%.1f" % (m["per"] / 1024)))
    if "cinch" in med and any(p in med for p in PEERS):
        c = med["cinch"]
        print("\nCinch against the best peer of the same run (higher is better for "
              "the first three, lower for the rest):\n")
        print("| measure | cinch | best peer | ratio |")
        print("|---|---|---|---|")
        for label, key, lower in (("keep-alive req/s", "rps", False),
                                  ("new conn/s (resumption)", "nc", False),
                                  ("iperf3 Gbit/s", "gbit", False),
                                  ("p99 added ms at 1,000 req/s", "fp99", True),
                                  ("RSS idle MiB, both sides", "idle", True),
                                  ("KiB per idle conn, both sides", "per", True)):
            b = best(med, key, lower)
            cv = c[key]
            if key == "fp99" and base:
                cv -= base["fp99"]
                b = min(med[p]["fp99"] - base["fp99"] for p in PEERS if p in med)
            if key in ("idle", "per"):
                cv, b = cv / 1024, b / 1024
            print("| %s | %.2f | %.2f | %s |" % (label, cv, b, ratio(cv, b)))


def extra_tables(med, base, cols):
    if "cpu_req_c" in cols and med:
        print("\nCPU per unit of work and idle memory after the load, per side "
              "(client / server; CPU is utime + stime from /proc):\n")
        print("| peer | CPU ms per 10k requests | CPU s per GB | RSS MiB 1 s after load "
              "| RSS MiB 10 s after load |")
        print("|---|---|---|---|---|")
        for p, m in med.items():
            if p == "direct":
                continue
            print("| %s | %.0f / %.0f | %.2f / %.2f | %.1f / %.1f | %.1f / %.1f |" % (
                p, m["cpu_req_c"], m["cpu_req_s"], m["cpu_gb_c"], m["cpu_gb_s"],
                m["rss1_c"] / 1024, m["rss1_s"] / 1024, m["rss10_c"] / 1024,
                m["rss10_s"] / 1024))
        if "cinch" in med and any(p in med for p in PEERS):
            for label, k in (("CPU per 10k requests", "cpu_req"), ("CPU per GB", "cpu_gb")):
                tot = {p: med[p][k + "_c"] + med[p][k + "_s"] for p in med if p != "direct"}
                b = min((tot[p] for p in PEERS if p in tot), default=0)
                print("\n%s, both sides: cinch %.2f, best peer %.2f, ratio %s." % (
                    label, tot["cinch"], b, ratio(tot["cinch"], b)), end="")
            print()
    if len(sys.argv) > 6:
        full = {p: v[0] for p, v in medians(sys.argv[4], 1).items()}
        limit = float(sys.argv[5] or 0)
    else:
        full, limit = {}, 0
    if full:
        print("\nFull handshakes only (every peer restarted with TLS resumption off), "
              "new connections/s; the machine's limit: %.0f full mutual handshakes/s on "
              "one core, both ends (hs_bench; an agent does one end, each on its core).\n"
              % limit)
        print("| peer | new conn/s, full handshakes | × machine limit | new conn/s, resumption |")
        print("|---|---|---|---|")
        for p, v in full.items():
            print("| %s | %.0f | %s | %.0f |" % (p, v, ratio(v, limit),
                                                 med[p]["nc"] if p in med else 0))
    if len(sys.argv) > 6:
        for line in open(sys.argv[6]):
            f = [float(x) for x in line.split()]
            if len(f) != 5:
                continue
            n = f[0]
            print("\n%d connections held at once through the agent pair, each with one "
                  "request answered: client agent %.1f -> %.1f MiB RSS, server agent "
                  "%.1f -> %.1f MiB (%.1f and %.1f KiB per connection)." % (
                      n, f[1] / 1024, f[3] / 1024, f[2] / 1024, f[4] / 1024,
                      (f[3] - f[1]) / n, (f[4] - f[2]) / n))


if __name__ == "__main__":
    main()
