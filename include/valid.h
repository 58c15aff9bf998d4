/* valid: the syntax checks every input goes through before it is trusted. */
#ifndef OCPM_VALID_H
#define OCPM_VALID_H

#include <stdbool.h>
#include <stddef.h>

#define VALID_ID_MAX 64
#define VALID_WORKSPACE_MAX 255

/* [A-Za-z0-9_-]{1,64} */
bool valid_id(const char *s);
/* A node's name (node_name): [a-z0-9-]{1,32}, not starting or ending with '-'. A host name's first
 * label, lowercased, usually is one; it holds no '_', which is what makes the node form below
 * unambiguous. */
#define VALID_NODE_MAX 32
bool valid_node(const char *s);
/* The node form of a session id, s_<node>_<rest> (rest non-empty): true, with the node copied to
 * node (when not NULL), if id has it. The ids ocpm generates have it (rest: 24 hex digits), so the
 * id alone names the node that owns the session (docs/cluster.md). id is a valid_id already. */
bool valid_id_node(const char *id, char node[VALID_NODE_MAX + 1]);
/* Well-formed UTF-8 (no overlongs, surrogates or code points past U+10FFFF)
 * with no NUL byte anywhere in the len bytes. */
bool valid_utf8(const char *s, size_t len);
/* A workspace name: relative segments of [A-Za-z0-9._-] joined by '/', no
 * empty, "." or ".." segment. Never a path of the server's (workspace.h places names per owner).
 * On failure *why says why. */
bool valid_workspace(const char *s, const char **why);
/* provider/model: [A-Za-z0-9._:/@+-]{1,128} with one '/' at least. */
bool valid_model(const char *s);
/* Printable text with no control bytes, at most max bytes. */
bool valid_token(const char *s, size_t max);

/* What opencode says a turn used, which the agent can forge: a count of tokens within
 * [0, VALID_TOKENS_MAX], a cost finite within [0, VALID_COST_MAX] (NaN and infinities become 0 and
 * the bound). The statistics' triggers apply the same bounds (db_schema.c). */
#define VALID_TOKENS_MAX 1000000000000LL
#define VALID_COST_MAX 1e9
long long valid_tokens(long long v);
double valid_cost(double v);

#endif
