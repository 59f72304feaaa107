"""stress_peers: the clients and the server of agent_stress_test.sh.

  halfclose HOST PORT PATH    GET PATH over HTTP/1.0, shut the write side at
                              once, read the whole answer: print the body's
                              sha256 (the answer must come after our FIN)
  barrier-server HOST PORT N  answers each connection's line "ping I" with
                              "pong I", but only once N connections are open
                              at the same time (so N must get through the
                              agents together)
  many HOST PORT N            opens N connections, then sends "ping I" on
                              each and checks its "pong I": prints how many
                              completed
Exit status 1 on a usage error; every wait is bounded by a timeout.
"""
import asyncio
import hashlib
import socket
import sys


def halfclose(host, port, path):
    with socket.create_connection((host, port), timeout=30) as s:
        s.sendall(b"GET %s HTTP/1.0\r\nHost: api\r\n\r\n" % path.encode())
        s.shutdown(socket.SHUT_WR)
        data = bytearray()
        while True:
            b = s.recv(65536)
            if not b:
                break
            data += b
    head, _, body = bytes(data).partition(b"\r\n\r\n")
    print(head.split(b"\r\n")[0].decode(errors="replace"), hashlib.sha256(body).hexdigest())


async def barrier_server(host, port, n):
    arrived = 0
    everyone = asyncio.Event()

    async def handle(r, w):
        nonlocal arrived
        try:
            line = await r.readline()
            arrived += 1
            if arrived >= n:
                everyone.set()
            await everyone.wait()
            w.write(line.replace(b"ping", b"pong"))
            await w.drain()
        finally:
            w.close()

    srv = await asyncio.start_server(handle, host, port, backlog=4096)
    async with srv:
        await srv.serve_forever()


async def many(host, port, n):
    conns = await asyncio.gather(*[asyncio.open_connection(host, port) for _ in range(n)])

    async def talk(i, rw):
        r, w = rw
        try:
            w.write(b"ping %d\n" % i)
            await w.drain()
            return await r.readline() == b"pong %d\n" % i
        except OSError:
            return False
        finally:
            w.close()

    done = await asyncio.gather(*[talk(i, c) for i, c in enumerate(conns)])
    print(sum(done))


def main(argv):
    if len(argv) == 5 and argv[1] == "halfclose":
        halfclose(argv[2], int(argv[3]), argv[4])
    elif len(argv) == 5 and argv[1] == "barrier-server":
        asyncio.run(barrier_server(argv[2], int(argv[3]), int(argv[4])))
    elif len(argv) == 5 and argv[1] == "many":
        asyncio.run(asyncio.wait_for(many(argv[2], int(argv[3]), int(argv[4])), 90))
    else:
        print(__doc__, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
