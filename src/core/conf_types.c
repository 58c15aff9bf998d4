/* The settings' types: for each, how a value is read and how it is written back (`ocpmd -T`). */
#define _GNU_SOURCE
#include "conf_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "log.h"
#include "valid.h"

static const char *const conf_modes[] = {"auto", "per-session", "server"};
#define CONF_NMODES (sizeof conf_modes / sizeof conf_modes[0])

const char *conf_mode_name(int mode) { return mode >= 0 && mode < (int)CONF_NMODES ? conf_modes[mode] : "?"; }

static int conf_parse_text(const conf_key_t *k, void *field, const char *v, const char **why)
{
    if (strlen(v) >= k->size)
        return *why = "too long", -1;
    if (k->type == CT_PATH && strchr(v, '\n'))
        return *why = "contains a newline", -1;
    memcpy(field, v, strlen(v) + 1);
    return 0;
}

/* permission_policy: what ocpm does when the agent asks for a permission. */
static int conf_parse_policy(const conf_key_t *k, void *field, const char *v, const char **why)
{
    static const char *const policies[] = {"ask", "allow", "reject"};
    for (size_t i = 0; i < sizeof policies / sizeof policies[0]; i++)
        if (strcmp(v, policies[i]) == 0)
            return snprintf(field, k->size, "%s", v), 0;
    return *why = "expected ask, allow or reject", -1;
}

/* An http:// or https:// URL without white space or control characters ("" for none). */
static int conf_parse_url(const conf_key_t *k, void *field, const char *v, const char **why)
{
    if (strlen(v) >= k->size)
        return *why = "too long", -1;
    for (const char *c = v; *c; c++)
        if ((unsigned char)*c <= 0x20 || (unsigned char)*c == 0x7f)
            return *why = "contains white space or a control character", -1;
    if (*v && strncmp(v, "http://", 7) != 0 && strncmp(v, "https://", 8) != 0)
        return *why = "expected an http:// or https:// URL", -1;
    memcpy(field, v, strlen(v) + 1);
    return 0;
}

/* A user or group name: [A-Za-z0-9_.-], not starting with '-'. */
static int conf_parse_name(const conf_key_t *k, void *field, const char *v, const char **why)
{
    static const char ok[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-";
    if (strlen(v) >= k->size || v[0] == '-' || strspn(v, ok) != strlen(v))
        return *why = "expected a user or group name", -1;
    memcpy(field, v, strlen(v) + 1);
    return 0;
}

static int conf_parse_node(const conf_key_t *k, void *field, const char *v, const char **why)
{
    if (!valid_node(v))
        return *why = "expected a node name: [a-z0-9-], 1 to 32, not starting or ending with -", -1;
    snprintf(field, k->size, "%s", v);
    return 0;
}

static int conf_parse_level(const conf_key_t *k, void *field, const char *v, const char **why)
{
    log_level_t l;
    if (log_level_parse(v, &l) != 0)
        return *why = "expected debug, info, warn or error", -1;
    snprintf(field, k->size, "%s", log_level_name(l));
    return 0;
}

static int conf_parse_mode(const conf_key_t *k, void *field, const char *v, const char **why)
{
    (void)k;
    for (size_t i = 0; i < CONF_NMODES; i++)
        if (strcmp(v, conf_modes[i]) == 0)
            return *(int *)field = (int)i, 0;
    return *why = "expected auto, per-session or server", -1;
}

static int conf_parse_bool(const conf_key_t *k, void *field, const char *v, const char **why)
{
    static const char *const yes[] = {"yes", "on", "true", "1"}, *const no[] = {"no", "off", "false", "0"};
    (void)k;
    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(v, yes[i]) == 0)
            return *(int *)field = 1, 0;
        if (strcasecmp(v, no[i]) == 0)
            return *(int *)field = 0, 0;
    }
    return *why = "expected yes or no", -1;
}

/* A number in its bounds. */
static int conf_store_long(const conf_key_t *k, void *field, long n, const char **why)
{
    if (n < k->min || n > k->max)
        return *why = "out of range", -1;
    *(long *)field = n;
    return 0;
}

static int conf_parse_int(const conf_key_t *k, void *field, const char *v, const char **why)
{
    long n;
    if (conf_parse_size(v, &n) != 0 || strpbrk(v, "kKmMgGbB"))
        return *why = "expected a whole number", -1;
    return conf_store_long(k, field, n, why);
}

/* A count, or auto: stored as 0, which conf_finish makes the number of online cores. */
static int conf_parse_count(const conf_key_t *k, void *field, const char *v, const char **why)
{
    if (strcmp(v, "auto") == 0)
        return *(long *)field = 0, 0;
    if (conf_parse_int(k, field, v, why) != 0)
        return *why = "expected a whole number or auto", -1;
    return 0;
}

static int conf_parse_octal(const conf_key_t *k, void *field, const char *v, const char **why)
{
    char *end;
    errno = 0;
    long n = strtol(v, &end, 8);
    if (errno || end == v || *end)
        return *why = "expected an octal mode such as 0660", -1;
    return conf_store_long(k, field, n, why);
}

static int conf_parse_duration(const conf_key_t *k, void *field, const char *v, const char **why)
{
    long n;
    if (conf_parse_duration_ms(v, &n) != 0)
        return *why = "expected a duration such as 500ms, 30s, 5m, 1h or 30d", -1;
    return conf_store_long(k, field, n, why);
}

