#include "config.h"

#include <stdio.h>
#include <stdlib.h>

#include <openssl/evp.h>

#include "sha256.h"
#include "util.h"

#ifndef CRYPTO_SONAME
#define CRYPTO_SONAME "libcrypto.so.3"
#endif

#define CRYPTO_FUNCS(X) \
	X(EVP_MD_CTX_new) X(EVP_MD_CTX_free) X(EVP_sha256) X(EVP_DigestInit_ex) \
	X(EVP_DigestUpdate) X(EVP_DigestFinal_ex)

static struct {
#define CRYPTO_FIELD(f) __typeof__(f) *f;
	CRYPTO_FUNCS(CRYPTO_FIELD)
#undef CRYPTO_FIELD
} fn;

struct sha256 {
	EVP_MD_CTX *ctx;
};

static int crypto_load(struct ct_err *e)
{
	static struct dl_lib lib = { .soname = CRYPTO_SONAME, .what = "libcrypto" };
#define CRYPTO_NAME(f) #f,
	static const char *const names[] = { CRYPTO_FUNCS(CRYPTO_NAME) };
#undef CRYPTO_NAME

	_Static_assert(sizeof(fn) == sizeof(names), "one symbol per function");
	return dl_load(&lib, names, &fn, ARRAY_SIZE(names), e);
}

int sha256_new(struct sha256 **ret, struct ct_err *e)
{
	struct sha256 *h;
	int r = crypto_load(e);

	if (r < 0)
		return r;
	h = calloc(1, sizeof(*h));
	if (!h)
		return ct_fail(e, ENOMEM, "out of memory");
	h->ctx = fn.EVP_MD_CTX_new();
	if (!h->ctx || fn.EVP_DigestInit_ex(h->ctx, fn.EVP_sha256(), NULL) != 1) {
		sha256_free(h);
		return ct_fail(e, ENOMEM, "cannot start a sha256 digest");
	}
	*ret = h;
	return 0;
}

void sha256_update(struct sha256 *h, const void *p, size_t n)
{
	(void)fn.EVP_DigestUpdate(h->ctx, p, n);
}

void sha256_hex(struct sha256 *h, char hex[65])
{
	unsigned char md[32];
	unsigned int n = 0, i;

	(void)fn.EVP_DigestFinal_ex(h->ctx, md, &n);
	for (i = 0; i < 32; i++)
		(void)snprintf(hex + 2 * i, 3, "%02x", i < n ? md[i] : 0);
	(void)fn.EVP_DigestInit_ex(h->ctx, fn.EVP_sha256(), NULL);
}

void sha256_free(struct sha256 *h)
{
	if (!h)
		return;
	if (h->ctx)
		fn.EVP_MD_CTX_free(h->ctx);
	free(h);
}
