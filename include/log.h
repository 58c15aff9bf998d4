/* log: one line per event, key=value (logfmt), with a level.
 *
 * Every line is `ts=... level=... pid=... msg="..." k=v ...` written with a
 * single write(2), so lines from several processes sharing one pipe or file do
 * not interleave (lines are capped below PIPE_BUF). Safe from any thread. */
#ifndef OCPM_LOG_H
#define OCPM_LOG_H

#include <stddef.h>

typedef enum { LOGL_DEBUG = 0, LOGL_INFO, LOGL_WARN, LOGL_ERROR } log_level_t;

/* Open `path` for appending (NULL or "" or "-" means stderr). Returns 0 or -errno. */
int log_open(const char *path);
/* Reopen the same path (SIGHUP, after logrotate moved the file). */
int log_reopen(void);
void log_close(void);
void log_set_level(log_level_t level);
/* Name of this process in every line ("manager", "responder"). */
void log_set_component(const char *name);
int log_level_parse(const char *s, log_level_t *out);
const char *log_level_name(log_level_t level);

/* `kv` is a printf format for the key=value tail (may be NULL). Values that
 * come from outside must go through log_quote(). */
void log_emit(log_level_t level, const char *msg, const char *kv, ...)
    __attribute__((format(printf, 3, 4)));
/* Write an already formatted line (from a child's pipe) as it is. */
void log_raw(const char *line, size_t len);

/* Quote `s` for a logfmt value into buf: always "..." with \" \\ \n escaped
 * and control bytes dropped; truncated to fit. Returns buf. */
const char *log_quote(char *buf, size_t size, const char *s);
/* The same into one of LOG_Q_SLOTS thread-local buffers (each LOG_Q_MAX bytes), used in turn: for
 * the values of one log call (at most LOG_Q_SLOTS of them). Every value that comes from outside
 * (a client, opencode, git, SQLite, the file system) goes through it: log_info("x", "error=%s",
 * log_q(err)). NULL becomes "". */
#define LOG_Q_SLOTS 8
#define LOG_Q_MAX 1024
const char *log_q(const char *s);

#define log_debug(msg, ...) log_emit(LOGL_DEBUG, msg, __VA_ARGS__)
#define log_info(msg, ...) log_emit(LOGL_INFO, msg, __VA_ARGS__)
#define log_warn(msg, ...) log_emit(LOGL_WARN, msg, __VA_ARGS__)
#define log_error(msg, ...) log_emit(LOGL_ERROR, msg, __VA_ARGS__)

#endif
