#define _GNU_SOURCE
#include "conf.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "log.h"

#ifndef OCPM_DEFAULT_STATE_DIR
#define OCPM_DEFAULT_STATE_DIR "/var/lib/ocpm"
#endif

typedef enum {
    CT_PATH, CT_STRING, CT_INT, CT_DURATION, CT_SIZE, CT_BOOL, CT_MODE, CT_OCTAL, CT_LEVEL, CT_NAME, CT_PERCENT
} conf_type_t;

typedef struct conf_key {
    const char *name;
    conf_type_t type;
    size_t offset;
    size_t size; /* for strings: capacity */
    const char *def;
    long min, max; /* for numbers */
} conf_key_t;

#define S(f) offsetof(conf_t, f), sizeof(((conf_t *)0)->f)
#define N(f) offsetof(conf_t, f), 0

/* The table of every key: name, type, field, default, bounds.
 * An empty path default means "derived from state_dir" (conf_finish). */
static const conf_key_t conf_keys[] = {
    {"state_dir", CT_PATH, S(state_dir), OCPM_DEFAULT_STATE_DIR, 0, 0},
    {"db_path", CT_PATH, S(db_path), "", 0, 0},
    {"workspace_root", CT_PATH, S(workspace_root), "", 0, 0},
    {"opencode_bin", CT_PATH, S(opencode_bin), "opencode", 0, 0},
    /* git, which makes each workspace its own repository (and so its own opencode project). */
    {"git_bin", CT_PATH, S(git_bin), "git", 0, 0},
    {"fcgi_socket", CT_PATH, S(fcgi_socket), "", 0, 0},
    {"fcgi_socket_mode", CT_OCTAL, N(fcgi_socket_mode), "0660", 0, 0777},
    /* The FastCGI socket's group (nginx's worker user belongs to it; the agent never does).
     * Empty: ocpmd's own primary group. */
    {"fcgi_socket_group", CT_NAME, S(fcgi_socket_group), "", 0, 0},
    {"control_socket", CT_PATH, S(control_socket), "", 0, 0},
    {"mode", CT_MODE, N(mode), "auto", 0, 0},
    {"responders", CT_INT, N(responders), "4", 1, 256},
    {"responder_threads", CT_INT, N(responder_threads), "16", 1, 1024},
    {"max_concurrent_runs", CT_INT, N(max_concurrent_runs), "8", 1, 4096},
    {"session_queue_limit", CT_INT, N(session_queue_limit), "16", 1, 100000},
    {"run_timeout", CT_DURATION, N(run_timeout_ms), "10m", 100, 86400000L},
    {"kill_grace", CT_DURATION, N(kill_grace_ms), "5s", 0, 600000},
    {"shutdown_timeout", CT_DURATION, N(shutdown_timeout_ms), "30s", 0, 3600000},
    {"max_body_bytes", CT_SIZE, N(max_body_bytes), "1m", 64, 64L << 20},
    {"max_message_bytes", CT_SIZE, N(max_message_bytes), "256k", 1, 32L << 20},
    /* Bounded so that one history row, JSON-escaped (up to 6 bytes a byte), fits a reply frame. */
    {"stored_text_limit", CT_SIZE, N(stored_text_limit), "64k", 0, 1L << 20},
    {"stderr_tail_bytes", CT_SIZE, N(stderr_tail_bytes), "4k", 0, 64L << 10},
    {"sse_heartbeat", CT_DURATION, N(sse_heartbeat_ms), "10s", 100, 15000},
    {"retry_after", CT_INT, N(retry_after_s), "2", 1, 3600},
    {"pass_env", CT_STRING, S(pass_env),
     "PATH LANG LC_* TZ OPENCODE_* *_API_KEY NODE_EXTRA_CA_CERTS", 0, 0},
    /* How long a database write waits for another connection's lock; the event loop waits
     * with it. Final records that still fail are kept and retried (storage_retry). */
    {"db_busy_timeout", CT_DURATION, N(db_busy_timeout_ms), "250ms", 0, 60000},
    {"store_prompts", CT_BOOL, N(store_prompts), "yes", 0, 0},
    /* Executions (and manager events) older than this are pruned; 0 keeps everything. */
    {"history_retention", CT_DURATION, N(history_retention_ms), "0", 0, 100L * 365 * 86400000L},
    /* Server mode: one supervised `opencode serve`. */
    {"server_start_timeout", CT_DURATION, N(server_start_timeout_ms), "30s", 100, 600000},
    {"heartbeat_interval", CT_DURATION, N(heartbeat_interval_ms), "10s", 50, 3600000},
    {"health_timeout", CT_DURATION, N(health_timeout_ms), "5s", 50, 600000},
    {"health_failures", CT_INT, N(health_failures), "3", 1, 100},
    {"restart_backoff_max", CT_DURATION, N(restart_backoff_max_ms), "30s", 100, 3600000},
    {"fallback", CT_BOOL, N(fallback), "on", 0, 0},
    /* Per-message processes at once while the server is down: each costs what the server did
     * (measured: 32 queued sessions falling back 8 at a time reached 11.7 GB on this machine). */
    {"fallback_max_runs", CT_INT, N(fallback_max_runs), "2", 1, 4096},
    {"fallback_wait", CT_DURATION, N(fallback_wait_ms), "30s", 0, 3600000},
    {"instance_idle_timeout", CT_DURATION, N(instance_idle_timeout_ms), "10m", 100, 86400000L},
    {"server_max_messages", CT_INT, N(server_max_messages), "10000", 0, 1000000000L},
    {"server_max_rss", CT_SIZE, N(server_max_rss), "2g", 0, 1L << 40},
    /* Prompts in flight on the server at once; more wait in their queues (a saturated server
     * answers its health checks late and gets restarted, failing everything in flight). */
    {"server_max_inflight", CT_INT, N(server_max_inflight), "8", 1, 4096},
    /* Limits for every opencode process (runs and the server); 0 leaves them as inherited.
     * Address space stays unlimited by default: opencode's runtime reserves many GB it never uses. */
    {"run_rlimit_as", CT_SIZE, N(run_rlimit_as), "0", 0, 1L << 50},
    {"run_rlimit_nofile", CT_INT, N(run_rlimit_nofile), "0", 0, 1048576},
    {"run_rlimit_cpu", CT_DURATION, N(run_rlimit_cpu_s), "0", 0, 100L * 86400000L},
    /* Processes (and threads) of the agent's user at once: a fork bomb stops here. Counted over every
     * process of that user, so it bounds all agents together. */
    {"run_rlimit_nproc", CT_INT, N(run_rlimit_nproc), "4096", 0, 1048576},
    /* The largest file an agent process may write (0: inherited); disk quotas bound the sum. */
    {"run_rlimit_fsize", CT_SIZE, N(run_rlimit_fsize), "0", 0, 1L << 50},
    /* The agent: every opencode process runs as agent_user (empty: "ocpm-agent" when ocpmd may
     * switch users, ocpmd's own user otherwise; "self": ocpmd's own user, on purpose). */
    {"agent_user", CT_NAME, S(agent_user), "", 0, 0},
    {"agent_group", CT_NAME, S(agent_group), "", 0, 0},
    /* The agent's own files (opencode's data, caches, its read-only configuration); derived when empty. */
    {"agent_home", CT_PATH, S(agent_home), "", 0, 0},
    /* Landlock: the agent writes only its workspace and its data, reads only the system. */
    {"agent_sandbox", CT_BOOL, N(agent_sandbox), "on", 0, 0},
    /* More directories the agent may read (and execute from), space separated. */
    {"agent_read_paths", CT_STRING, S(agent_read_paths), "", 0, 0},
    /* More files or directories the agent may write, space separated: every user's agent shares
     * them, so they are a channel between users. */
    {"agent_write_paths", CT_STRING, S(agent_write_paths), "", 0, 0},
    /* Bounds: bytes of messages waiting in memory, overall and per user (over them: 429). */
    {"queue_max_bytes", CT_SIZE, N(queue_max_bytes), "16m", 1024, 1L << 40},
    {"user_queue_max_bytes", CT_SIZE, N(user_queue_max_bytes), "4m", 1024, 1L << 40},
    /* The most any one user may hold of the run slots and of the pool's message capacity. */
    {"user_max_share", CT_PERCENT, N(user_max_share), "50%", 1, 100},
    /* Sessions (not deleted) one user may have. */
    {"user_max_sessions", CT_INT, N(user_max_sessions), "1000", 1, 100000000L},
    /* Workspace directories one user may have made (a deleted session's stays, with its files). */
    {"user_max_workspaces", CT_INT, N(user_max_workspaces), "1000", 1, 100000000L},
    {"log_level", CT_LEVEL, S(log_level), "info", 0, 0},
    {"log_file", CT_PATH, S(log_file), "", 0, 0},
};

