/*
 * reload.h - applying a configuration file read again (RELOAD, SIGHUP) to the
 * running one; see reload.c for what is applied and what needs a restart.
 */
#ifndef SP_RELOAD_H
#define SP_RELOAD_H

#include <stddef.h>

#include "config.h"

/*
 * Apply fresh (just read and validated) to run, the configuration in use, and
 * its live pools. Entries may move from fresh to run: free fresh afterwards.
 * Returns how many changes need a restart; they are logged as WARNINGs and
 * listed in err ("listen_port changed (6432 -> 6433); [table app.t] added"),
 * which is "" when there are none.
 */
int sp_reload_apply(sp_config_t *run, sp_config_t *fresh, char *err, size_t errlen);

#endif