static int conf_parse_sized(const conf_key_t *k, void *field, const char *v, const char **why)
{
    long n;
    if (conf_parse_size(v, &n) != 0)
        return *why = "expected a size such as 512, 64k or 1m", -1;
    return conf_store_long(k, field, n, why);
}

/* "50%" or "0.5" */
static int conf_parse_percent(const conf_key_t *k, void *field, const char *v, const char **why)
{
    char *end;
    errno = 0;
    double d = strtod(v, &end);
    if (errno || end == v || !(d >= 0) || (*end == '%' ? end[1] != '\0' : (*end != '\0' || d > 1)))
        return *why = "expected a share such as 50% or 0.5", -1;
    return conf_store_long(k, field, *end == '%' ? (long)(d + 0.5) : (long)(d * 100 + 0.5), why);
}

static int conf_format_text(const conf_key_t *k, const void *f, char *o, size_t n)
{
    (void)k;
    return snprintf(o, n, "%s", (const char *)f);
}
static int conf_format_long(const conf_key_t *k, const void *f, char *o, size_t n)
{
    (void)k;
    return snprintf(o, n, "%ld", *(const long *)f);
}
static int conf_format_ms(const conf_key_t *k, const void *f, char *o, size_t n)
{
    (void)k;
    return snprintf(o, n, "%ldms", *(const long *)f);
}
static int conf_format_octal(const conf_key_t *k, const void *f, char *o, size_t n)
{
    (void)k;
    return snprintf(o, n, "%04lo", (unsigned long)*(const long *)f);
}
static int conf_format_percent(const conf_key_t *k, const void *f, char *o, size_t n)
{
    (void)k;
    return snprintf(o, n, "%ld%%", *(const long *)f);
}
static int conf_format_mode(const conf_key_t *k, const void *f, char *o, size_t n)
{
    (void)k;
    return snprintf(o, n, "%s", conf_mode_name(*(const int *)f));
}
static int conf_format_bool(const conf_key_t *k, const void *f, char *o, size_t n)
{
    (void)k;
    return snprintf(o, n, "%s", *(const int *)f ? "yes" : "no");
}

/* An amount of the provider's currency, as opencode reports cost: decimal, at most 6 places, kept
 * in millionths (a long). */
static int conf_parse_money(const conf_key_t *k, void *field, const char *v, const char **why)
{
    size_t whole = strspn(v, "0123456789");
    const char *frac = v + whole;
    size_t places = 0;
    if (*frac == '.') {
        places = strspn(frac + 1, "0123456789");
        if (places == 0 || places > 6 || frac[1 + places])
            return *why = "expected an amount such as 5 or 0.25 (at most 6 decimal places)", -1;
    } else if (*frac) {
        return *why = "expected an amount such as 5 or 0.25 (at most 6 decimal places)", -1;
    }
    if (whole == 0 || whole > 9)
        return *why = "expected an amount such as 5 or 0.25, below 1000000000", -1;
    long micro = strtol(v, NULL, 10) * 1000000L;
    for (size_t i = 0, scale = 100000; i < 6; i++, scale /= 10)
        if (i < places)
            micro += (long)(frac[1 + i] - '0') * (long)scale;
    if (micro < k->min || micro > k->max)
        return *why = "out of range", -1;
    *(long *)field = micro;
    return 0;
}

static int conf_format_money(const conf_key_t *k, const void *f, char *o, size_t n)
{
    (void)k;
    long m = *(const long *)f;
    int w = snprintf(o, n, "%ld.%06ld", m / 1000000L, m % 1000000L);
    while (w > 0 && (size_t)w < n && o[w - 1] == '0')
        o[--w] = '\0';
    if (w > 0 && (size_t)w < n && o[w - 1] == '.')
        o[--w] = '\0';
    return w;
}

/* A secret is never written back (`ocpmd -T` output is shown and pasted around). */
static int conf_format_secret(const conf_key_t *k, const void *f, char *o, size_t n)
{
    (void)k;
    return snprintf(o, n, "%s", *(const char *)f ? "(set; not shown)" : "");
}

const conf_type_ops_t conf_types[CT_NTYPES] = {
    [CT_PATH] = {"path", conf_parse_text, conf_format_text},
    [CT_STRING] = {"text", conf_parse_text, conf_format_text},
    [CT_NAME] = {"name", conf_parse_name, conf_format_text},
    [CT_NODE] = {"node", conf_parse_node, conf_format_text},
    [CT_LEVEL] = {"level", conf_parse_level, conf_format_text},
    [CT_MODE] = {"mode", conf_parse_mode, conf_format_mode},
    [CT_BOOL] = {"yes/no", conf_parse_bool, conf_format_bool},
    [CT_INT] = {"number", conf_parse_int, conf_format_long},
    [CT_OCTAL] = {"octal", conf_parse_octal, conf_format_octal},
    [CT_DURATION] = {"duration", conf_parse_duration, conf_format_ms},
    [CT_SIZE] = {"size", conf_parse_sized, conf_format_long},
    [CT_PERCENT] = {"share", conf_parse_percent, conf_format_percent},
    [CT_POLICY] = {"policy", conf_parse_policy, conf_format_text},
    [CT_URL] = {"url", conf_parse_url, conf_format_text},
    [CT_SECRET] = {"secret", conf_parse_text, conf_format_secret},
    [CT_MONEY] = {"amount", conf_parse_money, conf_format_money},
    [CT_COUNT] = {"number or auto", conf_parse_count, conf_format_long},
};
