/* Error reporting: every fallible core function returns 0 or -errno and
 * fills a caller-owned struct ct_err at the point of failure. */
#ifndef CTOOL_ERR_H
#define CTOOL_ERR_H

#include <errno.h>

struct ct_err {
	int code;          /* positive errno, 0 when unset */
	char msg[256];     /* one line, no trailing period */
};

/* Record code and a printf-style message in *e; return -code.
 * e may be NULL (the message is dropped). */
int ct_fail(struct ct_err *e, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Like ct_fail, with ": strerror(code)" appended to the message. */
int ct_fail_errno(struct ct_err *e, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#endif
