"""grpc_server: a stock gRPC server (Debian's python3-grpcio) serving
cinch.v1.Identity and cinch.v1.Config from stubs generated out of proto/ at
start-up, for client interop tests. Prints "PORT <n>" on 127.0.0.1 and
exits after --lifetime seconds at the latest.

  grpc_server.py --proto DIR --cert C --key K --ca CA [--lifetime 60]
                 [--require-client-auth]   (grpcio asks for a client
                                            certificate only then)

Behaviour, keyed by the request:
  Sign  csr=b"ok"        -> a response for spiffe://cluster.local/ns/shop/sa/web
        csr=b"whoami"    -> spiffe_id = the client certificate's URI SAN ("" if none)
        csr=b"big"       -> a 2 MiB certificate chain
        csr=b"slow"      -> answers after 3 s
        requested_spiffe_id="deny" -> PERMISSION_DENIED "not yours: ünïcode %"
  Watch known_version="" -> snapshots v1, v2, v3, 50 ms apart, then OK
        known_version="hold" -> v1, then stays open
        known_version="v3" -> v4 whose policy_version tells the last Report
                              received ("reported:<version>:<serial>:<error>"),
                              then stays open
        workload="shop/quiet" -> response headers, no snapshot, stays open
                              (what cinch-control tells an agent that holds
                              the current version)
  Report applied_version="" -> INVALID_ARGUMENT
"""
import argparse
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent import futures

import grpc


def load_stubs(proto_dir):
    out = tempfile.mkdtemp(prefix="grpc_stubs.")
    protos = [os.path.join(proto_dir, "cinch", "v1", f)
              for f in ("trust.proto", "identity.proto", "config.proto")]
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", "--proto_path=" + proto_dir,
                    "--python_out=" + out, "--grpc_python_out=" + out] + protos, check=True)
    sys.path.insert(0, out)
    from cinch.v1 import config_pb2, config_pb2_grpc, identity_pb2, identity_pb2_grpc
    return out, identity_pb2, identity_pb2_grpc, config_pb2, config_pb2_grpc


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--proto", required=True)
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--ca", required=True)
    ap.add_argument("--lifetime", type=float, default=60)
    ap.add_argument("--require-client-auth", action="store_true")
    a = ap.parse_args()
    stub_dir, ipb, igrpc, cpb, cgrpc = load_stubs(a.proto)

    class Identity(igrpc.IdentityServicer):
        def Sign(self, req, ctx):
            if req.requested_spiffe_id == "deny":
                ctx.abort(grpc.StatusCode.PERMISSION_DENIED, "not yours: ünïcode %")
            if req.csr == b"slow":
                time.sleep(3)
            if req.csr == b"whoami":
                sans = ctx.auth_context().get("x509_subject_alternative_name", [])
                uris = [s.decode() for s in sans if s.startswith(b"spiffe://")]
                return ipb.SignResponse(spiffe_id=uris[0] if uris else "")
            if req.csr == b"big":
                return ipb.SignResponse(cert_chain=[b"x" * (2 << 20)])
            return ipb.SignResponse(spiffe_id="spiffe://cluster.local/ns/shop/sa/web",
                                    cert_chain=[b"leaf", b"intermediate"],
                                    expires_at_unix=1700000000, serial_hex="0a1b")

    last_report = ["", "", ""]

    class Config(cgrpc.ConfigServicer):
        def Watch(self, req, ctx):
            if req.workload == "shop/quiet":
                ctx.send_initial_metadata(())
                time.sleep(30)
                return
            if req.known_version == "v3":
                yield cpb.Snapshot(version="v4", policy_version="reported:" + ":".join(last_report))
                time.sleep(30)
                return
            if req.known_version == "hold":
                yield cpb.Snapshot(version="v1")
                time.sleep(30)
                return
            for v in ("v1", "v2", "v3"):
                yield cpb.Snapshot(version=v, policy_version="p-" + v)
                time.sleep(0.05)

        def Report(self, req, ctx):
            if not req.applied_version:
                ctx.abort(grpc.StatusCode.INVALID_ARGUMENT, "applied_version is empty")
            last_report[:] = [req.applied_version, req.cert_serial_hex, req.error]
            return cpb.ReportResponse()

    def read(p):
        with open(p, "rb") as f:
            return f.read()

    creds = grpc.ssl_server_credentials([(read(a.key), read(a.cert))],
                                        root_certificates=read(a.ca),
                                        require_client_auth=a.require_client_auth)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    igrpc.add_IdentityServicer_to_server(Identity(), server)
    cgrpc.add_ConfigServicer_to_server(Config(), server)
    port = server.add_secure_port("127.0.0.1:0", creds)
    server.start()
    print("PORT %d" % port, flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())  # so the stubs are removed
    timer = threading.Timer(a.lifetime, done.set)
    timer.daemon = True
    timer.start()
    try:
        done.wait()
    finally:
        server.stop(0)
        subprocess.run(["rm", "-rf", stub_dir], check=False)


if __name__ == "__main__":
    main()
