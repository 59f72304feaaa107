#!/bin/sh
# Installs what Cinch needs to build and test on Debian 12, as root.
# A no-op (no apt call at all) when every package is already present, so
# `make check` stays fast on a prepared machine and works on a fresh one.
#
#   scripts/deps.sh          build + test dependencies
#   scripts/deps.sh bench    also the peers and load tools of `make bench`
# (mmdebstrap, umoci and skopeo build the OCI images: `make images` and
# the k8s.images test.)
set -eu

BUILD="cmake ninja-build pkg-config gcc clang libclang-rt-14-dev clang-format
 android-libboringssl-dev libuv1-dev libprotobuf-c-dev protobuf-c-compiler
 protobuf-compiler libjansson-dev libcurl4-gnutls-dev libnghttp2-dev
 libyaml-dev libcmocka-dev"
TEST="iproute2 iptables curl socat openssl tcpdump procps psmisc
 python3 python3-grpcio python3-grpc-tools python3-yaml python3-jsonschema
 python3-cryptography python3-h2 mmdebstrap umoci skopeo prometheus testssl.sh"
BENCH="wrk iperf3 stunnel4 haproxy nginx-light libnginx-mod-stream hyperfine linux-perf
 strace"

want="$BUILD $TEST"
[ "${1:-}" = bench ] && want="$want $BENCH"

missing=""
for p in $want; do
	s=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
	[ "$s" = installed ] || missing="$missing $p"
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
	echo "deps.sh: missing packages:$missing" >&2
	echo "deps.sh: run as root (or install them) and try again" >&2
	exit 1
fi
echo "deps.sh: installing$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
# shellcheck disable=SC2086
apt-get install -y -q --no-install-recommends $missing
