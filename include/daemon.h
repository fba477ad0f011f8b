/*
 * daemon.h - process-wide state: the loaded config, the userlist, start-up,
 * signals, reload and shutdown.
 */
#ifndef SP_DAEMON_H
#define SP_DAEMON_H

#include <stdbool.h>

#include "config.h"
#include "userlist.h"

typedef struct sp_daemon {
	sp_config_t *cfg;
	sp_userlist_t *users;
	bool shutting_down;
	bool wait_for_clients; /* SHUTDOWN WAIT_FOR_CLIENTS: exit when every client has left */
	bool paused;
	double shutdown_deadline;
	int exit_code;
} sp_daemon_t;

extern sp_daemon_t sp_g;

int sp_daemon_run(const char *config_path, bool daemonize);
/* Re-read the config and auth_file; returns false with a message in err on error. On
 * success err lists the changes the file makes that need a restart ("" for none). */
bool sp_daemon_reload(char *err, size_t errlen);
void sp_daemon_shutdown(bool immediate);
/* The running [shardpool] keys changed (RELOAD, the admin console's SET): apply them. */
void sp_daemon_settings_changed(void);
/* SHUTDOWN WAIT_FOR_CLIENTS: stop accepting and exit once every client has left on its
 * own (no shutdown_timeout); a signal then makes it an ordinary shutdown. */
void sp_daemon_shutdown_wait_for_clients(void);
uint64_t sp_next_id(void);

#endif
