/* sha256 for the build cache, from OpenSSL's libcrypto, loaded with
 * dlopen when a build first needs it (so no other command pays for
 * loading it). */
#ifndef CTOOL_SHA256_H
#define CTOOL_SHA256_H

#include <stddef.h>

#include "err.h"

struct sha256;

/* A fresh digest; 0, or -ENOSYS/-ENOMEM with *e set. */
int sha256_new(struct sha256 **ret, struct ct_err *e);
void sha256_update(struct sha256 *h, const void *p, size_t n);
/* Finish into hex (64 digits and a NUL); h can be fed again afresh. */
void sha256_hex(struct sha256 *h, char hex[65]);
void sha256_free(struct sha256 *h); /* accepts NULL */

#endif
