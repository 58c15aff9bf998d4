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
#include "valid.h"

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

int conf_is_pool_key(const char *key)
{
    for (size_t i = 0; i < conf_npool_keys; i++)
        if (strcmp(conf_pool_keys[i], key) == 0)
            return 1;
    return 0;
}

/* A section's name: [A-Za-z0-9_-], 1 to CONF_POOL_NAME_MAX bytes. */
static int conf_pool_name_ok(const char *n)
{
    size_t len = strlen(n);
    return len > 0 && len <= CONF_POOL_NAME_MAX &&
           strspn(n, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") == len;
}

/* "[NAME]": start section NAME. */
static int conf_section_start(conf_t *c, char *s, char *err, size_t errlen)
{
    size_t n = strlen(s);
    if (s[n - 1] != ']')
        return snprintf(err, errlen, "expected [NAME]: %.200s", s), -1;
    s[n - 1] = '\0';
    char *name = conf_trim(s + 1);
    if (!conf_pool_name_ok(name))
        return snprintf(err, errlen, "a pool's name is 1 to %d of A-Z a-z 0-9 _ -: %.200s", CONF_POOL_NAME_MAX, name),
               -1;
    for (int i = 0; i < c->nsections; i++)
        if (strcmp(c->sections[i].name, name) == 0)
            return snprintf(err, errlen, "pool %s is defined twice", name), -1;
    if (c->nsections == CONF_POOLS_MAX)
        return snprintf(err, errlen, "more than %d pools", CONF_POOLS_MAX), -1;
    conf_section_t *sec = &c->sections[c->nsections++];
    memset(sec, 0, sizeof *sec);
    snprintf(sec->name, sizeof sec->name, "%s", name);
    return 0;
}

/* One `key = value` of the file: applied (globally), or kept for its pool (conf_pool applies it). */
static int conf_file_line(conf_t *c, int lineno, const char *key, const char *val, char *err, size_t errlen)
{
    if (c->nsections == 0) {
        if (strcmp(key, "users") == 0 || strcmp(key, "user") == 0 || strcmp(key, "group") == 0)
            return snprintf(err, errlen, "%s belongs in a pool section ([NAME])", key), -1;
        return conf_set(c, key, val, err, errlen);
    }
    if (!conf_is_pool_key(key))
        return snprintf(err, errlen, "%s cannot be set per pool (only before the first [section])", key), -1;
    conf_section_t *sec = &c->sections[c->nsections - 1];
    size_t used = strlen(sec->text);
    int w = snprintf(sec->text + used, sizeof sec->text - used, "%d\t%s\t%s\n", lineno, key, val);
    if (w < 0 || (size_t)w >= sizeof sec->text - used || strchr(val, '\t'))
        return snprintf(err, errlen, "pool %s: too many settings (or a tab in a value)", sec->name), -1;
    return 0;
}

int conf_load_file(conf_t *c, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "re");
    if (!f) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    snprintf(c->file, sizeof c->file, "%s", path);
    char line[2048], why[512];
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
        if (*s == '[') {
            if (conf_section_start(c, s, why, sizeof why) != 0) {
                snprintf(err, errlen, "%s:%d: %s", path, lineno, why);
                rc = -1;
                break;
            }
            continue;
        }
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
        if (conf_file_line(c, lineno, key, val, why, sizeof why) != 0) {
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
        if (!v || strcmp(conf_keys[i].name, "users") == 0) /* a pool section's alone */
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

int conf_node_name_from(const char *host, char *out, size_t outlen)
{
    char label[256];
    snprintf(label, sizeof label, "%s", host && *host ? host : "node");
    label[strcspn(label, ".")] = '\0';
    if (valid_node(label)) {
        snprintf(out, outlen, "%s", label);
        return 0;
    }
    char name[VALID_NODE_MAX + 1];
    size_t n = 0;
    for (const char *h = label; *h && n < VALID_NODE_MAX; h++) {
        char ch = (char)tolower((unsigned char)*h);
        name[n++] = (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ? ch : '-';
    }
    while (n > 0 && name[n - 1] == '-')
        n--;
    name[n] = '\0';
    size_t lead = strspn(name, "-");
    snprintf(out, outlen, "%s", name[lead] ? name + lead : "node");
    return 1;
}

/* node_name left empty: the host's (conf_node_name_from), and the derived flag says when it had to
 * be made one, for ocpmd's warning. */
static void conf_node_from_host(conf_t *c)
{
    char host[256] = "";
    if (gethostname(host, sizeof host - 1) != 0)
        host[0] = '\0';
    c->derived |= CONF_DERIVED_NODE_HOST;
    if (conf_node_name_from(host, c->node_name, sizeof c->node_name))
        c->derived |= CONF_DERIVED_NODE_MADE;
}

/* servers = auto: the number of online cores; node_name = the host's. */
static void conf_resolve_auto(conf_t *c)
{
    if (c->servers == 0) {
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        c->servers = cores < 1 ? 1 : cores > CONF_SERVERS_MAX ? CONF_SERVERS_MAX : cores;
    }
    if (!c->node_name[0])
        conf_node_from_host(c);
}

/* One setting of a section's text at *p: its line, key and value (pointers into buf). 0 at the end. */
static int conf_section_next(const char **p, char *buf, size_t len, int *line, char **key, char **val)
{
    const char *nl = strchr(*p, '\n');
    if (!**p || !nl || (size_t)(nl - *p) >= len)
        return 0;
    memcpy(buf, *p, (size_t)(nl - *p));
    buf[nl - *p] = '\0';
    *p = nl + 1;
    char *t1 = strchr(buf, '\t'), *t2 = t1 ? strchr(t1 + 1, '\t') : NULL;
    if (!t2)
        return 0;
    *t1 = *t2 = '\0';
    *line = atoi(buf);
    *key = t1 + 1;
    *val = t2 + 1;
    return 1;
}

/* Does section j's users list name u? */
static int conf_section_names(const conf_section_t *sec, const char *u)
{
    const char *p = sec->text;
    char buf[CONF_SECTION_TEXT + 1], *key, *val;
    int line;
    while (conf_section_next(&p, buf, sizeof buf, &line, &key, &val)) {
        char *save = NULL;
        for (char *w = strtok_r(val, " ", &save); strcmp(key, "users") == 0 && w; w = strtok_r(NULL, " ", &save))
            if (strcmp(w, u) == 0)
                return 1;
    }
    return 0;
}

/* A user named by two pools, or a default_pool that is none of them, is an error. */
static int conf_check_pools(const conf_t *c, char *err, size_t errlen)
{
    if (c->nsections == 0) {
        if (c->default_pool[0] && strcmp(c->default_pool, "default") != 0)
            return snprintf(err, errlen, "default_pool %s: the file defines no pools", c->default_pool), -1;
        return 0;
    }
    int found = !c->default_pool[0];
    for (int i = 0; i < c->nsections; i++) {
        found |= strcmp(c->sections[i].name, c->default_pool) == 0;
        const char *p = c->sections[i].text;
        char buf[CONF_SECTION_TEXT + 1], *key, *val;
        int line;
        while (conf_section_next(&p, buf, sizeof buf, &line, &key, &val)) {
            char *save = NULL;
            for (char *u = strtok_r(val, " ", &save); strcmp(key, "users") == 0 && u; u = strtok_r(NULL, " ", &save))
                for (int j = 0; j < i; j++)
                    if (conf_section_names(&c->sections[j], u))
                        return snprintf(err, errlen, "%s:%d: user %s is in pools %s and %s", c->file, line, u,
                                        c->sections[j].name, c->sections[i].name),
                               -1;
        }
    }
    if (!found)
        return snprintf(err, errlen, "default_pool %s is not one of the file's pools", c->default_pool), -1;
    return 0;
}

int conf_npools(const conf_t *c) { return c->nsections ? c->nsections : 1; }

/* A pool's own directory under state_dir, for a path the global settings derived. */
static int conf_pool_path(char *dst, size_t size, const conf_t *c, const char *name, const char *leaf, unsigned bit,
                          char *err, size_t errlen)
{
    if (!(c->derived & bit))
        return snprintf(err, errlen, "pool %s: set %s in its section (the global one is explicit, and pools never "
                                     "share one)", name, leaf), -1;
    /* A section named default keeps the paths the single pool had (its sessions stay where they were). */
    int w = strcmp(name, "default") == 0 ? snprintf(dst, size, "%s/%s", c->state_dir, leaf)
                                          : snprintf(dst, size, "%s/pools/%s/%s", c->state_dir, name, leaf);
    if (w < 0 || (size_t)w >= size)
        return snprintf(err, errlen, "pool %s: state_dir too long to derive %s", name, leaf), -1;
    return 0;
}

int conf_pool(const conf_t *c, int i, conf_t *out, char *err, size_t errlen)
{
    *out = *c;
    out->nsections = 0;
    if (c->nsections == 0) {
        snprintf(out->pool_name, sizeof out->pool_name, "default");
        return 0;
    }
    const conf_section_t *sec = &c->sections[i];
    snprintf(out->pool_name, sizeof out->pool_name, "%s", sec->name);
    out->pool_users[0] = out->workspace_root[0] = out->agent_home[0] = '\0';
    out->derived &= ~(CONF_DERIVED_WORKSPACE_ROOT | CONF_DERIVED_AGENT_HOME);
    const char *p = sec->text;
    char buf[CONF_SECTION_TEXT + 1], *key, *val, why[512];
    int line;
    while (conf_section_next(&p, buf, sizeof buf, &line, &key, &val)) {
        for (size_t a = 0; a < 2; a++)
            if (strcmp(key, conf_pool_aliases[a][0]) == 0)
                key = (char *)conf_pool_aliases[a][1];
        if (conf_set(out, key, val, why, sizeof why) != 0)
            return snprintf(err, errlen, "%s:%d: pool %s: %s", c->file, line, sec->name, why), -1;
    }
    if (!out->workspace_root[0]) {
        if (conf_pool_path(out->workspace_root, sizeof out->workspace_root, c, sec->name, "workspaces",
                           CONF_DERIVED_WORKSPACE_ROOT, err, errlen) != 0)
            return -1;
        out->derived |= CONF_DERIVED_WORKSPACE_ROOT;
    }
    if (!out->agent_home[0]) {
        if (conf_pool_path(out->agent_home, sizeof out->agent_home, c, sec->name, "agent", CONF_DERIVED_AGENT_HOME, err,
                           errlen) != 0)
            return -1;
        out->derived |= CONF_DERIVED_AGENT_HOME;
    }
    conf_resolve_auto(out);
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
    conf_resolve_auto(c);
    if (conf_check_pools(c, err, errlen) != 0)
        return -1;
    if (c->user_queue_max_bytes > c->queue_max_bytes) {
        snprintf(err, errlen, "invalid value %ld for user_queue_max_bytes: larger than queue_max_bytes (%ld)",
                 c->user_queue_max_bytes, c->queue_max_bytes);
        return -1;
    }
    /* sockaddr_un holds 108 bytes with the NUL; the FastCGI socket is made as fcgi_socket.new
     * first (manager_listen.c), 4 bytes more. */
    if (strlen(c->fcgi_socket) >= 104) {
        snprintf(err, errlen, "fcgi_socket path too long (max 103 bytes): %s", c->fcgi_socket);
        return -1;
    }
    if (strlen(c->control_socket) >= 108) {
        snprintf(err, errlen, "control_socket path too long (max 107 bytes): %s", c->control_socket);
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
