#!/usr/bin/python3
"""Attack: the cinchctl admin socket of cinch-control (<state>/admin.sock).

What it attacks: the local unix socket through which cinchctl creates join
tokens, reads the bundle and rotates the root (control/admin/ctlsock.c). Who
can reach it: a local process. The defences, each attacked here:
  - who may connect: the socket is 0600 from its creation (umask) in a 0700
    state directory. The control is started under umask 000, the worst a
    service manager could hand it, and the state directory loosened to 0711
    afterwards, so only the socket's own mode stands between uid 65534
    (setpriv) and connect(): it must get EACCES.
  - who may be served: the peer's uid (SO_PEERCRED) must be root or the
    daemon's. With the socket itself loosened to 0666 by hand, uid 65534
    connects but gets {"error": "permission denied ..."}, never the bundle,
    and the log says admin_socket_refused with its uid.
  - request size: 64 KiB without a newline gets {"error": "request too
    large"} at once (the line bound is 4 KiB), not a wait for the deadline.
  - garbage (random bytes, NULs, a JSON array, an unknown op): a clear JSON
    error each, and the control serves the next request.
  - slowloris: a request trickled a byte every 0.25 s is cut at the 5 s
    deadline of a connection (counted from the accept, not from the last
    byte), without a reply.
  - connection count: 40 idle connections at once: 32 (CTLSOCK_MAX_CONNS)
    are held, the 8 beyond are closed at accept (admin_socket_full logged),
    the held ones are still answered, and once they go a new one is served.
Why this way: the socket is local, so no namespaces; the control runs alone
on loopback ports 0 with a temporary state directory (control_grpc_test's
launcher), and every wait is a bounded poll. Without any one of the defences
its check fails (tried: umask/chmod, the uid check, the size reply, the
deadline timer and the cap each disabled in turn).
"""
import json
import os
import select
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time

SRC = os.environ.get("CINCH_SRC", os.path.join(os.path.dirname(__file__), "..", "..", ".."))
BUILD = os.environ.get("CINCH_BUILD", os.path.join(SRC, "build", "check"))
sys.path.insert(0, os.path.join(SRC, "tests", "unit", "control"))
sys.argv[1:] = [os.path.join(BUILD, "bin"), os.path.join(SRC, "proto")]
import control_grpc_test as base  # noqa: E402  (reads BIN and PROTO from argv)

NOBODY = 65534
MAX_CONNS = 32    # CTLSOCK_MAX_CONNS
DEADLINE_S = 5    # CTLSOCK_DEADLINE_MS
check = base.check

# Run as uid 65534: connect, send a bundle request, print what happened.
NOBODY_CLIENT = r"""
import errno, json, socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(5)
try:
    s.connect(sys.argv[1])
except OSError as e:
    print(json.dumps({"connect": errno.errorcode.get(e.errno, str(e.errno))}))
    sys.exit(0)
try:
    s.sendall(b'{"op": "bundle"}\n')
except OSError:  # refused and closed before the request went: the reply is queued
    pass
got = b""
try:
    while True:
        b = s.recv(65536)
        if not b:
            break
        got += b
except OSError:
    pass
print(json.dumps({"connect": "ok", "reply": got.decode(errors="replace")}))
"""


def connect(path):
    """A connection; a unix socket's connect fails with EAGAIN (not a wait)
    while the listen backlog is full, so retry that for 5 s at most."""
    s, end = socket.socket(socket.AF_UNIX), time.time() + 5
    s.settimeout(5)
    while True:
        try:
            s.connect(path)
            return s
        except BlockingIOError:
            if time.time() > end:
                raise
            time.sleep(0.01)


def read_to_end(s, limit_s=5.0):
    """Everything until the control closes (a reset after the reply counts as
    the close: it closes with our unread bytes queued); None if still open."""
    got, end = b"", time.time() + limit_s
    while time.time() < end:
        s.settimeout(max(0.05, end - time.time()))
        try:
            b = s.recv(65536)
        except socket.timeout:
            continue
        except ConnectionResetError:
            return got
        if not b:
            return got
        got += b
    return None


def ask(path, payload, limit_s=5.0):
    """The reply (a JSON object, or the raw bytes if not JSON) and seconds."""
    t0 = time.time()
    s = connect(path)
    try:
        s.sendall(payload)
    except (BrokenPipeError, ConnectionResetError):
        pass
    got = read_to_end(s, limit_s)
    s.close()
    try:
        return json.loads(got), time.time() - t0
    except (TypeError, ValueError):
        return got, time.time() - t0


def as_nobody(path):
    r = subprocess.run(["setpriv", "--reuid=%d" % NOBODY, "--regid=%d" % NOBODY,
                        "--clear-groups", "/usr/bin/python3", "-c", NOBODY_CLIENT, path],
                       capture_output=True, text=True, timeout=20)
    try:
        return json.loads(r.stdout)
    except ValueError:
        return {"connect": "?", "stderr": r.stderr}


