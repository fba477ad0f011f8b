/*
 * listener.h - listening sockets (TCP and unix) that hand accepted
 * connections to client.c.
 */
#ifndef SP_LISTENER_H
#define SP_LISTENER_H

#include <stdbool.h>
#include <stddef.h>

/* Open the sockets named by the config; false with a message on failure. */
bool sp_listener_start(char *err, size_t errlen);
/* Stop accepting (shutdown); unix socket files are removed. */
void sp_listener_stop(void);
/* Stop (hold = true) or restart accepting; connections wait in the kernel's backlog. */
void sp_listener_hold(bool hold);

#endif
