#!/usr/bin/python3
"""Attack: unauthenticated memory exhaustion of cinch-control (issue #12, hole 3).

What it attacks: the gRPC port (15012) of a real cinch-control, the way anyone
on the pod network can reach it, before any authentication. Before the fix,
grpc.c buffered every unfinished request body (64 KiB x 64 streams per
connection, 4,096 connections) and 16 hostile connections took +58 MB.

How: FLOOD_CONNS (1,000) raw TLS connections (Python's ssl, no client
certificate) from FLOOD_SOURCES loopback source addresses 127.0.0.x (the
per-source connection cap means one address alone cannot open them all), each
speaking raw HTTP/2 frames through the h2 package: the preface, SETTINGS with
INITIAL_WINDOW_SIZE 0 and a connection WINDOW_UPDATE of 1 GiB (WINDOW_UPDATE
games: the control may send but we never read), then as many Sign streams as
the control's SETTINGS allow, each a HEADERS frame and DATA with a gRPC prefix
declaring the largest message the stream window can carry, sent to one byte
short of it and never finished. Every connection pushes as much as the
control's flow-control windows grant, for a bounded time. Meanwhile:
  - the control's RSS (VmRSS from /proc) must stay under RSS_LIMIT (128 MiB,
    half of the Deployment's 256Mi limit in deploy/k8s/control: the other
    half is room for the authenticated side and the ASan build's overhead);
  - real agents are still served: a stock grpcio Sign with a join token, then
    a renewal over mutual TLS with the certificate it got, both succeed;
  - the per-source cap holds: from one more address only PER_SOURCE of
    PER_SOURCE+8 connections get a handshake, and the log says why;
  - connections that never send a ClientHello are closed by the handshake
    timeout (3 s here).
One connection in a hundred cheats: raw frames opening 64 streams and sending
64 KiB on each whatever the SETTINGS and windows say; what it sends must be
refused or reset, never buffered, so it only counts in the RSS bound.
A second phase restarts the control with --max-buffered 2 MiB and floods it
from 4 more addresses: the request bytes of connections that have not
authenticated stop at their half of the budget (grpc_budget_exhausted, with
RESOURCE_EXHAUSTED to the caller) and an agent renewing over mutual TLS, which
draws on the other half, still gets its certificate.
The control runs with the defaults of docs/control.md except
--handshake-timeout. ASan's quarantine is made small for the control process,
so RSS measures what the control holds and not what ASan keeps of freed memory.

Without the budgets (the old windows, 64 streams and no per-source cap) the
RSS bound is crossed after a few dozen connections and the test fails.
Traffic goes to loopback only; every connection is closed and the control
stopped at exit.
"""
import json
import os
import resource
import signal
import subprocess
import socket
import ssl
import sys
import tempfile
import time
import shutil

import h2.config
import hpack
import h2.connection
import h2.events
import h2.exceptions
import h2.settings

SRC = os.environ.get("CINCH_SRC", os.path.join(os.path.dirname(__file__), "..", "..", ".."))
BUILD = os.environ.get("CINCH_BUILD", os.path.join(SRC, "build", "check"))
sys.path.insert(0, os.path.join(SRC, "tests", "unit", "control"))
sys.argv[1:] = [os.path.join(BUILD, "bin"), os.path.join(SRC, "proto")]
import control_grpc_test as base  # noqa: E402  (reads BIN and PROTO from argv)
import grpc  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402

FLOOD_CONNS = 1000
FLOOD_SOURCES = 20          # 127.0.0.10 .. 127.0.0.29, 50 connections each
PER_SOURCE = 64             # the default --max-connections-per-source
RSS_LIMIT = 128 << 20
FLOOD_SECONDS = 40          # pushing data, at most
SIGN_PATH = b"/cinch.v1.Identity/Sign"
HEADERS = [(b":method", b"POST"), (b":scheme", b"https"), (b":path", SIGN_PATH),
           (b":authority", b"localhost"), (b"content-type", b"application/grpc"),
           (b"te", b"trailers")]

failures = 0


def check(cond, what):
    global failures
    print("%s: %s" % ("ok" if cond else "FAIL", what), flush=True)
    if not cond:
        failures += 1


def rss(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def tls_ctx():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["h2"])
    return ctx


