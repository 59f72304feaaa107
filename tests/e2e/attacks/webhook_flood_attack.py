#!/usr/bin/python3
"""Attack: the injection webhook's body budget (issue #12, hole 6).

What it attacks: the injection webhook (HTTPS, 15017 in a cluster) of a real
cinch-control, which anyone on the pod network can reach and which the API
server calls with failurePolicy Fail: if it cannot answer, no pod is created.
Before the fix, eight ~100-byte HTTP/1.1 heads declaring Content-Length 4 MiB
made it reserve 8 MiB each from its 64 MiB budget, and a real AdmissionReview
was answered 503.

How (loopback only, raw TLS from Python's ssl, HTTP/2 frames with the h2
package, everything bounded in count and time):
  - HEADS (64) HTTP/1.1 connections from 127.0.0.20-27 (the per-source cap
    is 8) each send a head declaring Content-Length 4 MiB (the largest
    allowed) and then trickle one byte every half second (half of them) or
    stall;
  - H2_CONNS HTTP/2 connections from 127.0.0.4 open 32 streams each, every
    one declaring 4 MiB and sending 1 KiB of it, and keep their connection
    alive with PINGs (which keeps the connection's idle timer from firing);
  - meanwhile a real AdmissionReview (tests/unit/k8s/fixtures/rs_pod.json,
    as tests/unit/k8s/webhook_test.py sends them) is posted with curl over
    HTTP/1.1 and over HTTP/2 and must be answered 200 with a JSON patch
    adding the agent;
  - the trickling and stalled HTTP/1.1 connections are closed at the request
    timeout (10 s), and every HTTP/2 stream still waiting for its body is
    answered 408 then, although its connection is not idle;
  - a head declaring 4 MiB + 1 is answered 413 at once;
  - from one more address only 8 of 16 connections are kept
    (--webhook-max-connections-per-source default), the rest closed at once
    and logged;
  - whole bodies, not just heads: 20 connections from one address each send
    4 MiB - 1 of a 4 MiB body and stall (80 MiB wanted, the budget is 64 MiB):
    only 8 get in, and real reviews are still answered 200 over both
    protocols;
  - one HTTP/2 connection sends 1 MiB on each of 17 streams: a connection
    holds at most 4 MiB, the streams beyond are answered 503.
Fails on the old code: the real review gets 503, the HTTP/2 streams are never
answered, and every connection from one address is served.
"""
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time

import h2.config
import h2.connection
import h2.events
import h2.exceptions

SRC = os.environ.get("CINCH_SRC", os.path.join(os.path.dirname(__file__), "..", "..", ".."))
BUILD = os.environ.get("CINCH_BUILD", os.path.join(SRC, "build", "check"))
FIXTURES = os.path.join(SRC, "tests", "unit", "k8s", "fixtures")
sys.path.insert(0, os.path.join(SRC, "tests", "unit", "k8s"))
sys.argv[1:] = [os.path.join(BUILD, "bin", "cinch-control"),
                os.path.join(BUILD, "bin", "inject_driver"), FIXTURES]
import webhook_test as wt  # noqa: E402  (reads its paths from argv)

HEADS = 64
H2_CONNS = 4
H2_STREAMS = 32          # WEBHOOK_MAX_STREAMS_DEFAULT
PER_SOURCE = 8           # WEBHOOK_MAX_PER_SOURCE_DEFAULT
REQUEST_S = 10           # WEBHOOK_REQUEST_MS_DEFAULT
DECLARED = 4 << 20       # WEBHOOK_MAX_BODY_DEFAULT

failures = 0


def check(cond, what):
    global failures
    print("%s: %s" % ("ok" if cond else "FAIL", what), flush=True)
    if not cond:
        failures += 1


def connect(src, port, alpn):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols([alpn])
    raw = socket.socket()
    raw.bind((src, 0))
    raw.settimeout(5)
    raw.connect(("127.0.0.1", port))
    return ctx.wrap_socket(raw, server_hostname=wt.HOST)


def head(length):
    return ("POST /inject?timeout=10s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
            "Content-Length: %d\r\n\r\n" % (wt.HOST, length)).encode()


def closed(s):
    """True when the server closed s (EOF or reset), without blocking."""
    s.setblocking(False)
    try:
        return s.recv(4096) == b""
    except (ssl.SSLWantReadError, BlockingIOError):
        return False
    except (OSError, ssl.SSLError):
        return True


