/* conf: the manager's settings.
 *
 * One table of keys (conf.c) gives each key its type, default and check.
 * Sources, later wins: built-in defaults, the optional `key = value` file,
 * then OCPM_<KEY> environment variables. Paths left empty are derived from
 * state_dir after loading. conf_t is a plain record read everywhere, so its
 * fields are public; only a reload writes it again, in the manager's loop,
 * and only the keys that can change live (conf_apply_live). */
#ifndef OCPM_CONF_H
#define OCPM_CONF_H

#include <limits.h>
#include <stddef.h>
#include <stdio.h>

typedef enum { MODE_AUTO = 0, MODE_PER_SESSION, MODE_SERVER } conf_mode_t;

/* Pools (PHP-FPM's [www]): a section `[NAME]` of the file holds the settings of one pool, on top of
 * the global ones (conf_pool builds its conf_t). Only the keys of conf_pool_keys may appear there. */
#define CONF_POOLS_MAX 16
#define CONF_POOL_NAME_MAX 32
#define CONF_SECTION_TEXT 4096
typedef struct conf_section {
    char name[CONF_POOL_NAME_MAX + 1];
    char text[CONF_SECTION_TEXT]; /* its lines, as "LINE\tkey\tvalue\n" */
} conf_section_t;

typedef struct conf {
    char state_dir[PATH_MAX];
    char db_path[PATH_MAX];
    char workspace_root[PATH_MAX];
    char opencode_bin[PATH_MAX];
    char fcgi_socket[PATH_MAX];
    char control_socket[PATH_MAX];
    char log_file[PATH_MAX];
    char pass_env[1024];
    char log_level[16];
    /* the agent (every opencode process): who it runs as, where its files live, its sandbox */
    char agent_user[64];   /* "" = automatic (see conf.c), "self" = ocpmd's own user */
    char agent_group[64];  /* "" = the agent user's primary group */
    char agent_home[PATH_MAX];
    char agent_read_paths[1024];
    char agent_write_paths[1024];
    int agent_sandbox;
    char fcgi_socket_group[64];
    char responder_user[64]; /* "" = automatic (CONF_RESPONDER_USER_DEFAULT or self), "self" = ocpmd's */
    int mode;
    long responders;
    long responder_threads;
    long max_concurrent_runs;
    long session_queue_limit;
    long run_timeout_ms;
    long kill_grace_ms;
    long shutdown_timeout_ms;
    long max_body_bytes;
    long max_message_bytes;
    long stored_text_limit;
    long stderr_tail_bytes;
    long sse_heartbeat_ms;
    long fcgi_socket_mode;
    long retry_after_s;
    int store_prompts;
    long db_busy_timeout_ms;
    long history_retention_ms;
    long slowlog_timeout_ms; /* a turn running longer is logged once (0: off) */
    char node_name[33];    /* valid_node(); conf_finish derives it from the host name when empty */
    int require_node_ids;  /* client-chosen session ids must name this node (a cluster) */
    /* server mode */
    long server_start_timeout_ms;
    long heartbeat_interval_ms;
    long health_timeout_ms;
    long health_failures;
    long restart_backoff_max_ms;
    long server_restart_limit;     /* restarts within the window before FATAL (0: no limit) */
    long server_restart_window_ms;
    int fallback;
    long fallback_wait_ms;
    long fallback_max_runs;
    long instance_idle_timeout_ms;
    long server_max_messages;
    long server_max_rss;
    long server_max_inflight;
    long servers; /* opencode serve processes (auto resolved to the core count by conf_finish) */
    long run_rlimit_as, run_rlimit_nofile, run_rlimit_cpu_s, run_rlimit_nproc, run_rlimit_fsize;
    /* bounds per user and overall */
    long queue_max_bytes;
    long user_queue_max_bytes;
    long user_max_share;      /* percent of the run slots and of the pool's message capacity */
    long user_max_running;    /* messages of one owner running at once (0: user_max_share alone) */
    long user_queue_limit;    /* messages of one owner waiting (0: no count bound) */
    long user_daily_tokens;   /* tokens (in + out) one owner may use per UTC day (0: no bound) */
    long user_daily_cost_micro, user_turn_cost_max_micro; /* cost, in millionths (0: no bound) */
    long user_max_sessions;
    long user_max_workspaces;
    char git_bin[PATH_MAX];
    /* the agent's side of a turn */
    char permission_policy[8]; /* ask, allow, reject */
    long permission_timeout_ms, question_timeout_ms;
    long events_max, events_max_bytes, tool_input_max_bytes;
    char webhook_url[1024];
    char webhook_secret[256];
    long webhook_attempts, webhook_timeout_ms;
    /* pools */
    char pool_name[CONF_POOL_NAME_MAX + 1]; /* the pool this conf is ("default" when the file has none) */
    char pool_users[1024];   /* the REMOTE_USER names mapped to this pool */
    char default_pool[CONF_POOL_NAME_MAX + 1]; /* the pool of every user no pool names ("": refused) */
    char env_file[PATH_MAX]; /* KEY=VALUE lines for this pool's agents (its provider keys) */
    int nsections;
    conf_section_t sections[CONF_POOLS_MAX];
    char file[PATH_MAX];     /* the file the sections came from (for messages) */
    /* Which of the paths conf_finish derived from state_dir (CONF_DERIVED_*): those, and only
     * those, may be moved where the agent can reach them (agent.h). */
    unsigned derived;
} conf_t;