#define NKEYS (sizeof conf_keys / sizeof conf_keys[0])

static const char *const conf_modes[] = {"auto", "per-session", "server"};

const char *conf_mode_name(int mode)
{
    return mode >= 0 && mode < 3 ? conf_modes[mode] : "?";
}

static int conf_parse_scaled(const char *s, long *out, const char *const *units, const long *scale,
                             size_t nunits)
{
    errno = 0;
    char *end;
    if (!*s || isspace((unsigned char)*s) || *s == '-')
        return -1;
    long v = strtol(s, &end, 10);
    if (errno || end == s)
        return -1;
    for (size_t i = 0; i < nunits; i++)
        if (strcasecmp(end, units[i]) == 0) {
            if (v > LONG_MAX / scale[i])
                return -1;
            *out = v * scale[i];
            return 0;
        }
    return -1;
}

int conf_parse_duration_ms(const char *s, long *out)
{
    static const char *const u[] = {"ms", "s", "", "m", "h", "d"};
    static const long k[] = {1, 1000, 1000, 60000, 3600000, 86400000L};
    return conf_parse_scaled(s, out, u, k, 6);
}

int conf_parse_size(const char *s, long *out)
{
    static const char *const u[] = {"", "b", "k", "kb", "m", "mb", "g", "gb"};
    static const long k[] = {1, 1, 1L << 10, 1L << 10, 1L << 20, 1L << 20, 1L << 30, 1L << 30};
    return conf_parse_scaled(s, out, u, k, 8);
}

