"""https_server: a small real HTTPS server for client tests (Debian's
/usr/bin/python3, standard library only). Prints "PORT <n>" once it
listens on 127.0.0.1 and serves until killed or until --lifetime seconds
pass (a leaked server cannot outlive its test for long).

  https_server.py --cert C --key K [--client-ca CA] [--lifetime 60]

Paths: /hello (200 "hello\\n"), /echo (POST: the body back), /stream (three
chunks 100 ms apart), /slow (answers after 5 s), /whoami (the URI SAN of
the client certificate; needs --client-ca, which then requires one).
"""
import http.server
import time

import testhttps


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, body, ctype="text/plain"):
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/hello":
            self.reply(b"hello\n")
        elif self.path == "/slow":
            time.sleep(5)
            self.reply(b"late\n")
        elif self.path == "/stream":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i in range(3):
                chunk = b"event %d\n" % i
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self.wfile.flush()
                time.sleep(0.1)
            self.wfile.write(b"0\r\n\r\n")
        elif self.path == "/whoami":
            cert = self.connection.getpeercert()
            uris = [v for k, v in cert.get("subjectAltName", ()) if k == "URI"]
            self.reply(("%s\n" % (uris[0] if uris else "")).encode())
        else:
            self.send_error(404)

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(n)
        if self.path == "/echo":
            self.reply(body, "application/octet-stream")
        else:
            self.send_error(404)


if __name__ == "__main__":
    testhttps.serve(Handler, client_ca_option=True)
