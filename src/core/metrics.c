#define _GNU_SOURCE
#include "metrics.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char *const metrics_modes[] = {"per-session", "server"};
#define METRICS_NMODES (sizeof metrics_modes / sizeof metrics_modes[0])

/* Bucket bounds in seconds: from a fast server turn to a long agent run. */
static const double metrics_bounds[] = {0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600};
#define METRICS_NB (sizeof metrics_bounds / sizeof metrics_bounds[0])

typedef struct metrics_hist {
    unsigned long long le[METRICS_NB + 1]; /* per bucket (not cumulative); last is +Inf */
    double sum;
    unsigned long long count;
} metrics_hist_t;

struct metrics {
    double started_at;
    unsigned long long executions[METRICS_NMODES][EXEC_NSTATUS];
    metrics_hist_t duration[METRICS_NMODES], queue_wait;
    /* tool calls: names as seen (the last slot is "other"), by completed / error */
    char tools[METRICS_TOOLS_MAX + 1][65];
    unsigned long long tool_calls[METRICS_TOOLS_MAX + 1][2];
    size_t ntools;
};

void metrics_tool_call(metrics_t *mt, const char *tool, const char *status)
{
    size_t i = 0;
    while (i < mt->ntools && strcmp(mt->tools[i], tool) != 0)
        i++;
    /* The agent names its tools: one it calls "other" counts with the overflow, or the label
     * would appear twice and no parser would take the exposition. */
    if (strcmp(tool, "other") == 0)
        i = METRICS_TOOLS_MAX;
    else if (i == mt->ntools) {
        if (mt->ntools < METRICS_TOOLS_MAX)
            snprintf(mt->tools[mt->ntools++], sizeof mt->tools[0], "%s", tool);
        else
            i = METRICS_TOOLS_MAX;
    }
    mt->tool_calls[i][strcmp(status, "completed") == 0 ? 0 : 1]++;
}

metrics_t *metrics_new(double started_at)
{
    metrics_t *mt = calloc(1, sizeof *mt);
    if (mt)
        mt->started_at = started_at;
    return mt;
}

void metrics_free(metrics_t *mt) { free(mt); }

static void metrics_hist_add(metrics_hist_t *h, double v)
{
    size_t i = 0;
    while (i < METRICS_NB && v > metrics_bounds[i])
        i++;
    h->le[i]++;
    h->sum += v;
    h->count++;
}

void metrics_observe(metrics_t *mt, const char *mode, exec_status_t status, double duration_s, double queue_wait_s)
{
    size_t m = 0;
    while (m < METRICS_NMODES && strcmp(metrics_modes[m], mode) != 0)
        m++;
    if (m == METRICS_NMODES || !exec_status_final(status))
        return;
    mt->executions[m][status]++;
    if (duration_s >= 0)
        metrics_hist_add(&mt->duration[m], duration_s);
    if (queue_wait_s >= 0)
        metrics_hist_add(&mt->queue_wait, queue_wait_s);
}

typedef struct metrics_out {
    char *buf;
    size_t len, cap;
    int oom;
} metrics_out_t;

static void metrics_put(metrics_out_t *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void metrics_put(metrics_out_t *o, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(o->buf ? o->buf + o->len : NULL, o->buf ? o->cap - o->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) {
            o->oom = 1;
            return;
        }
        if (o->buf && o->len + (size_t)n < o->cap) {
            o->len += (size_t)n;
            return;
        }
        size_t cap = o->cap ? o->cap * 2 : 8192;
        while (cap < o->len + (size_t)n + 1)
            cap *= 2;
        char *nb = realloc(o->buf, cap);
        if (!nb) {
            o->oom = 1;
            return;
        }
        o->buf = nb;
        o->cap = cap;
    }
}

const char *metrics_escape(const char *value, char *out, size_t len)
{
    size_t o = 0;
    for (const char *p = value; *p && o + 1 < len; p++) {
        const char *e = *p == '\\' ? "\\\\" : *p == '"' ? "\\\"" : *p == '\n' ? "\\n" : NULL;
        if (e && o + 2 >= len)
            break;
        if (e) {
            memcpy(out + o, e, 2);
            o += 2;
        } else {
            out[o++] = *p;
        }
    }
    out[o] = '\0';
    return out;
}

