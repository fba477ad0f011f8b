/*
 * main.c - the command line: options, --check-config, --describe-config,
 * then hands over to daemon.c.
 */
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "daemon.h"
#include "log.h"
#include "userlist.h"

static void usage(FILE *out)
{
	fprintf(out,
		"shardpool %s - PostgreSQL connection pooler, sharding router and read/write splitter\n\n"
		"Usage: shardpool [OPTIONS] CONFIG.ini\n\n"
		"  -d, --daemon           run in the background (returns once listening)\n"
		"  -v, --verbose          more log output (repeat for more)\n"
		"  -q, --quiet            log only errors\n"
		"      --check-config     validate CONFIG.ini, print a summary, exit 0 if valid\n"
		"      --describe-config  print the configuration reference (Markdown)\n"
		"  -V, --version          print the version\n"
		"  -h, --help             this help\n",
		PACKAGE_VERSION);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {{"daemon", no_argument, NULL, 'd'},
					     {"verbose", no_argument, NULL, 'v'},
					     {"quiet", no_argument, NULL, 'q'},
					     {"check-config", no_argument, NULL, 'c'},
					     {"describe-config", no_argument, NULL, 'D'},
					     {"version", no_argument, NULL, 'V'},
					     {"help", no_argument, NULL, 'h'},
					     {NULL, 0, NULL, 0}};
	bool daemonize = false, check = false;
	int verbose = 0, quiet = 0, opt;

	while ((opt = getopt_long(argc, argv, "dvqVh", opts, NULL)) != -1) {
		switch (opt) {
		case 'd':
			daemonize = true;
			break;
		case 'v':
			verbose++;
			break;
		case 'q':
			quiet = 1;
			break;
		case 'c':
			check = true;
			break;
		case 'D':
			sp_config_write_reference(stdout);
			return 0;
		case 'V':
			printf("shardpool %s\n", PACKAGE_VERSION);
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc - 1) {
		usage(stderr);
		return 2;
	}
	if (check) {
		char err[2048];
		sp_config_t *cfg = sp_config_load(argv[optind], err, sizeof(err));
		if (!cfg) {
			fprintf(stderr, "%s\n", err);
			return 1;
		}
		if (cfg->auth_file && *cfg->auth_file) { /* as start-up reads it */
			sp_userlist_t *users = sp_userlist_load(cfg->auth_file, err, sizeof(err));
			if (!users) {
				fprintf(stderr, "%s\n", err);
				sp_config_free(cfg);
				return 1;
			}
			sp_userlist_free(users);
		}
		sp_config_print_summary(cfg, stdout);
		sp_config_free(cfg);
		return 0;
	}
	sp_log_set_options(verbose, quiet);
	sp_log_apply_level(SP_LOG_INFO); /* until the file's log_level is read */
	return sp_daemon_run(argv[optind], daemonize);
}
