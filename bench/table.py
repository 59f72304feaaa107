"""table: the medians of bench/proxies.sh's rounds as a Markdown table.

Input lines: peer rps p50_ms p99_ms newconn_rps gbit idle_kib load_kib
per_conn_bytes fixed_p50_ms fixed_p99_ms, one per peer and round. Ratios are to the direct
(plaintext, no proxy) baseline measured in the same run.
"""
import statistics
import sys

COLS = ["rps", "p50", "p99", "nc", "gbit", "idle", "load", "per", "fp50", "fp99"]


def main():
    path, rounds, secs = sys.argv[1], sys.argv[2], sys.argv[3]
    runs = {}
    for line in open(path):
        f = line.split()
        if len(f) != 1 + len(COLS):
            continue
        runs.setdefault(f[0], []).append([float(x) for x in f[1:]])
    med = {p: {c: statistics.median(r[i] for r in rs) for i, c in enumerate(COLS)}
           for p, rs in runs.items()}
    base = med.get("direct")
    print(f"Medians of {rounds} rounds, {secs} s per measurement, all peers side by side "
          "in one run on the same two namespaces.\n")
    print("| peer | keep-alive req/s | × plaintext | p50 / p99 ms (saturated) "
          "| p50 / p99 ms at 1,000 req/s | p99 added ms at 1,000 req/s "
          "| new conn/s | iperf3 Gbit/s | × plaintext | RSS idle MiB | RSS loaded MiB "
          "| KiB per idle conn |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for p, m in med.items():
        ratio = (lambda a, b: "%.2f" % (a / b) if b else "-")
        print("| %s | %.0f | %s | %.2f / %.2f | %.2f / %.2f | %s | %.0f | %.2f | %s | %s | %s "
              "| %s |" % (
            p, m["rps"], ratio(m["rps"], base["rps"]) if base else "-", m["p50"], m["p99"],
            m["fp50"], m["fp99"],
            "%.2f" % (m["fp99"] - base["fp99"]) if base and p != "direct" else "-",
            m["nc"], m["gbit"], ratio(m["gbit"], base["gbit"]) if base else "-",
            "-" if p == "direct" else "%.1f" % (m["idle"] / 1024),
            "-" if p == "direct" else "%.1f" % (m["load"] / 1024),
            "-" if p == "direct" else "%.1f" % (m["per"] / 1024)))


if __name__ == "__main__":
    main()
