"""webhook_selfcert_test: the injection webhook's certificate with no step
by the operator (issue #14). A real cinch-control (--webhook-issue-cert)
against tests/lib/kube_api.py in live mode (the API server's object,
PATCH and Status formats; no cluster runs here), read by the clients the
API server stands for: a Python TLS client that verifies the chain with
the CA bundle the API server would hold and the Service's DNS name.

Checks, each of which fails when its mechanism is taken out:
  - issued and served: the webhook port presents a certificate that
    verifies against the control's trust bundle for
    cinch-control.cinch-system.svc and .svc.cluster.local and not for
    another name; it has DNS SANs only (no SPIFFE URI: not a mesh
    identity) and lives as long as --webhook-cert-ttl says (10 s here,
    with --test-short-ttl, so renewals happen during the test);
  - its key is nowhere on disk: no file under the state directory but the
    CA's own key holds a private key;
  - caBundle: the MutatingWebhookConfiguration cinch-injector gets the
    base64 of the bundle PEM, by a strategic merge patch carrying its
    resourceVersion; a second webhook in the same object that calls
    another Service keeps its caBundle; a caBundle wiped by someone else
    (an apply) is put back at the next resync;
  - metric: cinch_control_webhook_cert_expiry_timestamp_seconds is the
    notAfter of the certificate served;
  - renewal: before the first certificate expires, new connections get a
    new one (another serial, a later notAfter), still verifying;
  - root rotation (admin socket, as `cinchctl ca rotate`): after prepare
    the caBundle holds both roots; after activate the served certificate
    chains to the new root alone;
  - an operator's certificate (--webhook-cert/--webhook-key): served, and
    the control never PATCHes the MutatingWebhookConfiguration;
  - bad flags (a Service or namespace name that is no DNS label, a
    lifetime out of range, both certificate sources) refused at start.
Ports: the webhook on 21710/21711 (the range given to these tests).

usage: webhook_selfcert_test.py <cinch-control> <src dir>
"""
import base64
import copy
import datetime
import os
import socket
import ssl
import sys
import tempfile
import time

import yaml
from cryptography import x509

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "lib"))
from kubecontrol import Checks, Control, Kube, b64, namespace, test_ca, wait_for  # noqa: E402

CONTROL, SRC = sys.argv[1], sys.argv[2]
SVC = "cinch-control.cinch-system.svc"
PORT_ISSUED, PORT_BROUGHT = 21710, 21711
MWC = "mutatingwebhookconfigurations"
check = Checks()


def mwc_object():
    """deploy/k8s/control/webhook.yaml as the API server stores it, plus a
    webhook of someone else in the same object."""
    with open(os.path.join(SRC, "deploy/k8s/control/webhook.yaml")) as f:
        obj = yaml.safe_load(f)
    obj["metadata"]["uid"] = "uid-mwc"
    other = copy.deepcopy(obj["webhooks"][0])
    other["name"] = "other.example.dev"
    other["clientConfig"] = {"service": {"name": "other", "namespace": "other-system",
                                         "path": "/mutate", "port": 443},
                             "caBundle": b64("not ours")}
    obj["webhooks"].append(other)
    return obj


def served(port, name, cafile):
    """(leaf certificate, None) when the TLS handshake verifies `name`
    against cafile, else (None, the error)."""
    ctx = ssl.create_default_context(cafile=cafile)
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            with ctx.wrap_socket(s, server_hostname=name) as t:
                return x509.load_der_x509_certificate(t.getpeercert(binary_form=True)), None
    except (ssl.SSLError, OSError) as e:
        return None, e


def not_after(cert):
    """notAfter, timezone-aware (python3-cryptography 38 has no *_utc)."""
    return cert.not_valid_after.replace(tzinfo=datetime.timezone.utc)


def hooks(kube):
    obj = kube.get(MWC, "", "cinch-injector") or {}
    return {h["name"]: h["clientConfig"].get("caBundle") for h in obj.get("webhooks", [])}


def brought_cert(tmp, kube):
    """The operator's certificate files: served, nothing patched."""
    pki = test_ca(tmp, "operator", server_names=[SVC, SVC + ".cluster.local"])
    state = os.path.join(tmp, "brought")
    ctl = Control(CONTROL, state, ["--webhook-port", str(PORT_BROUGHT), "--webhook-cert",
                                   pki["cert"], "--webhook-key", pki["key"],
                                   "--kube-sources", "off", "--trust-bundle-configmaps", "off"]
                  + kube.flags())
    try:
        cert, err = served(PORT_BROUGHT, SVC, pki["ca"])
        check(cert is not None, "operator's certificate served (%s)" % err)
        time.sleep(2)
        check.eq([r for r in kube.requests() if MWC in r], [],
                 "with the operator's certificate the webhook configuration is not touched")
    finally:
        check.eq(ctl.stop(), 0, "control (operator's certificate) stops cleanly")


def issued(tmp, kube):
    state = os.path.join(tmp, "issued")
    ctl = Control(CONTROL, state, ["--webhook-port", str(PORT_ISSUED), "--webhook-issue-cert",
                                   "--webhook-cert-ttl", "10s", "--test-short-ttl",
                                   "--kube-sources", "off", "--trust-bundle-configmaps", "off"]
                  + kube.flags())
    try:
        run_issued(tmp, kube, ctl)
    finally:
        check.eq(ctl.stop(), 0, "control stops cleanly")


