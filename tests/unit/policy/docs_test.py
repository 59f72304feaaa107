"""docs_test: every example of docs/policy.md is real.

Each ```yaml block is written to examples/NN.yaml (or to the file its info
string names: ```yaml file=bad/ports.yaml), a block of another language to
the file its info string names (```json file=whatif/agents.log; without
one it is not written); each ```console block is run
line by line ("$ cinchctl ..." with our cinchctl) in that directory, and
its output must be exactly the lines shown (stdout then stderr).

usage: docs_test.py DOC CINCHCTL [MIN_COMMANDS MIN_YAML]  (default 3 5)
"""
import os
import re
import shlex
import subprocess
import sys
import tempfile

doc, cinchctl = sys.argv[1], sys.argv[2]
min_checks, min_yaml = (int(sys.argv[3]), int(sys.argv[4])) if len(sys.argv) > 4 else (3, 5)
text = open(doc).read()
blocks = re.findall(r"^```(\w+)([^\n]*)\n(.*?)^```", text, re.M | re.S)
failures = checks = 0
with tempfile.TemporaryDirectory() as tmp:
    os.mkdir(os.path.join(tmp, "examples"))
    n = 0
    for lang, info, body in blocks:
        m = re.search(r"file=(\S+)", info)
        if lang != "yaml" and not m:
            continue
        name = m.group(1) if m else "examples/%02d.yaml" % n
        n += lang == "yaml"
        os.makedirs(os.path.dirname(os.path.join(tmp, name)), exist_ok=True)
        with open(os.path.join(tmp, name), "w") as f:
            f.write(body)
    for lang, info, body in blocks:
        if lang != "console":
            continue
        cmds = re.split(r"^\$ ", body, flags=re.M)[1:]
        for c in cmds:
            line, _, expected = c.partition("\n")
            argv = shlex.split(line)
            if argv[0] != "cinchctl":
                continue
            r = subprocess.run([cinchctl] + argv[1:], cwd=tmp, capture_output=True, text=True)
            got = r.stdout + r.stderr
            checks += 1
            if got.strip() != expected.strip():
                failures += 1
                print("FAIL: $ %s\n--- expected\n%s--- got\n%s" % (line, expected, got))
print("%d/%d documented commands behave as shown (%d YAML examples)" % (checks - failures, checks, n))
sys.exit(1 if failures or checks < min_checks or n < min_yaml else 0)
