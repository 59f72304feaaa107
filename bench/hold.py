"""hold: N connections open at once through a proxy pair, for
bench/proxies.sh. Opens them in batches of 100 (240 s at most), one request
on each, every answer checked before the next batch (so each really crossed
both proxies), then touches READY and holds them all HOLD seconds.

    hold.py URL N READY HOLD
"""
import resource
import socket
import sys
import time
import urllib.parse


def main():
    u = urllib.parse.urlparse(sys.argv[1])
    n, ready, hold = int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
    resource.setrlimit(resource.RLIMIT_NOFILE, (n + 64, n + 64))
    socks = []
    deadline = time.time() + 240
    # in batches of 100, each answered before the next opens: a burst of
    # thousands of handshakes would wait past the agents' handshake
    # timeout (--handshake-timeout, 10 s) on a loaded machine
    while len(socks) < n:
        batch = [socket.create_connection((u.hostname, u.port), timeout=30)
                 for _ in range(min(100, n - len(socks)))]
        for s in batch:
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        for s in batch:
            if not s.recv(4096).startswith(b"HTTP/1.1 200"):
                sys.exit("hold: a connection was not answered (%d held)" % len(socks))
        socks += batch
        if time.time() > deadline:
            sys.exit("hold: only %d connections in 240 s" % len(socks))
    open(ready, "w").close()
    time.sleep(hold)


if __name__ == "__main__":
    main()
