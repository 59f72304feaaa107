"""testhttps: what the test HTTPS servers share (https_server.py,
kube_api.py): a threading server on 127.0.0.1 with an ephemeral port that
prints "PORT <n>", stays quiet about clients that abort on purpose, and
shuts itself down after --lifetime seconds so a leaked server cannot
outlive its test for long."""
import argparse
import http.server
import ssl
import threading


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass  # clients that abort on purpose (the tests do) are not errors


def serve(handler, client_ca_option=False):
    ap = argparse.ArgumentParser()
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--lifetime", type=float, default=60)
    if client_ca_option:
        ap.add_argument("--client-ca")
    a = ap.parse_args()

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(a.cert, a.key)
    if getattr(a, "client_ca", None):
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(a.client_ca)
    srv = Server(("127.0.0.1", 0), handler)
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    print("PORT %d" % srv.server_address[1], flush=True)
    threading.Timer(a.lifetime, srv.shutdown).start()
    srv.serve_forever()
