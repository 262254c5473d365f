#include "config.h"

#include <stdarg.h>
#include <stdio.h>

#include "log.h"

static enum log_level cur_level = LOG_INFO;
static const char *cur_verb;

void log_set_level(enum log_level level)
{
	cur_level = level;
}

enum log_level log_get_level(void)
{
	return cur_level;
}

void log_set_verb(const char *verb)
{
	cur_verb = verb;
}

void log_msg(enum log_level level, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;

	if (level > cur_level)
		return;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	/* one write, so parallel commands do not interleave halves of lines */
	if (cur_verb)
		fprintf(stderr, "ctool: %s: %s%s\n", cur_verb,
			level == LOG_WARN ? "warning: " : "", buf);
	else
		fprintf(stderr, "ctool: %s%s\n", level == LOG_WARN ? "warning: " : "", buf);
}