def attack_who(ctl, state, sock):
    st, dst = os.stat(sock), os.stat(state)
    check(stat.S_IMODE(st.st_mode) == 0o600 and st.st_uid == 0,
          "admin.sock is root's, mode 0600 (under umask 000): %o uid %d"
          % (stat.S_IMODE(st.st_mode), st.st_uid))
    check(stat.S_IMODE(dst.st_mode) == 0o700, "state dir 0700: %o" % stat.S_IMODE(dst.st_mode))
    os.chmod(state, 0o711)  # only the socket's own mode is left in the way
    r = as_nobody(sock)
    check(r.get("connect") == "EACCES", "uid %d cannot connect to a 0600 socket: %s"
          % (NOBODY, r))
    os.chmod(sock, 0o666)  # the socket loosened by hand: SO_PEERCRED is left
    r = as_nobody(sock)
    reply = r.get("reply", "")
    check(r.get("connect") == "ok" and "permission denied" in reply and "pem" not in reply,
          "uid %d on a 0666 socket is refused, not served: %.200s" % (NOBODY, r))
    check(any(e["event"] == "admin_socket_refused" and e.get("uid") == NOBODY
              for e in ctl.events()), "admin_socket_refused logged with the uid")
    os.chmod(sock, 0o600)
    os.chmod(state, 0o700)
    r, _ = ask(sock, b'{"op": "bundle"}\n')
    check(isinstance(r, dict) and "pem" in r, "root is still served: %r" % (r,))


def attack_input(sock):
    r, secs = ask(sock, b"A" * 65536)
    check(r == {"error": "request too large"} and secs < 2,
          "64 KiB without a newline: request too large at once: %r in %.1f s" % (r, secs))
    junk = bytes(b for b in os.urandom(2048) if b != 0x0A)[:1000]
    for payload in (junk + b"\n", b"\x00\xff{\"op\n", b"[1, 2]\n", b"\"bundle\"\n"):
        r, _ = ask(sock, payload)
        check(r == {"error": "request is not a JSON object"},
              "garbage %r...: a clear error: %r" % (payload[:12], r))
    r, _ = ask(sock, b'{"op": ["token_create"]}\n')
    check(isinstance(r, dict) and r.get("error", "").startswith("unknown op"),
          "a wrong op: a clear error: %r" % (r,))
    r, _ = ask(sock, b'{"op": "bundle"}\n')
    check(isinstance(r, dict) and "pem" in r, "served after the garbage: %r" % (r,))


def attack_slowloris(sock):
    t0 = time.time()
    s = connect(sock)
    s.setblocking(False)
    trickle, closed_at, got = b'{"op": "bundle"' + b" " * 200, None, b""
    i = 0
    while time.time() - t0 < DEADLINE_S + 4 and closed_at is None:
        try:
            s.send(trickle[i % len(trickle):i % len(trickle) + 1])
            i += 1
        except (BrokenPipeError, ConnectionResetError):
            closed_at = time.time() - t0
            break
        r, _, _ = select.select([s], [], [], 0.25)
        if r:
            try:
                b = s.recv(4096)
            except ConnectionResetError:
                b = b""
            if not b:
                closed_at = time.time() - t0
            got += b
    s.close()
    check(closed_at is not None and DEADLINE_S - 1 <= closed_at <= DEADLINE_S + 2 and not got,
          "a trickled request is cut at the %d s deadline, unanswered: closed at %s, %d bytes"
          % (DEADLINE_S, "%.1f s" % closed_at if closed_at else "never", len(got)))


def attack_count(ctl, sock):
    n = MAX_CONNS + 8
    conns = [connect(sock) for _ in range(n)]
    closed, end = set(), time.time() + 3
    while time.time() < end and len(closed) < n - MAX_CONNS:
        r, _, _ = select.select([c for c in conns if c not in closed], [], [], 0.1)
        for c in r:
            try:
                if not c.recv(4096):
                    closed.add(c)
            except ConnectionResetError:
                closed.add(c)
    # a little longer: more than the 8 must not go
    r, _, _ = select.select([c for c in conns if c not in closed], [], [], 0.3)
    check(len(closed) == n - MAX_CONNS and not r,
          "%d connections at once: %d closed at accept (want %d), %d more readable"
          % (n, len(closed), n - MAX_CONNS, len(r)))
    check(any(e["event"] == "admin_socket_full" for e in ctl.events()),
          "admin_socket_full logged")
    held = [c for c in conns if c not in closed]
    held[0].sendall(b'{"op": "bundle"}\n')
    got = read_to_end(held[0])
    check(got and b"pem" in got, "a held connection is still answered")
    for c in conns:
        c.close()
    served, end = None, time.time() + 5
    while time.time() < end and not served:
        r, _ = ask(sock, b'{"op": "bundle"}\n')
        served = isinstance(r, dict) and "pem" in r
    check(served, "served again once the idle connections went")


def main():
    if os.geteuid() != 0:
        print("SKIP: needs root (setpriv to another uid)")
        return 77
    tmp = tempfile.mkdtemp(prefix="ctlsock-attack-")
    os.chmod(tmp, 0o755)
    state = os.path.join(tmp, "state")
    old = os.umask(0)
    try:
        ctl = base.Control(state)
    finally:
        os.umask(old)
    sock = os.path.join(state, "admin.sock")
    try:
        r, _ = ask(sock, b'{"op": "bundle"}\n')
        check(isinstance(r, dict) and "pem" in r, "baseline: the bundle: %r" % (r,))
        attack_who(ctl, state, sock)
        attack_input(sock)
        attack_slowloris(sock)
        attack_count(ctl, sock)
        check(ctl.proc.poll() is None, "the control is still running")
    finally:
        rc = ctl.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    check(rc == 0, "the control exits cleanly (0, no sanitizer report): %s" % rc)
    print("%d checks, %d failed" % (base.checks, base.failures))
    return 1 if base.failures else 0


if __name__ == "__main__":
    sys.exit(main())
