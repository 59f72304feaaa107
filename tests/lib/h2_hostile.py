"""h2_hostile: a TLS HTTP/2 server that answers gRPC calls the way a hostile
or broken cinch-control could, for tests/unit/common/h2c_test.c. It listens
on 127.0.0.1 (a free port, printed as "PORT <n>" for testproc) and serves
each connection in a thread; what it does depends on the method's last path
segment:

  ok            a well-formed answer: one message "hello", grpc-status 0
  bigframe      a DATA frame of 20,000 bytes (over the client's 16 KiB
                SETTINGS_MAX_FRAME_SIZE), written raw
  badstatus     grpc-status "9x" (not a number)
  status99      grpc-status 99 (outside the code table)
  truncated     a message prefix announcing 100 bytes, 10 sent, then
                trailers with grpc-status 0
  hugelen       a message prefix announcing 0xFFFFFFFF bytes
  compressed    a message with the compressed flag set (none negotiated)
  manyheaders   200 response headers
  noheaders     the stream ended (empty DATA, END_STREAM) before headers
  reset         RST_STREAM (INTERNAL_ERROR) after the headers
  garbage       bytes that are not HTTP/2 frames on the connection
  hang          headers, then nothing (PINGs are still answered by h2)
  silent        headers, then nothing read or answered for 20 s (a
                control that vanished without a FIN)
  goaway        GOAWAY (PROTOCOL_ERROR) and the connection closed

--alpn sets the protocol offered (http/1.1 to test a server that does not
speak HTTP/2). Needs python3-h2.
"""
import argparse
import socket
import ssl
import struct
import sys
import threading
import time

import h2.config
import h2.connection
import h2.events
import h2.errors


def grpc_msg(data):
    return struct.pack(">BI", 0, len(data)) + data


def serve(sock, conn_ssl):
    cfg = h2.config.H2Configuration(client_side=False, validate_outbound_headers=False,
                                    normalize_outbound_headers=False)
    c = h2.connection.H2Connection(config=cfg)
    c.initiate_connection()
    conn_ssl.sendall(c.data_to_send())
    paths = {}
    while True:
        try:
            data = conn_ssl.recv(65536)
        except (ssl.SSLError, OSError):
            return
        if not data:
            return
        try:
            events = c.receive_data(data)
        except Exception:
            return
        for ev in events:
            if isinstance(ev, h2.events.RequestReceived):
                paths[ev.stream_id] = dict(ev.headers).get(b":path", b"").decode()
            elif isinstance(ev, h2.events.StreamEnded):
                mode = paths.get(ev.stream_id, "").rsplit("/", 1)[-1]
                if answer(c, conn_ssl, ev.stream_id, mode) == "close":
                    conn_ssl.sendall(c.data_to_send())
                    conn_ssl.close()
                    return
        conn_ssl.sendall(c.data_to_send())


def answer(c, s, sid, mode):
    hdrs = [(":status", "200"), ("content-type", "application/grpc")]
    if mode == "ok":
        c.send_headers(sid, hdrs)
        c.send_data(sid, grpc_msg(b"hello"))
        c.send_headers(sid, [("grpc-status", "0")], end_stream=True)
    elif mode == "bigframe":
        c.send_headers(sid, hdrs)
        s.sendall(c.data_to_send())
        payload = b"\0" * 20000
        s.sendall(struct.pack(">I", len(payload))[1:] + bytes([0, 0]) +
                  struct.pack(">I", sid) + payload)
    elif mode in ("badstatus", "status99"):
        c.send_headers(sid, hdrs)
        c.send_headers(sid, [("grpc-status", "9x" if mode == "badstatus" else "99")],
                       end_stream=True)
    elif mode == "truncated":
        c.send_headers(sid, hdrs)
        c.send_data(sid, struct.pack(">BI", 0, 100) + b"x" * 10)
        c.send_headers(sid, [("grpc-status", "0")], end_stream=True)
    elif mode == "hugelen":
        c.send_headers(sid, hdrs)
        c.send_data(sid, struct.pack(">BI", 0, 0xFFFFFFFF) + b"x" * 100)
    elif mode == "compressed":
        c.send_headers(sid, hdrs)
        c.send_data(sid, struct.pack(">BI", 1, 5) + b"hello")
        c.send_headers(sid, [("grpc-status", "0")], end_stream=True)
    elif mode == "manyheaders":
        c.send_headers(sid, hdrs + [("x-h%d" % i, "v" * 20) for i in range(200)])
        c.send_headers(sid, [("grpc-status", "0")], end_stream=True)
    elif mode == "noheaders":
        s.sendall(c.data_to_send())
        # a DATA frame with END_STREAM and no HEADERS before it
        s.sendall(struct.pack(">I", 0)[1:] + bytes([0, 1]) + struct.pack(">I", sid))
    elif mode == "reset":
        c.send_headers(sid, hdrs)
        c.reset_stream(sid, h2.errors.ErrorCodes.INTERNAL_ERROR)
    elif mode == "garbage":
        s.sendall(c.data_to_send())
        s.sendall(b"HTTP/1.1 200 OK\r\n\r\n" + b"\xff" * 64)
    elif mode == "hang":
        c.send_headers(sid, hdrs)
    elif mode == "silent":
        c.send_headers(sid, hdrs)
        s.sendall(c.data_to_send())
        time.sleep(20)  # reads nothing more: PINGs go unanswered
        return "close"
    elif mode == "goaway":
        c.close_connection(error_code=h2.errors.ErrorCodes.PROTOCOL_ERROR)
        return "close"
    else:
        c.send_headers(sid, [(":status", "404")], end_stream=True)
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--alpn", default="h2")
    ap.add_argument("--lifetime", type=float, default=120)
    a = ap.parse_args()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(a.cert, a.key)
    ctx.set_alpn_protocols([a.alpn])
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", 0))
    ls.listen(16)
    ls.settimeout(1)
    print("PORT %d" % ls.getsockname()[1], flush=True)
    deadline = time.time() + a.lifetime
    while time.time() < deadline:
        try:
            raw, _ = ls.accept()
        except socket.timeout:
            continue
        raw.settimeout(30)
        try:
            s = ctx.wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError):
            raw.close()
            continue
        threading.Thread(target=serve, args=(raw, s), daemon=True).start()
    sys.exit(0)


if __name__ == "__main__":
    main()
