#define _GNU_SOURCE
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

/* A line must fit one atomic pipe write. */
#define LOG_LINE_MAX 4000

static int log_out = STDERR_FILENO;
static char log_path[PATH_MAX];
static log_level_t log_min = LOGL_INFO;
static const char *log_component = "manager";

static const char *const log_names[] = {"debug", "info", "warn", "error"};

int log_open(const char *path)
{
    if (!path || !*path || strcmp(path, "-") == 0) {
        log_path[0] = '\0';
        log_out = STDERR_FILENO;
        return 0;
    }
    if (strlen(path) >= sizeof log_path)
        return -ENAMETOOLONG;
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    if (fd < 0)
        return -errno;
    if (log_out != STDERR_FILENO)
        close(log_out);
    log_out = fd;
    snprintf(log_path, sizeof log_path, "%s", path);
    return 0;
}

int log_reopen(void)
{
    if (!log_path[0])
        return 0;
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s", log_path);
    return log_open(path);
}

void log_close(void)
{
    if (log_out != STDERR_FILENO)
        close(log_out);
    log_out = STDERR_FILENO;
    log_path[0] = '\0';
}

void log_set_level(log_level_t level) { log_min = level; }
void log_set_component(const char *name) { log_component = name; }

const char *log_level_name(log_level_t level)
{
    return (unsigned)level < 4 ? log_names[level] : "info";
}

int log_level_parse(const char *s, log_level_t *out)
{
    for (unsigned i = 0; i < 4; i++)
        if (strcasecmp(s, log_names[i]) == 0) {
            *out = (log_level_t)i;
            return 0;
        }
    return -1;
}

const char *log_quote(char *buf, size_t size, const char *s)
{
    size_t o = 0;
    if (size < 3) {
        if (size)
            buf[0] = '\0';
        return buf;
    }
    buf[o++] = '"';
    for (; s && *s && o + 3 < size; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            buf[o++] = '\\';
            buf[o++] = (char)c;
        } else if (c == '\n') {
            buf[o++] = '\\';
            buf[o++] = 'n';
        } else if (c >= 0x20 && c != 0x7f) {
            buf[o++] = (char)c;
        }
    }
    buf[o++] = '"';
    buf[o] = '\0';
    return buf;
}

const char *log_q(const char *s)
{
    static __thread char ring[LOG_Q_SLOTS][LOG_Q_MAX];
    static __thread unsigned next;
    char *buf = ring[next++ % LOG_Q_SLOTS];
    return log_quote(buf, LOG_Q_MAX, s ? s : "");
}

static void log_write_all(const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(log_out, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return; /* nowhere left to report a failing log */
        }
        p += w;
        n -= (size_t)w;
    }
}

void log_emit(log_level_t level, const char *msg, const char *kv, ...)
{
    if (level < log_min)
        return;
    char line[LOG_LINE_MAX + 2];
    struct timeval tv;
    struct tm tm;
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    char qmsg[512];
    int n = snprintf(line, LOG_LINE_MAX,
                     "ts=%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ level=%s component=%s pid=%ld msg=%s",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                     tm.tm_sec, (long)(tv.tv_usec / 1000), log_level_name(level), log_component,
                     (long)getpid(), log_quote(qmsg, sizeof qmsg, msg));
    if (n < 0)
        return;
    if (n > LOG_LINE_MAX)
        n = LOG_LINE_MAX;
    if (kv && *kv && n < LOG_LINE_MAX - 1) {
        line[n++] = ' ';
        va_list ap;
        va_start(ap, kv);
        int m = vsnprintf(line + n, (size_t)(LOG_LINE_MAX - n), kv, ap);
        va_end(ap);
        if (m > 0)
            n += m < LOG_LINE_MAX - n ? m : LOG_LINE_MAX - n - 1;
    }
    line[n++] = '\n';
    log_write_all(line, (size_t)n);
}

void log_raw(const char *line, size_t len)
{
    if (len > LOG_LINE_MAX)
        len = LOG_LINE_MAX;
    char buf[LOG_LINE_MAX + 1];
    memcpy(buf, line, len);
    if (len == 0 || buf[len - 1] != '\n')
        buf[len++] = '\n';
    log_write_all(buf, len);
}
