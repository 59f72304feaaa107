/* tlsbio: TLS over memory BIOs, the half of a TLS connection that is the
 * same for every Cinch TLS engine (the agent's mtls, the control's gRPC
 * server): ciphertext in and out through two memory BIOs, plaintext
 * through SSL_read/SSL_write, errors as negative errno. The engines keep
 * their own contexts, verification and handshake policy. */
#ifndef CINCH_TLSBIO_H
#define CINCH_TLSBIO_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>

/* Gives `ssl` a fresh pair of memory BIOs (an empty input means "more
 * later", not end of file). 0 or -ENOMEM (ssl unchanged). */
int tlsbio_attach(SSL *ssl) __attribute__((warn_unused_result));
/* Ciphertext from the socket. 0 or -ENOMEM. */
int tlsbio_feed(SSL *ssl, const uint8_t *data, size_t len) __attribute__((warn_unused_result));
/* > 0 plaintext bytes; 0 when more ciphertext is needed; -EPIPE at
 * close_notify; -EPROTO on an error. */
int tlsbio_read(SSL *ssl, uint8_t *buf, size_t len);
/* Encrypts all of data. 0 or -EPROTO. */
int tlsbio_write(SSL *ssl, const uint8_t *data, size_t len) __attribute__((warn_unused_result));
/* Ciphertext for the socket: how much, and up to len of it moved out. */
size_t tlsbio_pending(const SSL *ssl);
size_t tlsbio_take(SSL *ssl, uint8_t *buf, size_t len);
/* Gives the memory BIOs' buffers back when both are empty (a fresh pair
 * replaces them), for a connection that has gone quiet: a memory BIO keeps
 * the largest size it ever grew to. Nothing to give back, or no memory
 * for the new pair: nothing changes. */
void tlsbio_trim(SSL *ssl);
/* Queues close_notify when the handshake is done. */
void tlsbio_shutdown(SSL *ssl);

#endif
