/* The one table of settings: name, type, field, default, bounds, and what each does. The parser
 * (conf.c), `ocpmd -T`, docs/configuration.md, ocpmd.conf(5) and ocpmd.conf.example all come from
 * it (conf_doc.c); a test compares the committed documents with what it generates. */
#define _GNU_SOURCE
#include "conf_internal.h"

#include <stddef.h>

#ifndef OCPM_DEFAULT_STATE_DIR
#define OCPM_DEFAULT_STATE_DIR "/var/lib/ocpm"
#endif

#define S(f) offsetof(conf_t, f), sizeof(((conf_t *)0)->f)
#define N(f) offsetof(conf_t, f), 0

const conf_key_t conf_keys[] = {
    {"state_dir", CT_PATH, S(state_dir), OCPM_DEFAULT_STATE_DIR, 0, 0, "Paths and sockets", "$(localstatedir)/lib/ocpm",
     "Where the lock file, the database, the sockets and the workspaces live (ocpmd's, mode 0700)."},
    {"db_path", CT_PATH, S(db_path), "", 0, 0, NULL, "state_dir/ocpm.db", "The SQLite database (mode 0600)."},
    {"workspace_root", CT_PATH, S(workspace_root), "", 0, 0, NULL, "state_dir/workspaces",
     "Every workspace lives below it, one tree per user. When the agent's user cannot reach a derived state_dir "
     "(a clone under /root, say), this and agent_home move to $(localstatedir)/lib/ocpm-agent/<hash>."},
    {"fcgi_socket", CT_PATH, S(fcgi_socket), "", 0, 0, NULL, "state_dir/fcgi.sock", "The FastCGI socket nginx connects to."},
    {"fcgi_socket_mode", CT_OCTAL, N(fcgi_socket_mode), "0660", 0, 0777, NULL, NULL,
     "The FastCGI socket's mode: nginx's worker user must be able to connect."},
    {"fcgi_socket_group", CT_NAME, S(fcgi_socket_group), "", 0, 0, NULL, "ocpmd's group",
     "The FastCGI socket's group: nginx's worker user belongs to it, the agent never does."},
    {"control_socket", CT_PATH, S(control_socket), "", 0, 0, NULL, "state_dir/ocpmd.sock",
     "The manager's private socket (mode 0600): responders and ocpmctl talk to the manager through it."},
    {"opencode_bin", CT_PATH, S(opencode_bin), "opencode", 0, 0, "opencode", NULL,
     "The opencode command (looked up in PATH when it has no slash)."},
    {"git_bin", CT_PATH, S(git_bin), "git", 0, 0, NULL, NULL,
     "git, which makes each workspace its own repository, and so its own opencode project."},
    {"mode", CT_MODE, N(mode), "auto", 0, 0, NULL, NULL,
     "auto: one supervised opencode serve when opencode has it, else a process per message; server: the "
     "same, but failing to start the server is fatal; per-session: a process per message, always."},
    {"pass_env", CT_STRING, S(pass_env), "PATH LANG LC_* TZ OPENCODE_* *_API_KEY NODE_EXTRA_CA_CERTS", 0, 0, NULL,
     NULL,
     "The operator's environment opencode gets, as names and patterns; HOME, USER, XDG_*, TMPDIR and "
     "OPENCODE_CONFIG are ocpm's own for the agent."},
    {"responders", CT_INT, N(responders), "4", 1, 256, "Responders and runs", NULL, "FastCGI responder processes."},
    {"responder_user", CT_NAME, S(responder_user), "", 0, 0, NULL, "(automatic)",
     "Who the responders (what parses every request) run as: ocpm when ocpmd runs as root, else ocpmd's own "
     "user (with no capability); self says the latter on purpose. Never root, never an agent's user. The control socket is "
     "given to it; state_dir must let it reach the socket (automatic falls back to ocpmd's user, with a warning)."},
    {"responder_threads", CT_INT, N(responder_threads), "16", 1, 1024, NULL, NULL,
     "Threads per responder: responders x threads requests in flight (4 x 16 = 64)."},
    {"max_concurrent_runs", CT_INT, N(max_concurrent_runs), "8", 1, 4096, NULL, NULL,
     "Messages running at once, all sessions together."},
    {"session_queue_limit", CT_INT, N(session_queue_limit), "16", 1, 100000, NULL, NULL,
     "Messages waiting per session; one more gets 429."},
    {"retry_after", CT_INT, N(retry_after_s), "2", 1, 3600, NULL, NULL, "Seconds, in the Retry-After of 429 and 503."},
    {"run_timeout", CT_DURATION, N(run_timeout_ms), "10m", 100, 86400000L, NULL, NULL,
     "A message running longer is stopped (SIGTERM to its process group, or an abort to the server) and "
     "recorded as timeout."},
    {"kill_grace", CT_DURATION, N(kill_grace_ms), "5s", 0, 600000, NULL, NULL, "From SIGTERM to SIGKILL."},
    {"shutdown_timeout", CT_DURATION, N(shutdown_timeout_ms), "30s", 0, 3600000, NULL, NULL,
     "At SIGTERM or SIGINT, how long running messages may finish before they are killed."},
    {"sse_heartbeat", CT_DURATION, N(sse_heartbeat_ms), "10s", 100, 15000, NULL, NULL,
     "A comment on a quiet event stream this often (at most 15 s), so proxies keep it open."},
    {"max_body_bytes", CT_SIZE, N(max_body_bytes), "1m", 64, 64L << 20, "Requests and bounds", NULL,
     "A larger request body gets 413."},
    {"max_message_bytes", CT_SIZE, N(max_message_bytes), "256k", 1, 32L << 20, NULL, NULL,
     "A larger message text gets 400 (at most max_body_bytes)."},
    {"queue_max_bytes", CT_SIZE, N(queue_max_bytes), "16m", 1024, 1L << 40, NULL, NULL,
     "Bytes of messages waiting in memory, all users together; then 429."},
    {"user_queue_max_bytes", CT_SIZE, N(user_queue_max_bytes), "4m", 1024, 1L << 40, NULL, NULL,
     "The same for one user (at most queue_max_bytes)."},
    {"user_max_share", CT_PERCENT, N(user_max_share), "50%", 1, 100, NULL, NULL,
     "The most one user may hold of the run slots, and of the pool's capacity for clients waiting on messages."},
    {"user_max_running", CT_INT, N(user_max_running), "0", 0, 4096, NULL, NULL,
     "Messages of one user running at once; more wait their turn (0: user_max_share of the slots alone)."},
    {"user_queue_limit", CT_INT, N(user_queue_limit), "256", 0, 1000000, NULL, NULL,
     "Messages of one user waiting to start, all sessions together; one more gets 429 user_limit (0: no "
     "bound but the bytes')."},
    {"user_daily_tokens", CT_INT, N(user_daily_tokens), "0", 0, 1000000000000000L, NULL, NULL,
     "Tokens (in and out, as opencode reports them) one user may use per UTC day; a message past it gets "
     "429 budget_exceeded until midnight UTC (0: no bound)."},
    {"user_daily_cost", CT_MONEY, N(user_daily_cost_micro), "0", 0, 999999999999999L, NULL, NULL,
     "The same bound on cost, in the provider's currency as opencode reports it, such as 5 or 0.25."},
    {"user_turn_cost_max", CT_MONEY, N(user_turn_cost_max_micro), "0", 0, 999999999999999L, NULL, NULL,
     "A turn whose cost passes this is stopped and recorded budget_exceeded (0: no bound)."},
    {"user_max_sessions", CT_INT, N(user_max_sessions), "1000", 1, 100000000L, NULL, NULL,
     "Sessions (not deleted) one user may have."},
    {"user_max_workspaces", CT_INT, N(user_max_workspaces), "1000", 1, 100000000L, NULL, NULL,
     "Workspace directories one user may have made (a deleted session's stays, with its files)."},
    {"default_pool", CT_NAME, S(default_pool), "", 0, 0, "Pools", "(none)",
     "With pool sections ([NAME] in the file, like PHP-FPM's [www]): the pool of every user no pool's `users` "
     "names; empty, such users are refused (403 no_pool)."},
    {"users", CT_STRING, S(pool_users), "", 0, 0, NULL, NULL,
     "In a pool section: the REMOTE_USER names (space-separated, exact) whose sessions live in this pool. A name "
     "may be in one pool only."},
    {"env_file", CT_PATH, S(env_file), "", 0, 0, NULL, NULL,
     "KEY=VALUE lines ('#' comments) added to the environment of the agents (its own provider keys per pool); "
     "read by ocpmd at start, so it may be readable by root alone."},
    {"agent_user", CT_NAME, S(agent_user), "", 0, 0, "The agent", "(automatic)",
     "Who every opencode process runs as: ocpm-agent when ocpmd may switch users (root, or CAP_SETUID and "
     "CAP_SETGID), else ocpmd's own user with a warning; self says the latter on purpose. Never root."},
    {"agent_group", CT_NAME, S(agent_group), "", 0, 0, NULL, "the user's group",
     "The agent's group (never the FastCGI socket's)."},
    {"agent_home", CT_PATH, S(agent_home), "", 0, 0, NULL, "state_dir/agent",
     "The agent's files: opencode's data per user, the server's, the read-only configuration."},
    {"agent_sandbox", CT_BOOL, N(agent_sandbox), "on", 0, 0, NULL, NULL,
     "Landlock: the agent writes only its workspace and its data, and reads only the system (docs/security.md)."},
    {"agent_read_paths", CT_STRING, S(agent_read_paths), "", 0, 0, NULL, "(none)",
     "More directories the agent may read and execute from, space separated."},
    {"agent_write_paths", CT_STRING, S(agent_write_paths), "", 0, 0, NULL, "(none)",
     "More files or directories the agent may write, space separated: every user's agent shares them, so "
     "they are a channel between users."},
    {"run_rlimit_as", CT_SIZE, N(run_rlimit_as), "0", 0, 1L << 50, NULL, NULL,
     "Address space of each opencode process (0: inherited; opencode's runtime reserves many GB it never "
     "uses, so set it generously)."},
    {"run_rlimit_nofile", CT_INT, N(run_rlimit_nofile), "0", 0, 1048576, NULL, NULL,
     "Open files of each opencode process (0: inherited)."},
    {"run_rlimit_cpu", CT_DURATION, N(run_rlimit_cpu_s), "0", 0, 100L * 86400000L, NULL, NULL,
     "CPU time of each opencode process, such as 30m (0: inherited)."},
    {"run_rlimit_nproc", CT_INT, N(run_rlimit_nproc), "4096", 0, 1048576, NULL, NULL,
     "Processes and threads of the agent's user at once, all agents together: a fork bomb stops here "
     "(applied when the agent has a user of its own)."},
    {"run_rlimit_fsize", CT_SIZE, N(run_rlimit_fsize), "0", 0, 1L << 50, NULL, NULL,
     "The largest file an agent process may write (0: inherited); disk quotas bound the sum."},
    {"servers", CT_COUNT, N(servers), "1", 1, CONF_SERVERS_MAX, "Server mode", NULL,
     "How many opencode serve processes: each is one Node process (one core, its own heap and opencode "
     "database), supervised on its own. A session is placed on the least loaded when it first needs one and "
     "stays there (stored in the database). auto: the number of online cores, at most 16."},
    {"server_start_timeout", CT_DURATION, N(server_start_timeout_ms), "30s", 100, 600000, NULL, NULL,
     "How long opencode serve may take to become ready."},
    {"heartbeat_interval", CT_DURATION, N(heartbeat_interval_ms), "10s", 50, 3600000, NULL, NULL,
     "How often the server's health is checked."},
    {"health_timeout", CT_DURATION, N(health_timeout_ms), "5s", 50, 600000, NULL, NULL, "One health check's timeout."},
    {"health_failures", CT_INT, N(health_failures), "3", 1, 100, NULL, NULL,
     "Missed health checks in a row before the server is killed and restarted."},
    {"restart_backoff_max", CT_DURATION, N(restart_backoff_max_ms), "30s", 100, 3600000, NULL, NULL,
     "The longest wait before a restart: the delay doubles from 1 s while the server keeps dying young."},
    {"server_restart_limit", CT_INT, N(server_restart_limit), "5", 0, 1000, NULL, NULL,
     "Failed starts (a server that exits before it answers as ready) allowed within server_restart_window; one "
     "more and the server is FATAL (supervisord's startretries): never restarted again until `ocpmctl server "
     "restart`, its messages fall back or fail per fallback (0: restart for ever). A server that dies after it "
     "was ready (an agent may kill it from a tool call) is restarted with backoff, never made FATAL."},
    {"server_restart_window", CT_DURATION, N(server_restart_window_ms), "60s", 1000, 86400000L, NULL, NULL,
     "The sliding window server_restart_limit counts failed starts in."},
    {"fallback", CT_BOOL, N(fallback), "on", 0, 0, NULL, NULL,
     "While the server is down, run messages as processes of their own."},
    {"fallback_max_runs", CT_INT, N(fallback_max_runs), "2", 1, 4096, NULL, NULL,
     "Processes at once while the server is down: each costs what the server does (32 sessions falling back "
     "8 at a time reached 11.7 GB on the development machine)."},
    {"fallback_wait", CT_DURATION, N(fallback_wait_ms), "30s", 0, 3600000, NULL, NULL,
     "With fallback off, how long a message waits for the server before it fails."},
    {"instance_idle_timeout", CT_DURATION, N(instance_idle_timeout_ms), "10m", 100, 86400000L, NULL, NULL,
     "A workspace idle this long is disposed of in the server."},
    {"server_max_messages", CT_INT, N(server_max_messages), "10000", 0, 1000000000L, NULL, NULL,
     "Recycle the server after this many messages (0: never); no message fails."},
    {"server_max_rss", CT_SIZE, N(server_max_rss), "2g", 0, 1L << 40, NULL, NULL,
     "Recycle the server once its resident memory passes this (0: never)."},
    {"server_max_inflight", CT_INT, N(server_max_inflight), "8", 1, 4096, NULL, NULL,
     "Messages on the server at once; more wait in their queues (a saturated server answers its health "
     "checks late and gets restarted)."},
    {"permission_policy", CT_POLICY, S(permission_policy), "ask", 0, 0, "The agent's prompts, events and webhooks",
     NULL,
     "When the agent asks for a permission: ask relays it to the session's clients and waits for their "
     "reply; allow and reject answer at once (recorded as replied by policy). Per-message mode cannot relay: "
     "opencode run rejects on its own, and allow is passed to it as a permission override."},
    {"permission_timeout", CT_DURATION, N(permission_timeout_ms), "120s", 1000, 86400000L, NULL, NULL,
     "A permission nobody answers in this time is rejected (status timeout) and the turn goes on."},
    {"question_timeout", CT_DURATION, N(question_timeout_ms), "300s", 1000, 86400000L, NULL, NULL,
     "A question nobody answers in this time is rejected (status timeout) and the turn goes on."},
    {"events_max", CT_INT, N(events_max), "5000", 0, 1000000, NULL, NULL,
     "Events kept per execution for a client that reconnects (GET /api/executions/{n}/events); more are "
     "sent live but not kept. The final done is always kept."},
    {"events_max_bytes", CT_SIZE, N(events_max_bytes), "4m", 0, 1L << 30, NULL, NULL,
     "The same bound in bytes of event data per execution."},
    {"tool_input_max_bytes", CT_SIZE, N(tool_input_max_bytes), "16k", 0, 1L << 20, NULL, NULL,
     "A tool call's input is stored up to this size; a larger one (or any with store_prompts = no) only as "
     "its size and SHA-256."},
    {"webhook_url", CT_URL, S(webhook_url), "", 0, 0, NULL, "(none)",
     "Where execution.finished, permission.asked and question.asked are POSTed as JSON (none: no webhooks)."},
    {"webhook_secret", CT_SECRET, S(webhook_secret), "", 0, 0, NULL, "(none)",
     "Signs each delivery: X-Ocpm-Signature: sha256=<hex HMAC-SHA256 of the body with this secret>. Never "
     "shown by ocpmd -T; keep the file that holds it readable by ocpmd alone."},
    {"webhook_attempts", CT_INT, N(webhook_attempts), "5", 1, 100, NULL, NULL,
     "Tries per delivery; the waits between them double from 1 s. Each delivery's outcome is recorded."},
    {"webhook_timeout", CT_DURATION, N(webhook_timeout_ms), "10s", 100, 600000, NULL, NULL,
     "One webhook request's timeout."},
    {"store_prompts", CT_BOOL, N(store_prompts), "yes", 0, 0, "Storage and logs", NULL,
     "Keep prompt and answer text in the database; no keeps only their sizes and SHA-256."},
    {"stored_text_limit", CT_SIZE, N(stored_text_limit), "64k", 0, 1L << 20, NULL, NULL,
     "Stored prompt and answer text is cut here, on a UTF-8 boundary (at most 1m, so one history row fits a "
     "reply)."},
    {"stderr_tail_bytes", CT_SIZE, N(stderr_tail_bytes), "4k", 0, 64L << 10, NULL, NULL,
     "The end of each run's stderr kept with its record (at most 64k)."},
    {"db_busy_timeout", CT_DURATION, N(db_busy_timeout_ms), "250ms", 0, 60000, NULL, NULL,
     "How long a database write waits for another connection's lock (the loop waits with it); then 503 "
     "storage_unavailable, or for a finished message's record, a retry every second."},
    {"history_retention", CT_DURATION, N(history_retention_ms), "0", 0, 100L * 365 * 86400000L, NULL, NULL,
     "Prune executions and manager events older than this, such as 30d (0: keep everything)."},
    {"slowlog_timeout", CT_DURATION, N(slowlog_timeout_ms), "5m", 0, 86400000L, NULL, NULL,
     "A turn still running this long after it started gets one WARN line (slow turn) and a row in slow_turns: "
     "its current step or tool, the tool's input, the time since its last event, its pending prompts "
     "(PHP-FPM's request_slowlog_timeout; 0: off). Checked about every second (a quarter of it when shorter)."},
    {"log_level", CT_LEVEL, S(log_level), "info", 0, 0, NULL, NULL, "debug, info, warn or error."},
    {"log_file", CT_PATH, S(log_file), "", 0, 0, NULL, "(stderr)", "Where the log goes; SIGUSR1 (and SIGHUP) reopen it."},
    {"node_name", CT_NODE, S(node_name), "", 0, 0, "Cluster", "(the host name)",
     "This node's name, [a-z0-9-] (1 to 32, not starting or ending with -). Every session id ocpm generates "
     "carries it (s_<node>_<24 hex digits>), so a front nginx routes a session by its id alone "
     "(docs/cluster.md). The default is the host name's first label, lowercased; one that is not a valid name "
     "is made one (other characters become -, cut to 32) with a warning. Each node of a cluster needs its own."},
    {"require_node_ids", CT_BOOL, N(require_node_ids), "no", 0, 0, NULL, NULL,
     "yes (in a cluster): a session id the client chooses must be in this node's form, s_<node_name>_<rest>; "
     "another node's form answers 421 misdirected_session, an id with no node 400. no: any id is taken, as "
     "on a single host."},
};

