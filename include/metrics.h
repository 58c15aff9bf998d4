/* metrics: the Prometheus text exposition (0.0.4) and OpenMetrics 1.0, from one table.
 *
 * Names start with ocpm_, use base units (seconds, bytes), counters end in _total, and no label
 * carries a per-execution or per-session value (bounded cardinality: mode x status, tool x status). A metrics_t
 * keeps what only it can know (finished executions by mode and status, and the duration and
 * queue-wait histograms); every other metric is a row of a metric_t table whose read function
 * takes the value from where it lives, at scrape time. */
#ifndef OCPM_METRICS_H
#define OCPM_METRICS_H

#include <stddef.h>

#include "exec_status.h"

typedef struct metrics metrics_t;

typedef enum { METRIC_GAUGE, METRIC_COUNTER } metric_type_t;

/* The two expositions of the same samples. OpenMetrics differs in form only: a counter's family
 * (# TYPE, # HELP) is its name without _total while its samples keep it, a family named for a unit
 * (_seconds, _bytes) says so in # UNIT, HELP escapes quotes too, and the text ends in # EOF. */
typedef enum { METRICS_PROMETHEUS, METRICS_OPENMETRICS } metrics_format_t;
#define METRICS_PROMETHEUS_TYPE "text/plain; version=0.0.4; charset=utf-8"
#define METRICS_OPENMETRICS_TYPE "application/openmetrics-text; version=1.0.0; charset=utf-8"

/* One metric: its name, type and help, and how to read its value from ctx. A labelled one (count
 * set) has one sample per instance: count(ctx) of them, the i-th read by read_at, with its labels
 * written by labels (`pool="a",server="0"`: instances the configuration bounds, never a user's). */
typedef struct metric {
    const char *name;
    metric_type_t type;
    const char *help;
    double (*read)(const void *ctx);
    int (*count)(const void *ctx);
    double (*read_at)(const void *ctx, int i);
    void (*labels)(const void *ctx, int i, char *out, size_t len);
} metric_t;

metrics_t *metrics_new(double started_at);
void metrics_free(metrics_t *mt);
/* One finished execution (mode "per-session" or "server"); duration_s < 0 when it never ran. */
void metrics_observe(metrics_t *mt, const char *mode, exec_status_t status, double duration_s, double queue_wait_s);
/* One tool call the agent made, by tool and final status (completed, error). At most
 * METRICS_TOOLS_MAX tool names are told apart; later ones count as "other". */
#define METRICS_TOOLS_MAX 64
void metrics_tool_call(metrics_t *mt, const char *tool, const char *status);
/* The exposition in format (malloc'd, NUL-terminated) or NULL: build info, start time, the
 * execution families, then each row of table read from ctx. */
char *metrics_render(const metrics_t *mt, const metric_t *table, size_t n, const void *ctx, metrics_format_t format);
/* Which exposition an Accept header asks for: OpenMetrics when application/openmetrics-text is
 * acceptable (q > 0) and no less preferred than text/plain (or text/x, x/x, which only Prometheus
 * text answers); else, and without Accept, Prometheus text. Pure. */
metrics_format_t metrics_negotiate(const char *accept);
/* A label value escaped for both formats (backslash, double quote, line feed), cut to fit out
 * (len > 0); returns out. Labels written by a table's labels function go through it. */
const char *metrics_escape(const char *value, char *out, size_t len);

#endif
