"""fixed_rate: latency at a fixed request rate, as a service sees it.

Sends HTTP/1.1 keep-alive GETs on CONNS connections so that, together, a
request starts every 1/RATE s on schedule, for SECONDS; each latency is
measured from the request's scheduled start (so a stall delays every
request behind it and shows in the percentiles: no coordinated omission).
The first second is warm-up (connections, TLS handshakes) and not counted.
Prints "p50_ms p99_ms sent errors".

  fixed_rate.py HOST PORT RATE SECONDS [CONNS]
"""
import asyncio
import statistics
import sys
import time

WARMUP = 1.0


async def worker(host, port, start, interval, count, lat, errors):
    reader, writer = await asyncio.open_connection(host, port)
    req = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"
    for i in range(count):
        due = start + i * interval
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        writer.write(req)
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        await reader.readexactly(length)
        if not head.startswith(b"HTTP/1.1 200"):
            errors.append(head[:40])
        if due >= start + WARMUP:
            lat.append(time.monotonic() - due)
    writer.close()


async def main():
    host, port, rate, secs = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
    conns = int(sys.argv[5]) if len(sys.argv) > 5 else 10
    per_conn = int(rate * (secs + WARMUP) / conns)
    interval = conns / rate
    start = time.monotonic() + 0.2
    lat, errors = [], []
    await asyncio.gather(*(worker(host, port, start + c * interval / conns, interval, per_conn,
                                  lat, errors) for c in range(conns)))
    q = statistics.quantiles(lat, n=100)
    print("%.3f %.3f %d %d" % (q[49] * 1000, q[98] * 1000, len(lat), len(errors)))


asyncio.run(main())