const size_t conf_nkeys = sizeof conf_keys / sizeof conf_keys[0];

/* The keys a pool section may set (the rest are the manager's alone), and the names a section
 * may use for two of them (PHP-FPM's). */
const char *const conf_pool_keys[] = {
    "users", "user", "group", "agent_user", "agent_group", "agent_home", "agent_read_paths", "agent_write_paths",
    "workspace_root", "pass_env", "env_file", "servers", "max_concurrent_runs", "session_queue_limit",
    "run_timeout", "permission_policy", "permission_timeout", "question_timeout", "run_rlimit_as",
    "run_rlimit_nofile", "run_rlimit_cpu", "run_rlimit_nproc", "run_rlimit_fsize", "fallback", "fallback_max_runs",
    "fallback_wait", "server_restart_limit", "server_restart_window", "server_max_inflight", "server_max_messages",
    "server_max_rss", "instance_idle_timeout", "user_max_share", "user_max_running", "user_queue_limit",
    "slowlog_timeout",
};
const size_t conf_npool_keys = sizeof conf_pool_keys / sizeof conf_pool_keys[0];
const char *const conf_pool_aliases[][2] = {{"user", "agent_user"}, {"group", "agent_group"}};

/* The keys a reload applies while ocpmd runs: each is read where it is used (a limit, a timeout,
 * a policy), or the manager applies it at once (log_level, history_retention, db_busy_timeout,
 * webhook_url, slowlog_timeout), or the responders get it (they are replaced at every reload). The others (paths,
 * users, the mode, the number of servers and responders, what is fixed when a process starts)
 * need a restart, and a reload says so in the log. */