def run_issued(tmp, kube, ctl):
    bundle = os.path.join(ctl.state, "ca", "bundle.pem")
    first, err = served(PORT_ISSUED, SVC, bundle)
    if not check(first is not None, "issued certificate verifies for %s (%s)" % (SVC, err)):
        return
    c2, err = served(PORT_ISSUED, SVC + ".cluster.local", bundle)
    check(c2 is not None, "and for %s.cluster.local (%s)" % (SVC, err))
    bad, err = served(PORT_ISSUED, "cinch-control.other.svc", bundle)
    check(bad is None and "match" in str(err).lower(),
          "not for another name (%s)" % err)
    san = first.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    check.eq(sorted(san.get_values_for_type(x509.DNSName)), [SVC, SVC + ".cluster.local"],
             "DNS SANs")
    check.eq(san.get_values_for_type(x509.UniformResourceIdentifier), [], "no URI SAN")
    life = not_after(first) - datetime.datetime.now(datetime.timezone.utc)
    check(life.total_seconds() <= 10, "lifetime from --webhook-cert-ttl 10s (%s left)" % life)

    keys = []
    for root, _, files in os.walk(ctl.state):
        for f in files:
            p = os.path.join(root, f)
            if os.path.isfile(p) and b"PRIVATE KEY" in open(p, "rb").read():
                keys.append(os.path.relpath(p, ctl.state))
    check.eq(keys, ["ca/ca.key"], "the only private key on disk is the CA's")

    want = b64(ctl.bundle_pem())
    got = wait_for(lambda: hooks(kube).get("inject.cinch.dev") == want and hooks(kube))
    check(got, "caBundle of inject.cinch.dev is the bundle (%s)" % hooks(kube))
    check.eq(hooks(kube).get("other.example.dev"), b64("not ours"),
             "the webhook calling another Service keeps its caBundle")
    patches = [r for r in kube.requests() if r.startswith("PATCH") and MWC in r]
    check(patches and all("application/strategic-merge-patch+json" in p and
                          '"resourceVersion"' in p for p in patches),
          "caBundle set by a strategic merge patch with a resourceVersion: %s" % patches)

    def metric_matches():  # a renewal may fall between the two reads: read again
        m = ctl.metrics().get("cinch_control_webhook_cert_expiry_timestamp_seconds")
        c = served(PORT_ISSUED, SVC, bundle)[0]
        return c is not None and m == not_after(c).timestamp()
    check(wait_for(metric_matches, timeout=5), "expiry metric = served notAfter")

    # renewal before expiry (at half of the 10 s: the checks above take
    # well under that)
    renewed = wait_for(lambda: (lambda c: c if c and c.serial_number != first.serial_number
                                else None)(served(PORT_ISSUED, SVC, bundle)[0]), timeout=12)
    now = datetime.datetime.now(datetime.timezone.utc)
    check(renewed is not None and now < not_after(first) and
          not_after(renewed) > not_after(first),
          "renewed before the first one expired")

    # someone's apply wiped caBundle: put back at the next resync
    obj = kube.get(MWC, "", "cinch-injector")
    for h in obj["webhooks"]:
        if h["name"] == "inject.cinch.dev":
            h["clientConfig"].pop("caBundle", None)
    kube.apply(MWC, "MODIFIED", obj)
    check(wait_for(lambda: hooks(kube).get("inject.cinch.dev") == want, timeout=10),
          "a wiped caBundle is put back")

    # root rotation
    r = ctl.ctl({"op": "ca_rotate", "step": "prepare"})
    check("error" not in r, "ca_rotate prepare: %s" % r.get("error"))
    both = b64(ctl.bundle_pem())
    check(ctl.bundle_pem().count("BEGIN CERTIFICATE") == 2, "bundle holds two roots")
    check(wait_for(lambda: hooks(kube).get("inject.cinch.dev") == both, timeout=10),
          "after prepare the caBundle holds both roots")
    r = ctl.ctl({"op": "ca_rotate", "step": "activate"})
    check("error" not in r, "ca_rotate activate: %s" % r.get("error"))
    pems = ctl.bundle_pem().split("-----END CERTIFICATE-----")
    roots = [x509.load_pem_x509_certificate((p + "-----END CERTIFICATE-----").encode())
             for p in pems if "BEGIN" in p]
    new_root = [c for c in roots if c.subject != first.issuer]
    if check(len(new_root) == 1, "one new root"):
        path = os.path.join(tmp, "new-root.pem")
        with open(path, "wb") as f:
            from cryptography.hazmat.primitives import serialization
            f.write(new_root[0].public_bytes(serialization.Encoding.PEM))
        c, err = served(PORT_ISSUED, SVC, path)
        check(c is not None, "after activate the served certificate chains to the new root "
              "(%s)" % err)


def bad_flags():
    """Bad input is refused at start with a clear message, nothing started."""
    import subprocess
    for args, why in ((["--webhook-service", "Bad_Name!"], "--webhook-service"),
                      (["--webhook-namespace", "a.b"], "--webhook-namespace"),
                      (["--webhook-cert-ttl", "10s"], "--webhook-cert-ttl: 5m..7d"),
                      (["--webhook-cert-ttl", "8d"], "--webhook-cert-ttl"),
                      (["--webhook-issue-cert", "--webhook-cert", "c", "--webhook-key", "k"],
                       "not both"),
                      (["--trust-bundle-configmaps", "maybe"], "--trust-bundle-configmaps")):
        r = subprocess.run([CONTROL, "--check-config", *args], capture_output=True, text=True,
                           timeout=20)
        check(r.returncode == 2 and why in r.stderr, "%s refused: %r" % (args, r.stderr))


def main():
    bad_flags()
    with tempfile.TemporaryDirectory(prefix="cxg-selfcert-") as tmp:
        kube = Kube(tmp, {"namespaces": [namespace("cinch-system")], MWC: [mwc_object()]})
        try:
            brought_cert(tmp, kube)
            issued(tmp, kube)
        finally:
            kube.stop()
    return check.done()


if __name__ == "__main__":
    sys.exit(main())
