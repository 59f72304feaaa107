#!/usr/bin/python3
"""mkseeds: writes the seed corpora of the fuzzers whose inputs are binary
protobuf messages (corpus/sign/, corpus/config/), so every seed says how it
was made. Run once from anywhere: /usr/bin/python3 tests/fuzz/mkseeds.py.
It overwrites the seeds it names and leaves the entries `make fuzz` added.

The messages are encoded by hand (the proto3 wire format is a few lines)
so this needs only python3-cryptography for the CSRs; field numbers are
those of proto/cinch/v1/identity.proto and config.proto. CSRs have no
validity period, so the seeds never expire."""
import os

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

HERE = os.path.dirname(os.path.abspath(__file__))


def varint(n):
    n &= (1 << 64) - 1  # int64 negatives are ten bytes, as protobuf does
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def field_bytes(num, data):
    if isinstance(data, str):
        data = data.encode()
    return varint(num << 3 | 2) + varint(len(data)) + data


def field_int(num, n):
    return varint(num << 3) + varint(n)


def csr(key, uri=None):
    b = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fuzz")]))
    if uri:
        b = b.add_extension(x509.SubjectAlternativeName(
            [x509.UniformResourceIdentifier(uri)]), critical=False)
    return b.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def sign_request(csr_der=b"", join=None, k8s=None, want=None, ttl=None):
    m = field_bytes(1, csr_der) if csr_der else b""
    if join is not None:
        m += field_bytes(2, field_bytes(1, join))
    if k8s is not None:
        m += field_bytes(2, field_bytes(2, k8s))
    if want is not None:
        m += field_bytes(3, want)
    if ttl is not None:
        m += field_int(4, ttl)
    return m


def write(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def sign_seeds():
    web = "spiffe://cluster.local/ns/shop/sa/web"
    p256 = csr(ec.generate_private_key(ec.SECP256R1()))
    p384 = csr(ec.generate_private_key(ec.SECP384R1()), uri="spiffe://evil/ns/a/sa/b")
    rsa1024 = csr(rsa.generate_private_key(public_exponent=65537, key_size=1024))
    rsa2048 = csr(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    bad_sig = bytearray(p256)
    bad_sig[-3] ^= 0x01  # inside the signature's last INTEGER
    tok = "cjt_" + "A" * 43
    write("sign", "renew_p256", sign_request(p256, ttl=600))
    write("sign", "renew_want_other", sign_request(p256, want="spiffe://cluster.local/ns/shop/sa/db"))
    write("sign", "renew_p384_san", sign_request(p384, want=web, ttl=86400 * 30))
    write("sign", "renew_neg_ttl", sign_request(rsa2048, ttl=-5))
    write("sign", "join_unknown", sign_request(p256, join=tok, want=web))
    write("sign", "join_empty", sign_request(p256, join=""))
    write("sign", "k8s_token", sign_request(p256, k8s="eyJhbGciOiJSUzI1NiJ9.e30.sig"))
    write("sign", "want_invalid", sign_request(p256, want="spiffe://cluster.local/ns//sa/x"))
    write("sign", "rsa_weak", sign_request(rsa1024))
    write("sign", "bad_signature", sign_request(bytes(bad_sig)))
    write("sign", "csr_trailing", sign_request(p256 + b"\x00"))
    write("sign", "csr_garbage", sign_request(b"\x30\x82\xff\xff" + b"\x00" * 12))
    write("sign", "empty", b"")


def config_seeds():
    # The first byte picks the message (config_fuzz.c): 'W' a WatchRequest,
    # 'R' a ReportRequest.
    write("config", "watch_any", b"W")
    write("config", "watch_named", b"W" + field_bytes(1, "v1") + field_bytes(2, "shop/web-0"))
    write("config", "watch_other", b"W" + field_bytes(2, "shop/db-0"))
    write("config", "watch_missing", b"W" + field_bytes(2, "shop/nope"))
    write("config", "report_ok", b"R" + field_bytes(1, "v1") + field_int(2, 1)
          + field_bytes(3, "0a1b2c") + field_int(4, 1900000000))
    write("config", "report_error", b"R" + field_bytes(1, "v0")
          + field_bytes(5, "snapshot refused: \x1b[31mred\x1b[0m"))
    write("config", "report_not_utf8", b"R" + varint(1 << 3 | 2) + b"\x03\xff\xfe\x80")


if __name__ == "__main__":
    sign_seeds()
    config_seeds()