static const conf_key_t *conf_find(const char *key)
{
    for (size_t i = 0; i < NKEYS; i++)
        if (strcmp(conf_keys[i].name, key) == 0)
            return &conf_keys[i];
    return NULL;
}

static int conf_apply(conf_t *c, const conf_key_t *k, const char *v, const char **why)
{
    char *base = (char *)c + k->offset;
    long n = 0;
    switch (k->type) {
    case CT_PATH:
    case CT_STRING:
        if (strlen(v) >= k->size) {
            *why = "too long";
            return -1;
        }
        if (k->type == CT_PATH && strchr(v, '\n')) {
            *why = "contains a newline";
            return -1;
        }
        memcpy(base, v, strlen(v) + 1);
        return 0;
    case CT_NAME:
        /* A user or group name: [A-Za-z0-9_.-], not starting with '-'. */
        if (strlen(v) >= k->size || v[0] == '-' || strspn(v, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-") != strlen(v)) {
            *why = "expected a user or group name";
            return -1;
        }
        memcpy(base, v, strlen(v) + 1);
        return 0;
    case CT_PERCENT: {
        /* "50%" or "0.5" */
        char *end;
        errno = 0;
        double d = strtod(v, &end);
        if (errno || end == v || !(d >= 0) || (*end == '%' ? end[1] != '\0' : (*end != '\0' || d > 1))) {
            *why = "expected a share such as 50% or 0.5";
            return -1;
        }
        n = *end == '%' ? (long)(d + 0.5) : (long)(d * 100 + 0.5);
        break;
    }
    case CT_LEVEL: {
        log_level_t l;
        if (log_level_parse(v, &l) != 0) {
            *why = "expected debug, info, warn or error";
            return -1;
        }
        snprintf(base, k->size, "%s", log_level_name(l));
        return 0;
    }
    case CT_MODE:
        for (int i = 0; i < 3; i++)
            if (strcmp(v, conf_modes[i]) == 0) {
                *(int *)base = i;
                return 0;
            }
        *why = "expected auto, per-session or server";
        return -1;
    case CT_BOOL:
        if (!strcasecmp(v, "yes") || !strcasecmp(v, "on") || !strcasecmp(v, "true") || !strcmp(v, "1")) {
            *(int *)base = 1;
            return 0;
        }
        if (!strcasecmp(v, "no") || !strcasecmp(v, "off") || !strcasecmp(v, "false") || !strcmp(v, "0")) {
            *(int *)base = 0;
            return 0;
        }
        *why = "expected yes or no";
        return -1;
    case CT_INT:
        if (conf_parse_size(v, &n) != 0 || strpbrk(v, "kKmMgGbB")) {
            *why = "expected a whole number";
            return -1;
        }
        break;
    case CT_OCTAL: {
        char *end;
        errno = 0;
        n = strtol(v, &end, 8);
        if (errno || end == v || *end) {
            *why = "expected an octal mode such as 0660";
            return -1;
        }
        break;
    }
    case CT_DURATION:
        if (conf_parse_duration_ms(v, &n) != 0) {
            *why = "expected a duration such as 500ms, 30s, 5m, 1h or 30d";
            return -1;
        }
        break;
    case CT_SIZE:
        if (conf_parse_size(v, &n) != 0) {
            *why = "expected a size such as 512, 64k or 1m";
            return -1;
        }
        break;
    }
    if (n < k->min || n > k->max) {
        *why = "out of range";
        return -1;
    }
    *(long *)base = n;
    return 0;
}

void conf_defaults(conf_t *c)
{
    memset(c, 0, sizeof *c);
    for (size_t i = 0; i < NKEYS; i++) {
        const char *why = NULL;
        /* Defaults are constants checked by the unit tests. */
        (void)conf_apply(c, &conf_keys[i], conf_keys[i].def, &why);
    }
}

int conf_set(conf_t *c, const char *key, const char *value, char *err, size_t errlen)
{
    const conf_key_t *k = conf_find(key);
    if (!k) {
        snprintf(err, errlen, "unknown key \"%s\"", key);
        return -1;
    }
    const char *why = "invalid";
    if (conf_apply(c, k, value, &why) != 0) {
        snprintf(err, errlen, "invalid value \"%s\" for %s: %s", value, key, why);
        return -1;
    }
    return 0;
}

static char *conf_trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1]))
        s[--n] = '\0';
    return s;
}

