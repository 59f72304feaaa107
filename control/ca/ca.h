/* ca: the mesh certificate authority of cinch-control.
 *
 * Owns the signing key and certificate (a root it generated on first start,
 * or a root/intermediate loaded from --ca-cert/--ca-key with its chain), the
 * trust bundle (one or more roots, kept across restarts for rotation) and
 * issues X.509-SVIDs with one fixed profile (SPIFFE X.509-SVID standard,
 * sections 4 and 5):
 *
 *   subject        empty (so the SAN extension is critical, RFC 5280 4.2.1.6)
 *   SAN            exactly one URI, the identity the CALLER was authenticated
 *                  as; whatever names the CSR asks for are ignored
 *   basicConst.    critical CA:FALSE
 *   keyUsage       critical digitalSignature
 *   extKeyUsage    serverAuth, clientAuth
 *   serial         128 random bits (top bit clear)
 *   validity       notBefore = now - 30 s (clock skew), lifetime clamped to
 *                  [ttl_min, ttl_max] and to the CA's own notAfter
 *
 * State directory layout (dirs 0700, keys 0600, every write crash-safe via
 * fsutil_write_atomic):  <state>/ca/ca.key  ca.crt   (generated root only)
 *                        <state>/ca/next.key next.crt activated_at (rotation)
 *                        <state>/ca/bundle.pem bundle.seq (roots in force)
 *
 * In the control, this module and the TLS engine (common/mtls.c, with
 * common/certverify.c) are the only places that call BoringSSL.
 * A struct ca is immutable after ca_open(), so the loop can share it freely. */
#ifndef CINCH_CONTROL_CA_H
#define CINCH_CONTROL_CA_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <openssl/x509.h>

#define CA_TTL_DEFAULT_S  3600
#define CA_TTL_MIN_S	  300
#define CA_TTL_MIN_TEST_S 120 /* --test-short-ttl: rotation tests only */
#define CA_TTL_MAX_S	  86400
#define CA_ROOT_DAYS	  3650
#define CA_BACKDATE_S	  30
#define CA_CSR_MAX	  16384

struct ca_config {
	const char *trust_domain; /* borrowed, validated by ca_open */
	const char *state_dir;	  /* borrowed; <state>/ca is created 0700 */
	const char *cert_path;	  /* NULL: generate/load our own root */
	const char *key_path;	  /* with cert_path */
	long ttl_default_s, ttl_min_s, ttl_max_s;
};

/* Why a CSR or a signature was refused; names double as metric labels. */
enum ca_reason {
	CA_ER_NONE = 0,
	CA_ER_CSR_PARSE,
	CA_ER_CSR_SIGNATURE,
	CA_ER_KEY_TYPE,
	CA_ER_KEY_WEAK,
	CA_ER_CA_EXPIRED,
	CA_ER_INTERNAL,
	CA_ER_COUNT_,
};

const char *ca_reason_name(enum ca_reason r);

struct ca;

/* An issued certificate; ca_issued_cleanup() frees der. */
struct ca_issued {
	uint8_t *der;
	size_t der_len;
	char serial_hex[41];
	int64_t not_before, not_after;
};

/* Opens or creates the CA described by cfg. 0 and *out (new, ca_free) or
 * -errno with *why (static text) set. */
int ca_open(const struct ca_config *cfg, struct ca **out, const char **why)
	__attribute__((warn_unused_result));
void ca_free(struct ca *ca);

/* Parses a DER PKCS#10 request (the whole buffer, nothing after it),
 * verifies its signature and accepts EC P-256/P-384 or RSA 2048..8192.
 * 0 and *pub (new reference) or -EINVAL with *why set. Names in it are
 * not looked at. */
int ca_csr_check(const uint8_t *der, size_t len, EVP_PKEY **pub, enum ca_reason *why)
	__attribute__((warn_unused_result));

/* Issues an SVID for `spiffe_id` (already authenticated and validated by
 * the caller) over the key in `csr`. ttl_s 0 means the default; others are
 * clamped. `now` is the clock (tests pass other times). 0 and *out, or
 * -EINVAL/-EKEYEXPIRED/-ENOMEM with *why set; nothing is issued then. */
int ca_sign_csr(const struct ca *ca, const uint8_t *csr, size_t csr_len, const char *spiffe_id,
		long ttl_s, time_t now, struct ca_issued *out, enum ca_reason *why)
	__attribute__((warn_unused_result));
/* The same for a public key that ca_csr_check() accepted (borrowed), so a
 * caller that checks the CSR before authenticating verifies it only once. */
int ca_sign_pubkey(const struct ca *ca, EVP_PKEY *pub, const char *spiffe_id, long ttl_s,
		   time_t now, struct ca_issued *out, enum ca_reason *why)
	__attribute__((warn_unused_result));
void ca_issued_cleanup(struct ca_issued *is);
/* Frees a key returned by ca_csr_check(); NULL is a no-op. */
void ca_key_free(EVP_PKEY *key);

