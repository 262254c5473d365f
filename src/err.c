#include "config.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "err.h"

static int fail_v(struct ct_err *e, int code, bool with_errno, const char *fmt, va_list ap)
{
	size_t n;

	if (code <= 0)
		code = EIO;
	if (e) {
		e->code = code;
		vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
		if (with_errno) {
			n = strlen(e->msg);
			snprintf(e->msg + n, sizeof(e->msg) - n, ": %s", strerror(code));
		}
	}
	return -code;
}

int ct_fail(struct ct_err *e, int code, const char *fmt, ...)
{
	va_list ap;
	int r;

	va_start(ap, fmt);
	r = fail_v(e, code, false, fmt, ap);
	va_end(ap);
	return r;
}

int ct_fail_errno(struct ct_err *e, int code, const char *fmt, ...)
{
	va_list ap;
	int r;

	va_start(ap, fmt);
	r = fail_v(e, code, true, fmt, ap);
	va_end(ap);
	return r;
}
