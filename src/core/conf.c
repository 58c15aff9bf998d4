#define _GNU_SOURCE
#include "conf.h"
#include "conf_internal.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "log.h"

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
    for (size_t i = 0; i < conf_nkeys; i++)
        if (strcmp(conf_keys[i].name, key) == 0)
            return &conf_keys[i];
    return NULL;
}

static int conf_apply(conf_t *c, const conf_key_t *k, const char *v, const char **why)
{
    return conf_types[k->type].parse(k, (char *)c + k->offset, v, why);
}

void conf_defaults(conf_t *c)
{
    memset(c, 0, sizeof *c);
    for (size_t i = 0; i < conf_nkeys; i++) {
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
    for (size_t i = 0; i < conf_nkeys; i++) {
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
    if (c->servers == 0) { /* auto */
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        c->servers = cores < 1 ? 1 : cores > CONF_SERVERS_MAX ? CONF_SERVERS_MAX : cores;
    }
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
    for (size_t i = 0; i < conf_nkeys && o < size; i++) {
        const conf_key_t *k = &conf_keys[i];
        char v[PATH_MAX + 64];
        conf_types[k->type].format(k, (const char *)c + k->offset, v, sizeof v);
        int n = snprintf(buf + o, size - o, "%s = %s\n", k->name, v);
        if (n < 0)
            break;
        o += (size_t)n;
    }
}
