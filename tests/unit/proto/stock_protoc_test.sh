#!/bin/sh
# stock_protoc_test: the .proto files compile unchanged with the standard
# protoc, and a stock gRPC client (Python grpcio, Debian's packages) can be
# generated from them and imported, with the services and methods we
# document. Debian's grpc packages belong to /usr/bin/python3, not whatever
# python3 is first on PATH.
set -eu
src=${CINCH_SRC:?}/proto
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

protoc --proto_path="$src" --descriptor_set_out="$tmp/all.pb" --include_imports \
	"$src"/cinch/v1/*.proto
test -s "$tmp/all.pb"

/usr/bin/python3 -m grpc_tools.protoc --proto_path="$src" --python_out="$tmp" \
	--grpc_python_out="$tmp" "$src"/cinch/v1/*.proto

cd "$tmp"
/usr/bin/python3 - <<'PY'
from cinch.v1 import identity_pb2, identity_pb2_grpc, config_pb2, config_pb2_grpc
svc = identity_pb2.DESCRIPTOR.services_by_name["Identity"]
assert svc.full_name == "cinch.v1.Identity", svc.full_name
assert [m.name for m in svc.methods] == ["Sign"]
cfg = config_pb2.DESCRIPTOR.services_by_name["Config"]
watch = cfg.methods_by_name["Watch"]
assert watch.server_streaming if hasattr(watch, "server_streaming") else True
assert [m.name for m in cfg.methods] == ["Watch", "Report"]
assert hasattr(identity_pb2_grpc, "IdentityStub") and hasattr(config_pb2_grpc, "ConfigStub")
# A message built by the Python runtime decodes to the same fields.
req = identity_pb2.SignRequest(csr=b"\x30\x00", requested_spiffe_id="spiffe://td/ns/a/sa/b")
req.credential.join_token = "tok"
again = identity_pb2.SignRequest.FromString(req.SerializeToString())
assert again == req and again.credential.WhichOneof("kind") == "join_token"
print("stock protoc and grpcio: ok")
PY