/* HELP text: Prometheus escapes backslash and line feed, OpenMetrics the double quote too. */
static void metrics_help(metrics_out_t *o, metrics_format_t f, const char *help)
{
    const char *special = f == METRICS_OPENMETRICS ? "\\\n\"" : "\\\n";
    for (const char *p = help; *p;) {
        size_t n = strcspn(p, special);
        metrics_put(o, "%.*s", (int)n, p);
        p += n;
        if (*p) {
            metrics_put(o, "\\%c", *p == '\n' ? 'n' : *p);
            p++;
        }
    }
}

/* The unit a family's name ends in (OpenMetrics' # UNIT), by suffix. */
static const struct {
    const char *suffix, *unit;
} metrics_units[] = {{"_seconds", "seconds"}, {"_bytes", "bytes"}};

/* A family's metadata. A counter's family in OpenMetrics is its name without _total (its samples
 * keep the suffix). */
static void metrics_meta(metrics_out_t *o, metrics_format_t f, const char *name, const char *type, const char *help)
{
    size_t n = strlen(name);
    if (f == METRICS_OPENMETRICS && strcmp(type, "counter") == 0 && n > 6 && strcmp(name + n - 6, "_total") == 0)
        n -= 6;
    metrics_put(o, "# HELP %.*s ", (int)n, name);
    metrics_help(o, f, help);
    metrics_put(o, "\n# TYPE %.*s %s\n", (int)n, name, type);
    for (size_t i = 0; f == METRICS_OPENMETRICS && i < sizeof metrics_units / sizeof metrics_units[0]; i++) {
        size_t k = strlen(metrics_units[i].suffix);
        if (n > k && strncmp(name + n - k, metrics_units[i].suffix, k) == 0)
            metrics_put(o, "# UNIT %.*s %s\n", (int)n, name, metrics_units[i].unit);
    }
}

static void metrics_hist_put(metrics_out_t *o, const char *name, const char *label, const metrics_hist_t *h)
{
    const char *sep = *label ? "," : "";
    unsigned long long cum = 0;
    for (size_t i = 0; i < METRICS_NB; i++) {
        cum += h->le[i];
        metrics_put(o, "%s_bucket{%s%sle=\"%g\"} %llu\n", name, label, sep, metrics_bounds[i], cum);
    }
    cum += h->le[METRICS_NB];
    metrics_put(o, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, label, sep, cum);
    metrics_put(o, "%s_sum%s%s%s %.6f\n", name, *label ? "{" : "", label, *label ? "}" : "", h->sum);
    metrics_put(o, "%s_count%s%s%s %llu\n", name, *label ? "{" : "", label, *label ? "}" : "", h->count);
}

/* What only metrics_t knows: build, start, and the executions by mode and status. */
static void metrics_put_own(metrics_out_t *o, const metrics_t *mt, metrics_format_t f)
{
    metrics_meta(o, f, "ocpm_build_info", "gauge", "Build information; the value is always 1.");
    metrics_put(o, "ocpm_build_info{version=\"%s\"} 1\n", OCPM_VERSION);
    metrics_meta(o, f, "ocpm_start_time_seconds", "gauge", "When the manager started, in unix seconds.");
    metrics_put(o, "ocpm_start_time_seconds %.3f\n", mt->started_at);
    metrics_meta(o, f, "ocpm_executions_total", "counter", "Finished executions by mode and final status.");
    for (size_t m = 0; m < METRICS_NMODES; m++)
        for (int s = 0; s < EXEC_NSTATUS; s++)
            if (exec_status_final((exec_status_t)s))
                metrics_put(o, "ocpm_executions_total{mode=\"%s\",status=\"%s\"} %llu\n", metrics_modes[m],
                            exec_status_name((exec_status_t)s), mt->executions[m][s]);
    metrics_meta(o, f, "ocpm_execution_duration_seconds", "histogram", "Run time of finished executions.");
    for (size_t m = 0; m < METRICS_NMODES; m++) {
        char label[32];
        snprintf(label, sizeof label, "mode=\"%s\"", metrics_modes[m]);
        metrics_hist_put(o, "ocpm_execution_duration_seconds", label, &mt->duration[m]);
    }
    metrics_meta(o, f, "ocpm_queue_wait_seconds", "histogram", "Time executions waited before they started.");
    metrics_hist_put(o, "ocpm_queue_wait_seconds", "", &mt->queue_wait);
    metrics_meta(o, f, "ocpm_tool_calls_total", "counter", "The agent's tool calls by tool and final status.");
    static const char *const st[] = {"completed", "error"};
    for (size_t i = 0; i <= METRICS_TOOLS_MAX; i++) {
        if (i < METRICS_TOOLS_MAX && i >= mt->ntools)
            continue;
        for (size_t k = 0; k < 2; k++)
            if (i < METRICS_TOOLS_MAX || mt->tool_calls[i][k]) {
                char tool[sizeof mt->tools[0] * 2];
                metrics_escape(i < METRICS_TOOLS_MAX ? mt->tools[i] : "other", tool, sizeof tool);
                metrics_put(o, "ocpm_tool_calls_total{tool=\"%s\",status=\"%s\"} %llu\n", tool, st[k],
                            mt->tool_calls[i][k]);
            }
    }
}

