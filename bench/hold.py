"""hold: N connections open at once through a proxy pair, for
bench/proxies.sh. Opens them one by one (60 s at most), sends one request on
each and checks every answer (so each really crossed both proxies), then
touches READY and holds them HOLD seconds.

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
    deadline = time.time() + 60
    while len(socks) < n:
        socks.append(socket.create_connection((u.hostname, u.port), timeout=10))
        if time.time() > deadline:
            sys.exit("hold: only %d connections in 60 s" % len(socks))
    for s in socks:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    ok = sum(1 for s in socks if s.recv(4096).startswith(b"HTTP/1.1 200"))
    if ok != n:
        sys.exit("hold: %d of %d connections answered" % (ok, n))
    open(ready, "w").close()
    time.sleep(hold)


if __name__ == "__main__":
    main()