/* The most opencode servers one manager supervises (servers). */
#define CONF_SERVERS_MAX 16

#define CONF_DERIVED_WORKSPACE_ROOT 1u
#define CONF_DERIVED_AGENT_HOME 2u
/* A node name (valid_node) from a host name: its first label, lowercased, with every other character
 * made '-', cut to 32, edge '-' dropped ("node" if nothing is left). The same host name always gives
 * the same name. 0 when the label was a valid name as it was, 1 when it had to be made one. */
int conf_node_name_from(const char *host, char *out, size_t outlen);
/* node_name came from a host name that is not a valid node name, made into one (ocpmd warns). */
#define CONF_DERIVED_NODE_MADE 4u
/* node_name was not set: it is the host name's (two hosts app.dc1 and app.dc2 would share one). */
#define CONF_DERIVED_NODE_HOST 8u

/* What agent_user resolves to when it is left empty: the dedicated system user scripts/setup
 * creates (used when ocpmd can switch users), else ocpmd's own user with a warning. */
#define CONF_AGENT_USER_DEFAULT "ocpm-agent"
/* What responder_user resolves to when it is left empty and ocpmd can switch users. */
#define CONF_RESPONDER_USER_DEFAULT "ocpm"

/* Fill defaults. */
void conf_defaults(conf_t *c);
/* Apply one key. On error returns -1 and writes why into err. */
int conf_set(conf_t *c, const char *key, const char *value, char *err, size_t errlen);
/* Read a `key = value` file ('#' comments). Errors name file:line. */
int conf_load_file(conf_t *c, const char *path, char *err, size_t errlen);
/* Apply OCPM_<KEY> variables from the environment. */
int conf_load_env(conf_t *c, char *err, size_t errlen);
/* Derive empty paths from state_dir and check cross-key rules. */
int conf_finish(conf_t *c, char *err, size_t errlen);
/* How many pools c defines: its sections, or 1 (the global settings, pool "default") without. */
int conf_npools(const conf_t *c);
/* Pool i's settings (c finished): c with section i on top, its paths derived under
 * state_dir/pools/NAME when c's were derived (an explicit global workspace_root or agent_home must
 * be set in each section: pools never share one). Returns 0 or -1 with err naming file:line. */
int conf_pool(const conf_t *c, int i, conf_t *out, char *err, size_t errlen);
/* Is key one a pool section may set? */
int conf_is_pool_key(const char *key);
/* Write every key with its effective value, one `key = value` a line. */
void conf_dump(const conf_t *c, char *buf, size_t size);
/* The settings documented from their table: "md" (docs/configuration.md's table), "man" (the
 * SETTINGS of ocpmd.conf(5)) or "example" (ocpmd.conf.example, whole). Returns 0, or -1 for an
 * unknown format. */
int conf_doc_write(FILE *f, const char *format);
const char *conf_mode_name(int mode);

/* Reload (SIGHUP, ocpmctl reload): the file is read again into a fresh conf_t, checked whole, and
 * compared with the running one. Is key one that can change while ocpmd runs? The others are
 * named as needing a restart. */
int conf_key_live(const char *key);
/* Call fn for every key whose value differs between was and now (with pool_keys_only, only the
 * keys a pool section may set), with both values as ocpmd -T shows them (secrets hidden). Returns
 * how many differ (fn may be NULL). */
typedef void (*conf_diff_fn)(void *ctx, const char *key, const char *was, const char *now, int live);
int conf_diff(const conf_t *was, const conf_t *now, int pool_keys_only, conf_diff_fn fn, void *ctx);
/* Copy the value of every live key from src into dst (the running settings: every module reads
 * them where it uses them, so the new values apply from the next use on). */
void conf_apply_live(conf_t *dst, const conf_t *src);

/* Parsers shared with other modules: "30s", "500ms", "5m", "1h" and
 * "64k", "1m", "1g". Return 0 or -1. */
int conf_parse_duration_ms(const char *s, long *out);
int conf_parse_size(const char *s, long *out);

#endif
