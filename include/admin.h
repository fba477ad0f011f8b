/*
 * admin.h - the admin console: the virtual database "shardpool".
 */
#ifndef SP_ADMIN_H
#define SP_ADMIN_H

#include <stdbool.h>

#include "sp_types.h"

/* Finish the login of an admin client (parameters, key data, ReadyForQuery). */
void sp_admin_login(sp_client_t *c);
/* Answer the queries an admin client has sent (none while a PAUSE or WAIT_CLOSE of
 * its waits). */
void sp_admin_process(sp_client_t *c);
/* An admin client is closing: forget what it waits for. */
void sp_admin_client_gone(sp_client_t *c);
/* A CancelRequest for admin client c: a PAUSE or WAIT_CLOSE it waits for ends with
 * 57014 (a PAUSE is undone). False if it was waiting for nothing. */
bool sp_admin_cancel(sp_client_t *c);
/* PAUSE (pause) or RESUME of every database without an admin client, for SIGUSR1 and
 * SIGUSR2 (by names the signal in the log): PAUSE answers no one, it does not wait. */
void sp_admin_pause_all(bool pause, const char *by);
/* Start / stop the SHOW STATS snapshots (every stats_period) and the waits. */
void sp_admin_start(void);
/* stats_period may have changed (RELOAD, SET): the snapshots follow it at once. */
void sp_admin_settings_changed(void);
void sp_admin_stop(void);

#endif
