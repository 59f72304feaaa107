/* pemfile: certificates from a PEM file or PEM text (a chain, a bundle),
 * the one reader the agent and cinchctl share. */
#ifndef CINCH_PEMFILE_H
#define CINCH_PEMFILE_H

#include <openssl/x509.h>

/* Every certificate of the file, in order; NULL when the file cannot be
 * read or holds none. Free with sk_X509_pop_free(sk, X509_free). */
STACK_OF(X509) * pemfile_certs(const char *path);
/* The same from PEM text (NUL-terminated). */
STACK_OF(X509) * pemfile_certs_mem(const char *pem);

#endif
