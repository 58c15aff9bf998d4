#define _GNU_SOURCE
#include "valid.h"

#include <string.h>

bool valid_id(const char *s)
{
    size_t n = 0;
    for (; s[n]; n++) {
        char c = s[n];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
              c == '-'))
            return false;
        if (n >= VALID_ID_MAX)
            return false;
    }
    return n > 0;
}

bool valid_node(const char *s)
{
    size_t n = strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789-");
    return n > 0 && n <= VALID_NODE_MAX && !s[n] && s[0] != '-' && s[n - 1] != '-';
}

bool valid_id_node(const char *id, char node[VALID_NODE_MAX + 1])
{
    if (strncmp(id, "s_", 2) != 0)
        return false;
    const char *end = strchr(id + 2, '_');
    size_t n = end ? (size_t)(end - (id + 2)) : 0;
    if (!end || n == 0 || n > VALID_NODE_MAX || !end[1])
        return false;
    char name[VALID_NODE_MAX + 1];
    memcpy(name, id + 2, n);
    name[n] = 0;
    if (!valid_node(name))
        return false;
    if (node)
        memcpy(node, name, n + 1);
    return true;
}

bool valid_utf8(const char *str, size_t len)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    while (i < len) {
        unsigned char c = s[i];
        if (c == 0)
            return false;
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t n;
        unsigned cp;
        if (c >= 0xc2 && c <= 0xdf) {
            n = 1;
            cp = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            n = 2;
            cp = c & 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            n = 3;
            cp = c & 0x07;
        } else {
            return false;
        }
        for (size_t k = 1; k <= n; k++) {
            if (i + k >= len || (s[i + k] & 0xc0) != 0x80)
                return false;
            cp = cp << 6 | (s[i + k] & 0x3f);
        }
        if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || cp > 0x10ffff ||
            (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        i += n + 1;
    }
    return true;
}

static bool valid_segment_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-' || c == '.';
}

bool valid_workspace(const char *s, const char **why)
{
    size_t n = strlen(s);
    if (n == 0 || n > VALID_WORKSPACE_MAX) {
        *why = n ? "workspace name too long" : "workspace must not be empty";
        return false;
    }
    if (s[0] == '/') {
        *why = "workspace must be a relative name (not a server path)";
        return false;
    }
    const char *p = s;
    /* Walk segments. */
    while (*p) {
        const char *e = strchr(p, '/');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len == 0) {
            *why = "workspace has an empty path segment";
            return false;
        }
        if ((len == 1 && p[0] == '.') || (len == 2 && p[0] == '.' && p[1] == '.')) {
            *why = "workspace must not contain . or .. segments";
            return false;
        }
        for (size_t i = 0; i < len; i++)
            if (!valid_segment_char(p[i])) {
                *why = "workspace segments may hold only A-Z a-z 0-9 . _ -";
                return false;
            }
        if (!e)
            break;
        p = e + 1;
        if (!*p) {
            *why = "workspace has an empty path segment";
            return false;
        }
    }
    return true;
}

bool valid_model(const char *s)
{
    size_t n = 0;
    bool slash = false;
    for (; s[n]; n++) {
        char c = s[n];
        if (c == '/')
            slash = true;
        if (!(valid_segment_char(c) || c == '/' || c == ':' || c == '@' || c == '+'))
            return false;
        if (n >= 128)
            return false;
    }
    return n > 2 && slash && s[0] != '/' && s[0] != '-';
}

bool valid_token(const char *s, size_t max)
{
    size_t n = strlen(s);
    if (n == 0 || n > max || !valid_utf8(s, n))
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return false;
    return true;
}

long long valid_tokens(long long v) { return v < 0 ? 0 : v > VALID_TOKENS_MAX ? VALID_TOKENS_MAX : v; }

double valid_cost(double v)
{
    if (v > VALID_COST_MAX)
        return VALID_COST_MAX;
    return v >= 0 ? v : 0; /* NaN too */
}