int conf_load_file(conf_t *c, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "re");
    if (!f) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    char line[2048];
    int lineno = 0, rc = 0;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        if (!strchr(line, '\n') && !feof(f)) {
            snprintf(err, errlen, "%s:%d: line too long", path, lineno);
            rc = -1;
            break;
        }
        char *s = conf_trim(line);
        if (!*s || *s == '#')
            continue;
        char *eq = strchr(s, '=');
        if (!eq) {
            snprintf(err, errlen, "%s:%d: expected key = value: %.200s", path, lineno, s);
            rc = -1;
            break;
        }
        *eq = '\0';
        char *key = conf_trim(s), *val = conf_trim(eq + 1);
        size_t vl = strlen(val);
        if (vl >= 2 && val[0] == '"' && val[vl - 1] == '"') {
            val[vl - 1] = '\0';
            val++;
        }
        char why[512];
        if (conf_set(c, key, val, why, sizeof why) != 0) {
            snprintf(err, errlen, "%s:%d: %s", path, lineno, why);
            rc = -1;
            break;
        }
    }
    fclose(f);
    return rc;
}

int conf_load_env(conf_t *c, char *err, size_t errlen)
{
    for (size_t i = 0; i < NKEYS; i++) {
        char name[64] = "OCPM_";
        size_t o = 5;
        for (const char *p = conf_keys[i].name; *p && o + 1 < sizeof name; p++)
            name[o++] = (char)toupper((unsigned char)*p);
        name[o] = '\0';
        const char *v = getenv(name);
        if (!v)
            continue;
        char why[512];
        if (conf_set(c, conf_keys[i].name, v, why, sizeof why) != 0) {
            snprintf(err, errlen, "environment %s: %s", name, why);
            return -1;
        }
    }
    return 0;
}