class Hostile:
    """One hostile connection: TLS without a client certificate, then h2."""

    def __init__(self, ctx, src, port, cheat=False, small=False):
        self.dead = False
        self.cheat = cheat
        self.small = small  # a 100-byte message: fills the last gaps of a budget
        self.sent = {}  # stream id -> bytes of DATA sent
        self.target = 0
        raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        raw.bind((src, 0))
        raw.settimeout(5)
        raw.connect(("127.0.0.1", port))
        self.s = ctx.wrap_socket(raw, server_hostname="localhost")
        cfg = h2.config.H2Configuration(client_side=True, header_encoding=None)
        self.h2 = h2.connection.H2Connection(cfg)
        self.h2.initiate_connection()
        self.h2.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 0})
        self.h2.increment_flow_control_window(1 << 30)
        self.s.sendall(self.h2.data_to_send())
        # The control's SETTINGS first: they say how much it grants.
        deadline = time.time() + 5
        while time.time() < deadline and not self.dead:
            self.recv(block=True)
            if self._got_settings:
                break
        self.s.setblocking(False)

    _got_settings = False

    def recv(self, block=False):
        try:
            data = self.s.recv(65536)
            if self.cheat and self._got_settings:
                if not data:
                    self.dead = True
                return  # the raw frames went past h2's state machine
        except (ssl.SSLWantReadError, BlockingIOError, socket.timeout):
            return
        except (OSError, ssl.SSLError):
            self.dead = True
            return
        if not data:
            self.dead = True
            return
        try:
            for ev in self.h2.receive_data(data):
                if isinstance(ev, h2.events.RemoteSettingsChanged):
                    self._got_settings = True
                elif isinstance(ev, h2.events.ConnectionTerminated):
                    self.dead = True
        except h2.exceptions.ProtocolError:
            self.dead = True

    def open_streams(self):
        """As many Sign streams as the control allows, each with a gRPC
        prefix declaring what the stream window can carry."""
        want = min(self.h2.remote_settings.max_concurrent_streams, 64)
        window = self.h2.remote_settings.initial_window_size
        # Declare the most the window lets us send, finish one byte short.
        self.target = min(window, 65536 + 5) - 1
        if self.small:
            self.target = 5 + 100 - 1
        declared = self.target + 1 - 5
        self.pending_prefix = b"\x00" + declared.to_bytes(4, "big")
        if self.cheat:  # 64 streams and 64 KiB each, whatever the SETTINGS say
            self.target, declared = 65536 + 5 - 1, 65536
            self.pending_prefix = b"\x00" + declared.to_bytes(4, "big")
            enc = hpack.Encoder()
            for i in range(64):
                block = enc.encode(HEADERS)
                self.raw(len(block).to_bytes(3, "big") + b"\x01\x04" +
                         (1 + 2 * i).to_bytes(4, "big") + block)
                self.sent[1 + 2 * i] = -1
            return
        for _ in range(want):
            sid = self.h2.get_next_available_stream_id()
            try:
                self.h2.send_headers(sid, HEADERS)
            except h2.exceptions.ProtocolError:
                break
            self.sent[sid] = -1  # prefix not yet sent

    def push(self):
        """Sends what the windows allow (everything, when cheating)."""
        if self.dead:
            return 0
        self.recv()
        pushed = 0
        for sid, n in list(self.sent.items()):
            if n < 0:
                chunk = self.pending_prefix
                n = 0
            else:
                chunk = b""
            room = self.target - n - len(chunk)
            if not self.cheat:
                try:
                    room = min(room, self.h2.local_flow_control_window(sid) - len(chunk))
                except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError, KeyError):
                    del self.sent[sid]
                    continue
            if room < 0 or (room == 0 and not chunk):
                continue  # wait for a WINDOW_UPDATE
            chunk += b"A" * max(room, 0)
            try:
                for off in range(0, len(chunk), 16384):
                    piece = chunk[off:off + 16384]
                    if self.cheat:  # raw DATA frames, flow control ignored
                        self.raw(len(piece).to_bytes(3, "big") + b"\x00\x00" +
                                 sid.to_bytes(4, "big") + piece)
                    else:
                        self.h2.send_data(sid, piece)
            except (h2.exceptions.ProtocolError, h2.exceptions.FlowControlError):
                del self.sent[sid]
                continue
            self.sent[sid] = n + len(chunk)
            pushed += len(chunk)
        if not self.cheat:
            self.raw(self.h2.data_to_send())
        return pushed

    def raw(self, data):
        if not data or self.dead:
            return
        self.s.setblocking(True)
        self.s.settimeout(2)
        try:
            self.s.sendall(data)
        except (OSError, ssl.SSLError):
            self.dead = True
        self.s.setblocking(False)

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass


def try_handshake(ctx, src, port):
    raw = socket.socket()
    raw.bind((src, 0))
    raw.settimeout(5)
    try:
        raw.connect(("127.0.0.1", port))
        return ctx.wrap_socket(raw, server_hostname="localhost")
    except (OSError, ssl.SSLError):
        raw.close()
        return None


