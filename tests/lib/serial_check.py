#!/usr/bin/python3
"""serial_check: every ctest test is RUN_SERIAL but the rotation pair.

`make check` runs ctest -j2 so that e2e.ca_rotate and e2e.svid_rotation,
which mostly wait out real certificate lifetimes, run side by side; every
other test must keep the machine to itself (tests/CMakeLists.txt). A test
added with a bare add_test would silently run beside a rotation scenario:
this reads ctest's own description of the suite (--show-only=json-v1) and
fails naming any such test.

usage: serial_check.py BUILD_DIR
"""
import json
import subprocess
import sys

BESIDE = {"e2e.ca_rotate", "e2e.svid_rotation"}


def main():
    out = subprocess.run(["ctest", "--show-only=json-v1"], cwd=sys.argv[1], check=True,
                         capture_output=True, text=True, timeout=60).stdout
    tests = json.loads(out)["tests"]
    bad = []
    for t in tests:
        props = {p["name"]: p["value"] for p in t.get("properties", [])}
        serial = bool(props.get("RUN_SERIAL", False))
        if serial == (t["name"] in BESIDE):
            bad.append("%s: RUN_SERIAL %s" % (t["name"], serial))
    names = {t["name"] for t in tests}
    for name in BESIDE - names:
        bad.append("%s: not in the suite" % name)
    for line in bad:
        print("FAIL:", line)
    print("%d tests, %d run beside each other, %d wrong" % (len(tests), len(BESIDE & names), len(bad)))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
