/*
 * tap.h - a minimal Test Anything Protocol emitter for the unit tests.
 * Each test program prints "1..N" at the end (done_testing) and exits non-zero
 * if any test failed, so automake's TAP driver and a plain shell both see it.
 */
#ifndef SP_TAP_H
#define SP_TAP_H

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static int tap_n, tap_failed;

static inline int tap_ok(int cond, const char *fmt, ...)
{
	va_list ap;
	tap_n++;
	printf("%sok %d - ", cond ? "" : "not ", tap_n);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	if (!cond)
		tap_failed++;
	return cond;
}

#define ok(cond, ...) tap_ok(!!(cond), __VA_ARGS__)
#define is_int(got, want, ...)                                                              \
	do {                                                                                \
		long long g_ = (long long)(got), w_ = (long long)(want);                    \
		if (!tap_ok(g_ == w_, __VA_ARGS__))                                         \
			printf("#   got %lld, expected %lld\n", g_, w_);                       \
	} while (0)
#define is_str(got, want, ...)                                                              \
	do {                                                                                \
		const char *g_ = (got), *w_ = (want);                                       \
		if (!tap_ok(g_ && w_ && strcmp(g_, w_) == 0, __VA_ARGS__))                  \
			printf("#   got '%s', expected '%s'\n", g_ ? g_ : "(null)",           \
			       w_ ? w_ : "(null)");                                             \
	} while (0)

static inline int done_testing(void)
{
	printf("1..%d\n", tap_n);
	return tap_failed ? 1 : 0;
}

#endif