class Control:
    """cinch-control on a free loopback port, its log in a file (a pipe
    could fill up during the flood and stall it)."""

    def __init__(self, state, extra=()):
        self.logpath = state + ".log"
        self.log = open(self.logpath, "w")
        self.proc = subprocess.Popen(
            [os.path.join(base.BIN, "cinch-control"), "--state-dir", state, "--listen",
             "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--log-level", "debug", *extra],
            stdout=subprocess.DEVNULL, stderr=self.log)
        deadline = time.time() + 20
        self.started = None
        while time.time() < deadline and not self.started and self.proc.poll() is None:
            self.started = next((e for e in self.events() if e["event"] == "control_started"),
                                None)
            time.sleep(0.05)
        if not self.started:
            self.stop()
            raise SystemExit("cinch-control did not start")
        self.grpc_port = self.started["grpc_port"]

    def events(self):
        with open(self.logpath) as f:
            return [json.loads(l) for l in f if l.startswith("{") and l.endswith("\n")]

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


def main():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8192), hard))
    os.environ["ASAN_OPTIONS"] = (os.environ.get("ASAN_OPTIONS", "") +
                                  ":quarantine_size_mb=1:thread_local_quarantine_size_kb=64")
    tmp = tempfile.mkdtemp(prefix="ctlflood.")
    state = os.path.join(tmp, "state")
    pb, pbg = base.stubs(tmp)
    try:
        agent = phase(state, ("--handshake-timeout", "3s"), run, pb, pbg)
        if agent:
            phase(state, ("--max-buffered", str(2 << 20)), run_budget, pb, pbg, agent)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("%d failure(s)" % failures)
    sys.exit(1 if failures else 0)


def phase(state, flags, fn, *args):
    """One control, one attack; everything closed and stopped after."""
    ctl = Control(state, flags)
    conns = []
    try:
        return fn(ctl, state, conns, *args)
    finally:
        for c in conns:
            c.close()
        rc = ctl.stop()
        check(rc == 0, "the control stopped cleanly (rc %s)" % rc)


def flood(ctl, conns, n, sources, first, small=False):
    """n hostile connections from `sources` addresses 127.0.0.<first>...,
    pushing what the windows allow for up to FLOOD_SECONDS or until the
    RSS bound is crossed. Returns the peak RSS."""
    pid, ctx = ctl.proc.pid, tls_ctx()
    peak = rss(pid)
    t0 = time.time()
    refused = 0
    for i in range(n):
        src = "127.0.0.%d" % (first + i % sources)
        try:
            h = Hostile(ctx, src, ctl.grpc_port, cheat=(i % 100 == 99 and not small),
                        small=small)
        except (OSError, ssl.SSLError):
            refused += 1
            continue
        h.open_streams()
        h.push()
        conns.append(h)
        if i % 50 == 49:
            peak = max(peak, rss(pid))
            if peak > RSS_LIMIT:
                break
    print("%d connections open after %.1f s (%d refused), RSS %.1f MiB" %
          (len(conns), time.time() - t0, refused, rss(pid) / 2**20), flush=True)
    deadline = time.time() + FLOOD_SECONDS
    while time.time() < deadline and peak <= RSS_LIMIT:
        moved = sum(h.push() for h in conns)
        peak = max(peak, rss(pid))
        if moved == 0:
            break
    return peak


def sign_token(pb, pbg, state, port, bundle_pem):
    """What a new agent does: Sign with a join token. (response, key, error)"""
    key = ec.generate_private_key(ec.SECP256R1())
    resp, err = base.call(pb, pbg, port, bundle_pem,
                          pb.SignRequest(csr=base.csr_for(key),
                                         credential=pb.Credential(
                                             join_token=base.token(state, "shop/web"))))
    return resp, key, err


def renew(pb, pbg, port, agent):
    """What a running agent does: renew over mutual TLS."""
    bundle_pem, cert_pem, key = agent
    key2 = ec.generate_private_key(ec.SECP256R1())
    return base.call(pb, pbg, port, bundle_pem, pb.SignRequest(csr=base.csr_for(key2)),
                     cert=cert_pem, key=base.pem_key(key))


def run_budget(ctl, state, conns, pb, pbg, agent):
    """The byte budget: with --max-buffered 2 MiB (1 MiB for connections
    that have not authenticated), 200 hostile connections want more than
    that; the excess is refused (RESOURCE_EXHAUSTED, logged); small
    requests then fill what is left (a buffer takes at least 1 KiB), and an
    agent renewing over mutual TLS still gets its certificate from the
    other half."""
    flood(ctl, conns, 200, 4, 50)
    flood(ctl, conns, 60, 1, 54, small=True)  # the last gaps, 1 KiB each
    evs = [e for e in ctl.events() if e["event"] == "grpc_budget_exhausted"]
    check(evs and all(not e["trusted"] and e["buffered"] <= e["limit"] == 1 << 20
                      for e in evs),
          "untrusted request bytes stop at their half of --max-buffered (%d refusals%s)" %
          (len(evs), ", e.g. %s" % evs[0] if evs else ""))
    ok, err = renew(pb, pbg, ctl.grpc_port, agent)
    check(err is None, "a renewal over mutual TLS while the untrusted half is spent: %s" % err)