static int conf_derive(char *dst, size_t size, const char *dir, const char *leaf, char *err, size_t errlen,
                       unsigned *derived, unsigned bit)
{
    if (*dst)
        return 0;
    *derived |= bit;
    if ((size_t)snprintf(dst, size, "%s/%s", dir, leaf) >= size) {
        snprintf(err, errlen, "state_dir too long to derive %s", leaf);
        return -1;
    }
    return 0;
}

int conf_finish(conf_t *c, char *err, size_t errlen)
{
    if (!c->state_dir[0]) {
        snprintf(err, errlen, "invalid value \"\" for state_dir: must not be empty");
        return -1;
    }
    unsigned d = 0;
    if (conf_derive(c->db_path, sizeof c->db_path, c->state_dir, "ocpm.db", err, errlen, &d, 0) ||
        conf_derive(c->workspace_root, sizeof c->workspace_root, c->state_dir, "workspaces", err, errlen, &d,
                    CONF_DERIVED_WORKSPACE_ROOT) ||
        conf_derive(c->fcgi_socket, sizeof c->fcgi_socket, c->state_dir, "fcgi.sock", err, errlen, &d, 0) ||
        conf_derive(c->control_socket, sizeof c->control_socket, c->state_dir, "ocpmd.sock", err, errlen, &d, 0) ||
        conf_derive(c->agent_home, sizeof c->agent_home, c->state_dir, "agent", err, errlen, &d,
                    CONF_DERIVED_AGENT_HOME))
        return -1;
    c->derived |= d;
    if (c->user_queue_max_bytes > c->queue_max_bytes) {
        snprintf(err, errlen, "invalid value %ld for user_queue_max_bytes: larger than queue_max_bytes (%ld)",
                 c->user_queue_max_bytes, c->queue_max_bytes);
        return -1;
    }
    /* sockaddr_un holds 108 bytes with the NUL. */
    if (strlen(c->fcgi_socket) >= 108 || strlen(c->control_socket) >= 108) {
        snprintf(err, errlen, "socket path too long (max 107 bytes): %s",
                 strlen(c->fcgi_socket) >= 108 ? c->fcgi_socket : c->control_socket);
        return -1;
    }
    if (c->max_message_bytes > c->max_body_bytes) {
        snprintf(err, errlen, "invalid value %ld for max_message_bytes: larger than max_body_bytes (%ld)",
                 c->max_message_bytes, c->max_body_bytes);
        return -1;
    }
    return 0;
}

void conf_dump(const conf_t *c, char *buf, size_t size)
{
    size_t o = 0;
    for (size_t i = 0; i < NKEYS && o < size; i++) {
        const conf_key_t *k = &conf_keys[i];
        const char *base = (const char *)c + k->offset;
        int n;
        switch (k->type) {
        case CT_PATH:
        case CT_STRING:
        case CT_LEVEL:
        case CT_NAME:
            n = snprintf(buf + o, size - o, "%s = %s\n", k->name, base);
            break;
        case CT_PERCENT:
            n = snprintf(buf + o, size - o, "%s = %ld%%\n", k->name, *(const long *)base);
            break;
        case CT_MODE:
            n = snprintf(buf + o, size - o, "%s = %s\n", k->name, conf_mode_name(*(const int *)base));
            break;
        case CT_BOOL:
            n = snprintf(buf + o, size - o, "%s = %s\n", k->name, *(const int *)base ? "yes" : "no");
            break;
        case CT_OCTAL:
            n = snprintf(buf + o, size - o, "%s = %04lo\n", k->name, (unsigned long)*(const long *)base);
            break;
        case CT_DURATION:
            n = snprintf(buf + o, size - o, "%s = %ldms\n", k->name, *(const long *)base);
            break;
        default:
            n = snprintf(buf + o, size - o, "%s = %ld\n", k->name, *(const long *)base);
            break;
        }
        if (n < 0)
            break;
        o += (size_t)n;
    }
}
