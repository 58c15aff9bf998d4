/* slowlog: turns that run long, PHP-FPM's request_slowlog_timeout.
 *
 * A turn still running slowlog_timeout after it started is reported once, by the first sweep that
 * sees it past the threshold: one WARN line ("slow turn") and one row of slow_turns (db.h), both
 * saying what it is doing then: its step or its running tool with the tool's input (bounded, and
 * with store_prompts = no only its size and SHA-256), the time since its last event, its prompts
 * still waiting for an answer. The turn itself is not touched: its record is written as ever.
 *
 * One timer for the whole manager, made only when some pool sets slowlog_timeout: with none set
 * nothing runs and nothing costs anything per message. It sweeps every SLOWLOG_TICK_MAX_MS, or a
 * quarter of the shortest timeout when that is shorter (not below SLOWLOG_TICK_MIN_MS): a report
 * comes at most one tick after the threshold. The sweep itself (which executions, what each is
 * doing) is the caller's: slowlog only keeps time and writes the reports. */
#ifndef OCPM_SLOWLOG_H
#define OCPM_SLOWLOG_H

#include <uv.h>

#include "db.h"
#include "storage_retry.h"

#define SLOWLOG_TICK_MAX_MS 1000
#define SLOWLOG_TICK_MIN_MS 50
/* A tool's input in the log line and the row is cut here (its size and digest say the rest). */
#define SLOWLOG_INPUT_MAX 256
/* Pending prompts named in a row (the count is in the log line). */
#define SLOWLOG_PROMPTS_MAX 8

typedef struct slowlog slowlog_t;
/* Look at every running turn now (clock_now()); report those past their pool's timeout. */
typedef void (*slowlog_sweep_fn)(void *ctx, double now);

/* The sweep's period for the shortest timeout set (0: none set: no sweep). */
long slowlog_tick_ms(long shortest_timeout_ms);
/* A sweep every tick_ms; tick_ms 0 makes an object that never sweeps. NULL: out of memory. */
slowlog_t *slowlog_new(uv_loop_t *loop, long tick_ms, slowlog_sweep_fn sweep, void *ctx);
/* Close its timer; it frees itself once the timer is closed. */
void slowlog_free(slowlog_t *l);
/* A reload changed slowlog_timeout: the sweep follows (0 stops it). */
void slowlog_set_tick(slowlog_t *l, long tick_ms);

/* input cut to SLOWLOG_INPUT_MAX bytes on a character's boundary ("..." marks a cut) into out
 * (at least SLOWLOG_INPUT_MAX + 4 bytes). Returns out, or NULL for a NULL input. */
char *slowlog_summary(const char *input, char *out, size_t outlen);
/* Report one slow turn: the log line, then the row (a row the database refuses is logged as an
 * error and noted in storage, whose status shows it; the log line holds what it said). */
int slowlog_report(db_t *db, storage_retry_t *storage, const db_slow_t *row, int npending, const char *first_prompt);

#endif