def run(ctl, state, conns, pb, pbg):
    port = ctl.grpc_port
    pid = ctl.proc.pid
    ctx = tls_ctx()
    bundle_pem = base.cinchctl("bundle", "show", "--pem", "--state-dir", state).stdout.encode()
    base_rss = rss(pid)
    print("control RSS before the flood: %.1f MiB" % (base_rss / 2**20), flush=True)

    peak = flood(ctl, conns, FLOOD_CONNS, FLOOD_SOURCES, 10)
    alive = [h for h in conns if not h.dead]
    held = sum(max(n, 0) for h in alive if not h.cheat for n in h.sent.values())
    print("flood: %d live connections hold %d unfinished bytes within the windows; "
          "peak RSS %.1f MiB" % (len(alive), held, peak / 2**20), flush=True)
    honest = [h for h in alive if not h.cheat]
    check(len(alive) >= FLOOD_CONNS * 9 // 10 and held >= len(honest) * 8000 or
          peak > RSS_LIMIT,
          "the flood is real: %d of %d connections still open, each holding an unfinished "
          "body as large as the control lets it (%d bytes in all)" %
          (len(alive), FLOOD_CONNS, held))
    check(peak < RSS_LIMIT, "control RSS under %d MiB during the flood (peak %.1f MiB)" %
          (RSS_LIMIT >> 20, peak / 2**20))
    rs = conns[0].h2.remote_settings
    check(rs.max_concurrent_streams == 1 and rs.initial_window_size == 8192 + 5,
          "a connection without a certificate is offered 1 stream and a window of one 8 KiB "
          "message (%d, %d)" % (rs.max_concurrent_streams, rs.initial_window_size))

    # Real agents, during the flood.
    resp, key, err = sign_token(pb, pbg, state, port, bundle_pem)
    check(err is None, "a stock grpcio Sign with a join token during the flood: %s" % err)
    agent = None
    if resp is not None:
        agent = (bundle_pem, base.der_to_pem(resp.cert_chain[0]), key)
        _, err = renew(pb, pbg, port, agent)
        check(err is None, "a renewal over mutual TLS during the flood: %s" % err)
    peak = max(peak, rss(pid))

    # The per-source cap: one more address, PER_SOURCE + 8 connections.
    extra = []
    for _ in range(PER_SOURCE + 8):
        s = try_handshake(ctx, "127.0.0.40", port)
        if s is not None:
            try:  # a refused connection is closed right after accept
                s.settimeout(0.5)
                if s.recv(1):
                    extra.append(s)  # the control's SETTINGS
                    continue
            except (socket.timeout, ssl.SSLWantReadError):
                extra.append(s)
                continue
            except (OSError, ssl.SSLError):
                pass
            s.close()
    check(len(extra) == PER_SOURCE, "per-source cap: %d of %d connections from one address "
          "stay open (want %d)" % (len(extra), PER_SOURCE + 8, PER_SOURCE))
    for s in extra:
        s.close()
    evs = ctl.events()
    check(any(e["event"] == "grpc_conn_refused" and e.get("reason") == "too_many_from_source"
              for e in evs), "grpc_conn_refused too_many_from_source is logged")

    # Handshake timeout: TCP connections that never say hello.
    silent = []
    for _ in range(20):
        r = socket.socket()
        r.bind(("127.0.0.41", 0))
        r.connect(("127.0.0.1", port))
        r.settimeout(8)
        silent.append(r)
    t1 = time.time()
    closed = 0
    for r in silent:
        try:
            closed += r.recv(1) == b""
        except OSError:
            closed += 1
        r.close()
    check(closed == 20 and time.time() - t1 < 7,
          "silent connections closed by the handshake timeout (%d of 20 in %.1f s)" %
          (closed, time.time() - t1))
    check(any(e["event"] == "grpc_conn_closed" and e.get("reason") == "handshake_timeout"
              for e in ctl.events()), "grpc_conn_closed handshake_timeout is logged")
    print("peak RSS %.1f MiB (before the flood %.1f MiB)" % (peak / 2**20, base_rss / 2**20))
    return agent


if __name__ == "__main__":
    main()