class H2Hostile:
    """HTTP/2: 32 streams declaring 4 MiB, 1 KiB sent on each, then PINGs."""

    def __init__(self, src, port):
        self.s = connect(src, port, "h2")
        self.h2 = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding=None))
        self.h2.initiate_connection()
        self.status = {}
        self.dead = False
        for _ in range(H2_STREAMS):
            sid = self.h2.get_next_available_stream_id()
            self.h2.send_headers(sid, [(b":method", b"POST"), (b":scheme", b"https"),
                                       (b":path", b"/inject"), (b":authority", wt.HOST.encode()),
                                       (b"content-type", b"application/json"),
                                       (b"content-length", str(DECLARED).encode())])
            self.h2.send_data(sid, b"{" + b" " * 1023)
            self.status[sid] = None
        self.s.sendall(self.h2.data_to_send())
        self.s.setblocking(False)

    def pump(self):
        """Answers what arrived, PINGs so the connection is never idle."""
        if self.dead:
            return
        try:
            while True:
                data = self.s.recv(65536)
                if not data:
                    self.dead = True
                    return
                for ev in self.h2.receive_data(data):
                    if isinstance(ev, h2.events.ResponseReceived):
                        self.status[ev.stream_id] = int(dict(ev.headers)[b":status"])
        except (ssl.SSLWantReadError, BlockingIOError):
            pass
        except (OSError, ssl.SSLError, h2.exceptions.ProtocolError):
            self.dead = True
            return
        self.h2.ping(b"12345678")
        self.s.setblocking(True)
        try:
            self.s.sendall(self.h2.data_to_send())
        except (OSError, ssl.SSLError):
            self.dead = True
        self.s.setblocking(False)


def real_review(port, version):
    review = open(os.path.join(FIXTURES, "rs_pod.json"), "rb").read()
    code, ver, body, err = wt.curl(port, version, review)
    try:
        patched = "patch" in json.loads(body).get("response", {})
    except ValueError:
        patched = False
    return code, patched, "%s %s" % (body[:100], err.strip())


def attack(port, log):
    # HTTP/1.1 heads declaring 4 MiB, from two addresses.
    heads = []
    for i in range(HEADS):
        s = connect("127.0.0.%d" % (20 + i % 8), port, "http/1.1")
        s.sendall(head(DECLARED) + b"{")
        heads.append(s)
    # HTTP/2 streams declaring 4 MiB.
    h2c = [H2Hostile("127.0.0.4", port) for _ in range(H2_CONNS)]
    t0 = time.time()
    print("%d heads and %d HTTP/2 streams declaring 4 MiB are held" %
          (len(heads), H2_CONNS * H2_STREAMS), flush=True)

    reviewed = False
    while time.time() - t0 < REQUEST_S + 3:
        for i, s in enumerate(heads):
            if i % 2 == 0:  # trickle
                try:
                    s.setblocking(True)
                    s.sendall(b" ")
                except (OSError, ssl.SSLError):
                    pass
        for h in h2c:
            h.pump()
        if not reviewed and time.time() - t0 > 1:
            reviewed = True
            for version in ("--http1.1", "--http2"):
                code, patched, detail = real_review(port, version)
                check(code == 200 and patched,
                      "a real AdmissionReview over %s during the flood: HTTP %d, patch %s (%s)" %
                      (version, code, patched, detail if not patched else "ok"))
        time.sleep(0.5)

    n_closed = sum(closed(s) for s in heads)
    check(n_closed == len(heads), "the heads are closed at the %d s request timeout "
          "(%d of %d, trickling or not)" % (REQUEST_S, n_closed, len(heads)))
    for s in heads:
        s.close()
    for h in h2c:
        h.pump()
    got = [st for h in h2c for st in h.status.values()]
    check(got.count(408) == len(got),
          "every HTTP/2 stream still waiting for its body is answered 408 at the request "
          "timeout although its connection is not idle (%d of %d; %s)" %
          (got.count(408), len(got), sorted(set(map(str, got)))))
    for h in h2c:
        h.s.close()

    # A declared length over the limit: 413 at once.
    s = connect("127.0.0.5", port, "http/1.1")
    s.sendall(head(DECLARED + 1))
    s.settimeout(5)
    try:
        answer = s.recv(200)
    except (OSError, ssl.SSLError):
        answer = b""
    s.close()
    check(answer.startswith(b"HTTP/1.1 413 "), "Content-Length 4 MiB + 1: %r" % answer[:40])

    # The per-source cap: a refused connection is closed at accept, so its
    # handshake fails.
    held = []
    for _ in range(PER_SOURCE + 8):
        try:
            held.append(connect("127.0.0.6", port, "http/1.1"))
        except (OSError, ssl.SSLError):
            pass
    time.sleep(0.3)
    held = [s for s in held if not closed(s)]
    check(len(held) == PER_SOURCE, "per-source cap: %d of %d connections from one address "
          "kept (want %d)" % (len(held), PER_SOURCE + 8, PER_SOURCE))
    for s in held:
        s.close()
    log.seek(0)
    evs = [json.loads(l) for l in log.read().splitlines() if l.startswith("{")]
    check(any(e["event"] == "webhook_conn_refused" and e.get("reason") == "too_many_from_source"
              for e in evs), "webhook_conn_refused too_many_from_source is logged")

    # Whole bodies from one address.
    bulk = []
    for _ in range(20):
        try:
            s = connect("127.0.0.30", port, "http/1.1")
            s.settimeout(10)
            s.sendall(head(DECLARED) + b" " * (DECLARED - 1))
            bulk.append(s)
        except (OSError, ssl.SSLError):
            pass
    time.sleep(0.5)
    kept = [s for s in bulk if not closed(s)]
    check(len(kept) == PER_SOURCE, "whole 4 MiB bodies: %d of 20 connections from one address "
          "hold one (want %d)" % (len(kept), PER_SOURCE))
    for version in ("--http1.1", "--http2"):
        code, patched, detail = real_review(port, version)
        check(code == 200 and patched,
              "a real AdmissionReview over %s while one address holds all it may: HTTP %d (%s)"
              % (version, code, detail if not patched else "ok"))
    for s in bulk:
        s.close()

    # One HTTP/2 connection, 1 MiB on each of 17 streams.
    got = h2_bulk(port, 17, 1 << 20)
    check(got.count(503) >= 17 - 4 and got.count(503) + got.count(None) == 17,
          "HTTP/2: a connection holds at most 4 MiB, the streams beyond are answered 503 "
          "(%s)" % got)

    code, patched, detail = real_review(port, "--http2")
    check(code == 200 and patched, "a real AdmissionReview after it all: HTTP %d" % code)


