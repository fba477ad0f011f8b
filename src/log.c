/*
 * log.c - the log sink: one file (or stderr), one line per event, with a
 * timestamp, pid, level and an optional connection prefix. Callers check the
 * level through the macros in log.h before any argument is formatted.
 * It does not rotate files itself: SIGHUP reopens the file (logrotate's
 * copytruncate is not needed).
 */
#include "log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

int sp_log_level = SP_LOG_INFO;
static FILE *log_fp;
static char *log_path;

static int opt_verbose, opt_quiet;

static const char *level_names[] = {"ERROR", "WARNING", "LOG", "DEBUG", "TRACE"};

void sp_log_set_options(int verbose, int quiet)
{
	opt_verbose = verbose;
	opt_quiet = quiet;
}

void sp_log_apply_level(int configured)
{
	int level = configured + opt_verbose;
	if (opt_quiet)
		level = SP_LOG_ERROR;
	sp_log_level = level > SP_LOG_TRACE ? SP_LOG_TRACE : level;
}

int sp_log_open(const char *path)
{
	FILE *fp;
	if (!path || !*path) {
		log_fp = NULL;
		return 1;
	}
	fp = fopen(path, "a");
	if (!fp)
		return 0;
	setvbuf(fp, NULL, _IOLBF, 0);
	if (log_fp && log_fp != stderr)
		fclose(log_fp);
	log_fp = fp;
	if (log_path != path) {
		free(log_path);
		log_path = strdup(path);
	}
	return 1;
}

void sp_log_reopen(void)
{
	if (log_path)
		sp_log_open(log_path);
}

void sp_log_close(void)
{
	if (log_fp && log_fp != stderr)
		fclose(log_fp);
	log_fp = NULL;
	free(log_path);
	log_path = NULL;
}

void sp_log_vwrite(int level, const char *prefix, const char *fmt, va_list ap)
{
	char line[2048];
	struct timeval tv;
	struct tm tm;
	size_t n;
	FILE *fp = log_fp ? log_fp : stderr;

	gettimeofday(&tv, NULL);
	localtime_r(&tv.tv_sec, &tm);
	n = strftime(line, sizeof(line), "%Y-%m-%d %H:%M:%S", &tm);
	n += snprintf(line + n, sizeof(line) - n, ".%03d [%d] %s %s%s", (int)(tv.tv_usec / 1000),
		      (int)getpid(), level_names[level < 0 ? 0 : level > 4 ? 4 : level],
		      prefix ? prefix : "", prefix ? " " : "");
	if (n < sizeof(line))
		n += vsnprintf(line + n, sizeof(line) - n, fmt, ap);
	if (n >= sizeof(line) - 1)
		n = sizeof(line) - 2;
	line[n++] = '\n';
	fwrite(line, 1, n, fp);
}

void sp_log_write(int level, const char *prefix, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	sp_log_vwrite(level, prefix, fmt, ap);
	va_end(ap);
}
