/*
 * metrics.h - the Prometheus endpoint (metrics_addr:metrics_port, GET /metrics).
 */
#ifndef SP_METRICS_H
#define SP_METRICS_H

#include <stdbool.h>
#include <stddef.h>

/* Listen when metrics_port is set; false with a message in err if that fails. */
bool sp_metrics_start(char *err, size_t errlen);
void sp_metrics_stop(void);

#endif