def h2_bulk(port, streams, size):
    """Sends `size` bytes on each of `streams` streams declaring `size`,
    never ending them, as the windows allow, for up to 20 s. Returns the
    :status each stream got (None: none)."""
    s = connect("127.0.0.31", port, "h2")
    conn = h2.connection.H2Connection(
        h2.config.H2Configuration(client_side=True, header_encoding=None))
    conn.initiate_connection()
    sent, status = {}, {}
    for _ in range(streams):
        sid = conn.get_next_available_stream_id()
        conn.send_headers(sid, [(b":method", b"POST"), (b":scheme", b"https"),
                                (b":path", b"/inject"), (b":authority", wt.HOST.encode()),
                                (b"content-type", b"application/json"),
                                (b"content-length", str(size).encode())])
        sent[sid], status[sid] = 0, None
    s.sendall(conn.data_to_send())
    s.settimeout(0.2)
    deadline = time.time() + 20
    while time.time() < deadline:
        try:
            data = s.recv(65536)
            if not data:
                break
            for ev in conn.receive_data(data):
                if isinstance(ev, h2.events.ResponseReceived):
                    status[ev.stream_id] = int(dict(ev.headers)[b":status"])
        except (socket.timeout, ssl.SSLWantReadError):
            pass
        except (OSError, ssl.SSLError, h2.exceptions.ProtocolError):
            break
        moved = 0
        for sid in sent:
            if status[sid] is not None or sent[sid] >= size:
                continue
            try:
                n = min(size - sent[sid], conn.local_flow_control_window(sid), 16384)
                if n > 0:
                    conn.send_data(sid, b" " * n)
                    sent[sid] += n
                    moved += n
            except (h2.exceptions.ProtocolError, h2.exceptions.FlowControlError):
                status[sid] = status[sid] or -1
        out = conn.data_to_send()
        if out:
            s.sendall(out)
        if not moved and all(status[i] is not None or sent[i] >= size for i in sent):
            break
    s.close()
    return [status[i] for i in sorted(status)]


def main():
    with tempfile.TemporaryDirectory() as tmp:
        ca = os.path.join(tmp, "ca")
        wt.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                "ec_paramgen_curve:P-256", "-nodes", "-keyout", ca + ".key", "-out",
                ca + ".pem", "-days", "1", "-subj", "/CN=webhook flood CA"], check=True)
        wt.CA_PEM = ca + ".pem"
        pem, key = wt.make_cert(tmp, "wh", ca, 1)
        port = wt.free_port()
        log = open(os.path.join(tmp, "control.log"), "w+")
        proc = subprocess.Popen(
            [wt.CONTROL, "--state-dir", os.path.join(tmp, "state"), "--listen", "127.0.0.1:0",
             "--admin-listen", "127.0.0.1:0", "--webhook-port", str(port), "--webhook-cert",
             pem, "--webhook-key", key], stdout=subprocess.DEVNULL, stderr=log)
        try:
            deadline = time.time() + 20
            started = None
            while time.time() < deadline and proc.poll() is None and not started:
                time.sleep(0.1)
                log.seek(0)
                started = re.search(r'"webhook_port":(\d+)', log.read())
            if not started:
                raise SystemExit("cinch-control did not start")
            attack(port, log)
            check(proc.poll() is None, "cinch-control still running")
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                rc = proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                rc = proc.wait()
        check(rc == 0, "cinch-control stopped cleanly (rc %d)" % rc)
    print("%d failure(s)" % failures)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