/* A server certificate for the control itself: a fresh P-256 key (never
 * leaves this process), URI SAN spiffe_id plus DNS names and IP addresses.
 * Valid for `lifetime_s` (clamped to the CA). New *cert and *key.
 * spiffe_id NULL: no URI SAN, a plain TLS server certificate for the DNS
 * names (the injection webhook's: not an identity of the mesh). */
int ca_issue_server(const struct ca *ca, const char *spiffe_id, const char *const *dns,
		    size_t n_dns, const char *const *ips, size_t n_ips, long lifetime_s,
		    X509 **cert, EVP_PKEY **key) __attribute__((warn_unused_result));

/* Renewal: 0 when `leaf` (with `untrusted` intermediates, may be NULL)
 * chains to the bundle at `now`, is CA:FALSE and names a workload of our
 * trust domain, copied into id (idlen >= SPIFFE_ID_MAX + 1). -EPERM and
 * *why otherwise. Borrows everything. */
int ca_verify_svid(const struct ca *ca, X509 *leaf, STACK_OF(X509) * untrusted, time_t now,
		   char *id, size_t idlen, const char **why) __attribute__((warn_unused_result));

const char *ca_trust_domain(const struct ca *ca);
/* The CA's notAfter, Unix seconds. */
int64_t ca_not_after(const struct ca *ca);
/* Clamps a requested lifetime (0: default) to the configured bounds. */
long ca_clamp_ttl(const struct ca *ca, long ttl_s);

/* Chain after the leaf: intermediates up to, not including, the root.
 * Borrowed DER (valid while ca lives). */
size_t ca_chain_len(const struct ca *ca);
const uint8_t *ca_chain_der(const struct ca *ca, size_t i, size_t *len);
/* The same chain as a new stack (sk_X509_pop_free), for a TLS context;
 * NULL on ENOMEM. */
STACK_OF(X509) * ca_chain_new(const struct ca *ca);
/* Roots of the bundle, borrowed DER, and the bundle's sequence number. */
size_t ca_bundle_len(const struct ca *ca);
const uint8_t *ca_bundle_der(const struct ca *ca, size_t i, size_t *len);
uint64_t ca_bundle_sequence(const struct ca *ca);
/* The bundle's roots as a new stack (sk_X509_pop_free), for a TLS context
 * or certverify; NULL on ENOMEM. */
STACK_OF(X509) * ca_bundle_roots_new(const struct ca *ca);
/* The SPIFFE bundle document (SPIFFE Trust Domain and Bundle, 4): a JWK
 * set with one x509-svid key per root. New string (free()), NULL on error. */
char *ca_bundle_json(const struct ca *ca);
/* The bundle as PEM (new string, free()). */
char *ca_bundle_pem(const struct ca *ca);

/* Rotation of the control's own root (with --ca-cert: -ENOTSUP), in three
 * steps, each persisted crash-safe before ca_rotate() returns; the caller
 * then opens the CA again (a struct ca never changes):
 *   PREPARE   a new root (<state>/ca/next.key, next.crt) joins the bundle
 *             (sequence + 1); signing is unchanged, so agents learn to
 *             trust it before anything is signed by it. -EEXIST when one
 *             is prepared already.
 *   ACTIVATE  the prepared root becomes the signer; the old root stays in
 *             the bundle, so what it signed still verifies; the time is
 *             recorded (ca_activated_at). -ENOENT when none is prepared.
 *   RETIRE    every root but the signer's (and a prepared one) leaves the
 *             bundle (sequence + 1). -EALREADY when there is none. The
 *             caller decides when that is safe: once nothing the old root
 *             signed is still valid.
 * *why on failure. */
enum ca_rotate_step {
	CA_ROTATE_PREPARE = 0,
	CA_ROTATE_ACTIVATE,
	CA_ROTATE_RETIRE,
};
int ca_rotate(const struct ca_config *cfg, enum ca_rotate_step step, time_t now, const char **why)
	__attribute__((warn_unused_result));
/* One root of the bundle as `cinchctl ca status` shows it. */
struct ca_root_info {
	char subject[256]; /* one line, "/O=.../CN=..." */
	int64_t not_before, not_after;
	int signer; /* the root that signs now */
	int next;   /* the prepared root (not signing yet) */
};
/* Fills *out for root i (< ca_bundle_len); -EINVAL when i is out of range. */
int ca_root_info(const struct ca *ca, size_t i, struct ca_root_info *out)
	__attribute__((warn_unused_result));
/* 1 when a next root is prepared (in the bundle, not signing yet). */
int ca_rotation_prepared(const struct ca *ca);
/* When the signer last changed (Unix seconds); 0 when no old root is left. */
int64_t ca_activated_at(const struct ca *ca);

/* The two primitives the join-token store needs, kept here so that no
 * other module calls BoringSSL: CSPRNG bytes and SHA-256. */
void ca_random(uint8_t *out, size_t len);
void ca_sha256(uint8_t out[32], const void *in, size_t len);

#endif