const char *const conf_live_keys[] = {
    "log_level", "max_concurrent_runs", "session_queue_limit", "retry_after", "run_timeout", "kill_grace",
    "shutdown_timeout", "sse_heartbeat", "max_body_bytes", "max_message_bytes", "queue_max_bytes",
    "user_queue_max_bytes", "user_max_share", "user_max_running", "user_queue_limit", "user_daily_tokens",
    "user_daily_cost", "user_turn_cost_max", "user_max_sessions", "user_max_workspaces", "fcgi_socket_mode",
    "fcgi_socket_group", "run_rlimit_as", "run_rlimit_nofile", "run_rlimit_cpu", "run_rlimit_nproc",
    "run_rlimit_fsize", "health_timeout", "health_failures", "fallback", "fallback_max_runs", "fallback_wait",
    "instance_idle_timeout", "server_max_messages", "server_max_rss", "server_max_inflight", "permission_policy",
    "permission_timeout", "question_timeout", "events_max", "events_max_bytes", "tool_input_max_bytes",
    "webhook_url", "webhook_secret", "webhook_attempts", "webhook_timeout", "db_busy_timeout", "history_retention",
    "slowlog_timeout", "require_node_ids",
};
const size_t conf_nlive_keys = sizeof conf_live_keys / sizeof conf_live_keys[0];