char *metrics_render(const metrics_t *mt, const metric_t *table, size_t n, const void *ctx, metrics_format_t f)
{
    metrics_out_t o = {0};
    metrics_put_own(&o, mt, f);
    for (size_t i = 0; i < n; i++) {
        const metric_t *t = &table[i];
        metrics_meta(&o, f, t->name, t->type == METRIC_COUNTER ? "counter" : "gauge", t->help);
        if (!t->count)
            metrics_put(&o, "%s %.17g\n", t->name, t->read(ctx));
        for (int k = 0, nk = t->count ? t->count(ctx) : 0; k < nk; k++) {
            char labels[256];
            t->labels(ctx, k, labels, sizeof labels);
            metrics_put(&o, "%s{%s} %.17g\n", t->name, labels, t->read_at(ctx, k));
        }
    }
    if (f == METRICS_OPENMETRICS)
        metrics_put(&o, "# EOF\n");
    if (o.oom) {
        free(o.buf);
        return NULL;
    }
    return o.buf;
}

/* The q of one media range's parameters ("; q=0.5"): 1 when absent, -1 when not a number in [0, 1]. */
static double metrics_q(const char *params, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (params[i] != ';')
            continue;
        size_t k = i + 1;
        while (k < len && (params[k] == ' ' || params[k] == '\t'))
            k++;
        if (k + 1 < len && tolower((unsigned char)params[k]) == 'q' && params[k + 1] == '=') {
            char num[16];
            size_t m = strcspn(params + k + 2, ";, \t");
            if (m == 0 || m >= sizeof num || k + 2 + m > len)
                return -1;
            memcpy(num, params + k + 2, m);
            num[m] = '\0';
            char *end;
            double q = strtod(num, &end);
            return *end || q < 0 || q > 1 ? -1 : q;
        }
    }
    return 1;
}

metrics_format_t metrics_negotiate(const char *accept)
{
    /* Media ranges and the format each one asks for. */
    static const struct {
        const char *range;
        metrics_format_t format;
    } ranges[] = {
        {"application/openmetrics-text", METRICS_OPENMETRICS},
        {"text/plain", METRICS_PROMETHEUS},
        {"text/*", METRICS_PROMETHEUS},
        {"*/*", METRICS_PROMETHEUS},
    };
    double best[2] = {0, 0};
    for (const char *p = accept; p && *p;) {
        size_t len = strcspn(p, ",");
        const char *r = p + strspn(p, " \t");
        size_t rlen = strcspn(r, "; \t,");
        double q = metrics_q(r + rlen, len - (size_t)(r - p) - rlen);
        for (size_t i = 0; i < sizeof ranges / sizeof ranges[0]; i++)
            if (rlen == strlen(ranges[i].range) && strncasecmp(r, ranges[i].range, rlen) == 0 &&
                q > best[ranges[i].format])
                best[ranges[i].format] = q;
        p += len + (p[len] == ',');
    }
    return best[METRICS_OPENMETRICS] > 0 && best[METRICS_OPENMETRICS] >= best[METRICS_PROMETHEUS] ? METRICS_OPENMETRICS
                                                                                                 : METRICS_PROMETHEUS;
}
