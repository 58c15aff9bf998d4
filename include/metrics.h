/* metrics: counters and histograms since start, exposed in the Prometheus text format.
 *
 * Names start with ocpm_, use base units (seconds, bytes), counters end in _total, and no label
 * carries a per-execution or per-session value (bounded cardinality: mode x status). */
#ifndef OCPM_METRICS_H
#define OCPM_METRICS_H

#include "manager.h"

/* One finished execution. */
void metrics_observe(const char *mode, const char *status, double duration_s, double queue_wait_s);
/* The exposition text (malloc'd, NUL-terminated) or NULL. */
char *metrics_render(manager_t *m);

#endif
