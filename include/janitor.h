/*
 * janitor.h - periodic housekeeping: timeouts and pool sizes.
 */
#ifndef SP_JANITOR_H
#define SP_JANITOR_H

void sp_janitor_start(void);
void sp_janitor_stop(void);

#endif
