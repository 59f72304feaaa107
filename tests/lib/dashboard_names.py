#!/usr/bin/python3
"""dashboard_names: checks that a Grafana dashboard is valid JSON and that
every PromQL expression of its panels names only metric families that exist.

    dashboard_names.py DASHBOARD.json KNOWN

KNOWN is either a file of metric names, one a line (what a Prometheus saw:
/api/v1/label/__name__/values), or docs/metrics.md, whose `name` cells
declare the families (a histogram's _bucket, _sum and _count go with it).
Exit 0 when every name is known, 1 naming those that are not, 2 on bad
input (not JSON, no expression at all)."""
import json
import re
import sys

KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and",
            "or", "unless", "offset", "inf", "nan"}
IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")


def exprs(node):
    """Every "expr" string in the dashboard, at any depth."""
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "expr" and isinstance(v, str):
                yield v
            else:
                yield from exprs(v)
    elif isinstance(node, list):
        for v in node:
            yield from exprs(v)


def names(expr):
    """The metric names an expression selects."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings
    e = re.sub(r"\{[^}]*\}", "", e)  # label matchers
    e = re.sub(r"\[[^\]]*\]", "", e)  # ranges ($__rate_interval)
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    e = re.sub(r"\$\w+", "", e)  # Grafana variables
    out = set()
    for m in IDENT.finditer(e):
        rest = e[m.end():].lstrip()
        if rest.startswith("(") or m.group(0).lower() in KEYWORDS:
            continue  # a function or an operator
        out.add(m.group(0))
    return out


def known_names(path):
    text = open(path, encoding="utf-8").read()
    if not path.endswith(".md"):
        return set(text.split())
    fams = set()
    in_table = False  # in a table whose first column is "name"
    for line in text.splitlines():
        cells = line.split("|")
        if len(cells) < 3:
            in_table = False
        elif cells[1].strip() == "name":
            in_table = True
        elif in_table:
            fams.update(re.findall(r"`([a-z_:][a-z0-9_:]*)`", cells[1]))
    for f in list(fams):
        fams.update({f + "_bucket", f + "_sum", f + "_count"})
    return fams


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: dashboard_names.py DASHBOARD.json KNOWN")
    try:
        dash = json.load(open(sys.argv[1], encoding="utf-8"))
    except (OSError, ValueError) as e:
        print(f"{sys.argv[1]}: not a JSON document: {e}")
        sys.exit(2)
    all_exprs = list(exprs(dash))
    if not all_exprs:
        print(f"{sys.argv[1]}: no PromQL expression")
        sys.exit(2)
    known = known_names(sys.argv[2])
    missing = sorted({n for x in all_exprs for n in names(x)} - known)
    for n in missing:
        print(f"{sys.argv[1]}: unknown metric {n}")
    sys.exit(1 if missing else 0)


if __name__ == "__main__":
    main()
