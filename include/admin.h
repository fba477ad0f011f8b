/*
 * admin.h - the admin console: the virtual database "shardpool".
 */
#ifndef SP_ADMIN_H
#define SP_ADMIN_H

#include "sp_types.h"

/* Finish the login of an admin client (parameters, key data, ReadyForQuery). */
void sp_admin_login(sp_client_t *c);
/* Answer the queries an admin client has sent. */
void sp_admin_process(sp_client_t *c);

#endif
