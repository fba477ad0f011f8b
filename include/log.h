/*
 * log.h - levelled logging with a connection prefix.
 * The level is checked before any formatting happens (macros), so a disabled
 * debug line costs one comparison.
 */
#ifndef SP_LOG_H
#define SP_LOG_H

#include <stdarg.h>

typedef enum { SP_LOG_ERROR = 0, SP_LOG_WARNING, SP_LOG_INFO, SP_LOG_DEBUG, SP_LOG_TRACE } sp_log_level_t;

extern int sp_log_level;

/* The command line's -v (verbose times) and -q: they apply over the file's log_level,
 * at start and after every RELOAD or SET. */
void sp_log_set_options(int verbose, int quiet);
/* Set sp_log_level from the configured level, adjusted by the command line. */
void sp_log_apply_level(int configured);

/* path NULL: stderr. Returns false (with errno) if the file cannot be opened. */
int sp_log_open(const char *path);
void sp_log_reopen(void);
void sp_log_close(void);
void sp_log_write(int level, const char *prefix, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void sp_log_vwrite(int level, const char *prefix, const char *fmt, va_list ap);

#define sp_log(level, ...)                                                                         \
	do {                                                                                       \
		if ((level) <= sp_log_level)                                                       \
			sp_log_write((level), NULL, __VA_ARGS__);                                  \
	} while (0)
#define sp_error(...) sp_log(SP_LOG_ERROR, __VA_ARGS__)
#define sp_warn(...) sp_log(SP_LOG_WARNING, __VA_ARGS__)
#define sp_info(...) sp_log(SP_LOG_INFO, __VA_ARGS__)
#define sp_debug(...) sp_log(SP_LOG_DEBUG, __VA_ARGS__)

#endif
