#define _GNU_SOURCE
#include "db_internal.h"

/* Schema migrations, applied in order; user_version = number applied. Never
 * edit a shipped step: add a new one. */
/* The stats rollups (migration 8): per UTC hour and per UTC day (span 3600 or 86400, at: the
 * period's start), what final executions add up to, kept by triggers so every writer (ocpmd, an
 * operator's sqlite3, retention) keeps them right. The period is the execution's queued_at's (the
 * range /api/stats filters on). R is "new" or "old", SG "" to add it or "-" to take it away. Tool
 * calls are added one row at a time (a GROUP BY would build a sorter for every execution).
 * Histogram buckets: 0 below 0.01 ms, then k covers [0.01 * 1.05^(k-1), 0.01 * 1.05^k) up to
 * DB_HIST_BUCKETS - 1 (db_internal.h; about 36 hours). */
#define DB_AT(R, SPAN) "CAST(" R ".queued_at / " SPAN " AS INTEGER) * " SPAN
#define DB_BUCKET(V) "min(479, CASE WHEN " V " >= 0.01 THEN 1 + CAST(ln(" V " * 100) / 0.04879016416943205 AS INTEGER) ELSE 0 END)"
#define DB_FINAL(R) R ".status NOT IN ('queued', 'running')"
/* The bounds valid.h puts on what the agent reports (tokens, cost), and finite bounds on the rest:
 * a sum that took an infinity in could only give it back as NaN, which SQLite stores as NULL, and
 * the row could then never be updated or deleted. db_stats.c bounds the rows it reads alike. */
#define DB_TOKENS(V) "max(min(coalesce(" V ", 0), 1000000000000), 0)"
#define DB_COST(V) "max(min(coalesce(" V ", 0), 1e9), 0)"
#define DB_FIN(V) "max(min(coalesce(" V ", 0), 1e15), -1e15)"
#define DB_ROLL_SPAN(R, SG, SPAN)                                                                                \
    "INSERT INTO stats_rollup (span, at, pool, mode, status, n, nd, sum_d, nw, sum_w, nr, sum_r, max_r,"         \
    " tokens_in, tokens_out, cost) VALUES (" SPAN ", " DB_AT(R, SPAN) ", " R ".pool, " R ".mode, " R ".status, " \
    SG "1, " SG "(" R ".duration_ms IS NOT NULL), " SG DB_FIN(R ".duration_ms") ", " SG "(" R                \
    ".queue_wait_ms IS NOT NULL), " SG DB_FIN(R ".queue_wait_ms") ", " SG "(" R ".peak_rss_kb IS NOT NULL), "     \
    SG DB_FIN(R ".peak_rss_kb") ", " R ".peak_rss_kb, " SG DB_TOKENS(R ".tokens_in") ", "                        \
    SG DB_TOKENS(R ".tokens_out") ", " SG DB_COST(R ".cost") ")"                                                \
    " ON CONFLICT (span, at, pool, mode, status) DO UPDATE SET n = n + excluded.n, nd = nd + excluded.nd,"       \
    " sum_d = sum_d + excluded.sum_d, nw = nw + excluded.nw, sum_w = sum_w + excluded.sum_w,"                    \
    " nr = nr + excluded.nr, sum_r = sum_r + excluded.sum_r, tokens_in = tokens_in + excluded.tokens_in,"        \
    " tokens_out = tokens_out + excluded.tokens_out, cost = cost + excluded.cost,"                               \
    " max_r = CASE WHEN excluded.n > 0 AND excluded.max_r > coalesce(max_r, -1) THEN excluded.max_r"             \
    " ELSE max_r END;"                                                                                           \
    "INSERT INTO stats_hist (span, at, metric, bucket, n) SELECT " SPAN ", " DB_AT(R, SPAN) ", 0, "              \
    DB_BUCKET(R ".duration_ms") ", " SG "1 WHERE " R ".duration_ms IS NOT NULL"                                  \
    " ON CONFLICT (span, at, metric, bucket) DO UPDATE SET n = n + excluded.n;"                                  \
    "INSERT INTO stats_hist (span, at, metric, bucket, n) SELECT " SPAN ", " DB_AT(R, SPAN) ", 1, "              \
    DB_BUCKET(R ".queue_wait_ms") ", " SG "1 WHERE " R ".queue_wait_ms IS NOT NULL"                              \
    " ON CONFLICT (span, at, metric, bucket) DO UPDATE SET n = n + excluded.n;"                                  \
    "INSERT INTO stats_sessions (span, at, owner, session_id, n, failed, nd, sum_d) VALUES (" SPAN ", "          \
    DB_AT(R, SPAN) ", " R ".owner, " R ".session_id, " SG "1, " SG "(" R ".status IN ('failed', 'timeout',"     \
    " 'interrupted')), " SG "(" R ".duration_ms IS NOT NULL), " SG DB_FIN(R ".duration_ms") ")"               \
    " ON CONFLICT (span, at, owner, session_id) DO UPDATE SET n = n + excluded.n, failed = failed + excluded.failed," \
    " nd = nd + excluded.nd, sum_d = sum_d + excluded.sum_d;"                                                    \
    "INSERT INTO stats_tools (span, at, tool, status, calls) SELECT " SPAN ", " DB_AT(R, SPAN) ", tool, status, " \
    SG "1 FROM tool_calls WHERE execution_id = " R ".id"                                                         \
    " ON CONFLICT (span, at, tool, status) DO UPDATE SET calls = calls + excluded.calls;"
#define DB_ROLL(R, SG) DB_ROLL_SPAN(R, SG, "3600") DB_ROLL_SPAN(R, SG, "86400")
/* After a row is taken away: when it held its periods' peak, the peak is read again from the rows
 * left (EXCEPT: the row itself, still there in a BEFORE DELETE trigger). */
#define DB_REPEAK(EXCEPT)                                                                                        \
    "UPDATE stats_rollup SET max_r = (SELECT max(e.peak_rss_kb) FROM executions e WHERE e.queued_at >= stats_rollup.at" \
    " AND e.queued_at < stats_rollup.at + stats_rollup.span AND e.pool = stats_rollup.pool"                     \
    " AND e.mode = stats_rollup.mode AND e.status = stats_rollup.status" EXCEPT ")"                              \
    " WHERE span IN (3600, 86400) AND at IN (" DB_AT("old", "3600") ", " DB_AT("old", "86400") ")"              \
    " AND pool = old.pool AND mode = old.mode AND status = old.status AND max_r <= old.peak_rss_kb;"
/* After a row is taken away for good: the sums it leaves empty go. */
#define DB_UNROLL_EMPTY                                                                                          \
    "DELETE FROM stats_rollup WHERE span IN (3600, 86400) AND at IN (" DB_AT("old", "3600") ", "                 \
    DB_AT("old", "86400") ") AND pool = old.pool AND mode = old.mode AND status = old.status AND n = 0;"         \
    "DELETE FROM stats_sessions WHERE span IN (3600, 86400) AND at IN (" DB_AT("old", "3600") ", "               \
    DB_AT("old", "86400") ") AND owner = old.owner AND session_id = old.session_id AND n = 0;"                   \
    "DELETE FROM stats_hist WHERE span IN (3600, 86400) AND at IN (" DB_AT("old", "3600") ", "                   \
    DB_AT("old", "86400") ") AND metric IN (0, 1) AND n = 0;"                                                    \
    "DELETE FROM stats_tools WHERE span IN (3600, 86400) AND at IN (" DB_AT("old", "3600") ", "                  \
    DB_AT("old", "86400") ") AND calls = 0;"
/* The rollups of the rows already there, for one span. */
#define DB_ROLL_FILL(SPAN)                                                                                       \
    "INSERT INTO stats_rollup SELECT " SPAN ", " DB_AT("e", SPAN) " AS p, pool, mode, status, count(*),"         \
    " count(duration_ms), total(" DB_FIN("duration_ms") "), count(queue_wait_ms), total(" DB_FIN("queue_wait_ms") \
    "), count(peak_rss_kb), total(" DB_FIN("peak_rss_kb") "), max(peak_rss_kb), total(" DB_TOKENS("tokens_in")   \
    "), total(" DB_TOKENS("tokens_out") "), total(" DB_COST("cost") ") FROM executions e"                         \
    " WHERE " DB_FINAL("e") " GROUP BY p, pool, mode, status;"                                                   \
    "INSERT INTO stats_hist SELECT " SPAN ", " DB_AT("e", SPAN) " AS p, 0, " DB_BUCKET("duration_ms") " AS b,"   \
    " count(*) FROM executions e WHERE " DB_FINAL("e") " AND duration_ms IS NOT NULL GROUP BY p, b;"             \
    "INSERT INTO stats_hist SELECT " SPAN ", " DB_AT("e", SPAN) " AS p, 1, " DB_BUCKET("queue_wait_ms") " AS b," \
    " count(*) FROM executions e WHERE " DB_FINAL("e") " AND queue_wait_ms IS NOT NULL GROUP BY p, b;"           \
    "INSERT INTO stats_sessions SELECT " SPAN ", " DB_AT("e", SPAN) " AS p, owner, session_id, count(*),"        \
    " sum(status IN ('failed', 'timeout', 'interrupted')), count(duration_ms), total(" DB_FIN("duration_ms") ")"  \
    " FROM executions e WHERE " DB_FINAL("e") " GROUP BY p, owner, session_id;"                                  \
    "INSERT INTO stats_tools SELECT " SPAN ", " DB_AT("e", SPAN) " AS p, t.tool, t.status, count(*)"             \
    " FROM tool_calls t JOIN executions e ON e.id = t.execution_id WHERE " DB_FINAL("e")                         \
    " GROUP BY p, t.tool, t.status;"

const char *const db_migrations[] = {
    /* 1: sessions, executions, manager events. Times are unix seconds (REAL). */
    "CREATE TABLE sessions ("
    "  id TEXT PRIMARY KEY,"
    "  owner TEXT NOT NULL,"
    "  workspace TEXT NOT NULL,"
    "  opencode_session_id TEXT,"
    "  created_at REAL NOT NULL,"
    "  last_activity REAL NOT NULL,"
    "  message_count INTEGER NOT NULL DEFAULT 0,"
    "  deleted_at REAL"
    ");"
    "CREATE TABLE executions ("
    "  id INTEGER PRIMARY KEY,"
    "  session_id TEXT NOT NULL REFERENCES sessions(id),"
    "  owner TEXT NOT NULL,"
    "  mode TEXT NOT NULL,"
    "  status TEXT NOT NULL CHECK (status IN ('queued','running','succeeded','failed',"
    "                                        'timeout','aborted','interrupted')),"
    "  argv TEXT,"
    "  pid INTEGER,"
    "  model TEXT,"
    "  agent TEXT,"
    "  queued_at REAL NOT NULL,"
    "  started_at REAL,"
    "  finished_at REAL,"
    "  duration_ms REAL,"
    "  queue_wait_ms REAL,"
    "  exit_code INTEGER,"
    "  signal INTEGER,"
    "  peak_rss_kb INTEGER,"
    "  cpu_user_ms REAL,"
    "  cpu_sys_ms REAL,"
    "  tokens_in INTEGER,"
    "  tokens_out INTEGER,"
    "  cost REAL,"
    "  prompt TEXT,"
    "  prompt_bytes INTEGER,"
    "  prompt_sha256 TEXT,"
    "  answer TEXT,"
    "  answer_bytes INTEGER,"
    "  answer_sha256 TEXT,"
    "  opencode_session_id TEXT,"
    "  stderr_tail TEXT,"
    "  error TEXT"
    ");"
    "CREATE INDEX executions_session ON executions(session_id, id);"
    "CREATE INDEX executions_status ON executions(status, id);"
    "CREATE INDEX executions_queued ON executions(queued_at);"
    "CREATE TABLE manager_events ("
    "  id INTEGER PRIMARY KEY,"
    "  at REAL NOT NULL,"
    "  pid INTEGER NOT NULL,"
    "  kind TEXT NOT NULL,"
    "  detail TEXT"
    ");",
    /* 2: indexes and views for operators' questions. */
    "CREATE INDEX executions_owner ON executions(owner, id);"
    "CREATE INDEX executions_mode ON executions(mode, id);"
    /* Covering (value, time) indexes: a percentile over a long range walks one of them. */
    "CREATE INDEX executions_duration ON executions(duration_ms, queued_at);"
    "CREATE INDEX executions_wait ON executions(queue_wait_ms, queued_at);"
    "CREATE INDEX manager_events_at ON manager_events(at);"
    "CREATE VIEW executions_by_hour AS"
    "  SELECT strftime('%Y-%m-%d %H:00', queued_at, 'unixepoch') AS hour, count(*) AS runs,"
    "         sum(status = 'succeeded') AS succeeded,"
    "         sum(status IN ('failed', 'timeout', 'interrupted')) AS failed,"
    "         sum(status = 'aborted') AS aborted,"
    "         round(avg(duration_ms), 1) AS mean_ms, round(max(duration_ms), 1) AS max_ms,"
    "         sum(tokens_in) AS tokens_in, sum(tokens_out) AS tokens_out"
    "  FROM executions GROUP BY hour;"
    "CREATE VIEW session_summary AS"
    "  SELECT s.id, s.owner, s.workspace, s.opencode_session_id, s.message_count,"
    "         datetime(s.created_at, 'unixepoch') AS created, datetime(s.last_activity, 'unixepoch') AS last_activity,"
    "         s.deleted_at IS NOT NULL AS deleted, count(e.id) AS executions,"
    "         coalesce(sum(e.status = 'succeeded'), 0) AS succeeded,"
    "         coalesce(sum(e.status IN ('failed', 'timeout', 'interrupted')), 0) AS failed,"
    "         round(avg(e.duration_ms), 1) AS mean_ms, sum(e.tokens_in) AS tokens_in,"
    "         sum(e.tokens_out) AS tokens_out, sum(e.cost) AS cost"
    "  FROM sessions s LEFT JOIN executions e ON e.session_id = s.id GROUP BY s.id;"
    "CREATE VIEW failures AS"
    "  SELECT id, session_id, owner, mode, status, datetime(finished_at, 'unixepoch') AS finished, exit_code,"
    "         signal, error FROM executions WHERE status IN ('failed', 'timeout', 'interrupted');",
    /* 3: sessions belong to their owner: ids are chosen per owner (one user's ids tell nothing
     * about another's), so the key is (owner, id) and executions refer to both. The
     * unauthenticated owner becomes '' (it was 'anonymous', a name a real user could have). */
    "CREATE TABLE sessions_v3 ("
    "  id TEXT NOT NULL,"
    "  owner TEXT NOT NULL,"
    "  workspace TEXT NOT NULL,"
    "  opencode_session_id TEXT,"
    "  created_at REAL NOT NULL,"
    "  last_activity REAL NOT NULL,"
    "  message_count INTEGER NOT NULL DEFAULT 0,"
    "  deleted_at REAL,"
    "  PRIMARY KEY (owner, id)"
    ");"
    "INSERT INTO sessions_v3 SELECT id, CASE owner WHEN 'anonymous' THEN '' ELSE owner END, workspace,"
    "  opencode_session_id, created_at, last_activity, message_count, deleted_at FROM sessions;"
    "CREATE TABLE executions_v3 ("
    "  id INTEGER PRIMARY KEY,"
    "  session_id TEXT NOT NULL,"
    "  owner TEXT NOT NULL,"
    "  mode TEXT NOT NULL,"
    "  status TEXT NOT NULL CHECK (status IN ('queued','running','succeeded','failed',"
    "                                        'timeout','aborted','interrupted')),"
    "  argv TEXT, pid INTEGER, model TEXT, agent TEXT,"
    "  queued_at REAL NOT NULL, started_at REAL, finished_at REAL, duration_ms REAL, queue_wait_ms REAL,"
    "  exit_code INTEGER, signal INTEGER, peak_rss_kb INTEGER, cpu_user_ms REAL, cpu_sys_ms REAL,"
    "  tokens_in INTEGER, tokens_out INTEGER, cost REAL,"
    "  prompt TEXT, prompt_bytes INTEGER, prompt_sha256 TEXT,"
    "  answer TEXT, answer_bytes INTEGER, answer_sha256 TEXT,"
    "  opencode_session_id TEXT, stderr_tail TEXT, error TEXT,"
    "  FOREIGN KEY (owner, session_id) REFERENCES sessions_v3(owner, id)"
    ");"
    "INSERT INTO executions_v3 SELECT id, session_id, CASE owner WHEN 'anonymous' THEN '' ELSE owner END, mode,"
    "  status, argv, pid, model, agent, queued_at, started_at, finished_at, duration_ms, queue_wait_ms, exit_code,"
    "  signal, peak_rss_kb, cpu_user_ms, cpu_sys_ms, tokens_in, tokens_out, cost, prompt, prompt_bytes,"
    "  prompt_sha256, answer, answer_bytes, answer_sha256, opencode_session_id, stderr_tail, error FROM executions;"
    "DROP VIEW executions_by_hour;"
    "DROP VIEW session_summary;"
    "DROP VIEW failures;"
    "DROP TABLE executions;"
    "DROP TABLE sessions;"
    "ALTER TABLE sessions_v3 RENAME TO sessions;"
    "ALTER TABLE executions_v3 RENAME TO executions;"
    "CREATE INDEX executions_session ON executions(owner, session_id, id);"
    "CREATE INDEX executions_status ON executions(status, id);"
    "CREATE INDEX executions_queued ON executions(queued_at);"
    "CREATE INDEX executions_owner ON executions(owner, id);"
    "CREATE INDEX executions_mode ON executions(mode, id);"
    "CREATE INDEX executions_duration ON executions(duration_ms, queued_at);"
    "CREATE INDEX executions_wait ON executions(queue_wait_ms, queued_at);"
    "CREATE VIEW executions_by_hour AS"
    "  SELECT strftime('%Y-%m-%d %H:00', queued_at, 'unixepoch') AS hour, count(*) AS runs,"
    "         sum(status = 'succeeded') AS succeeded,"
    "         sum(status IN ('failed', 'timeout', 'interrupted')) AS failed,"
    "         sum(status = 'aborted') AS aborted,"
    "         round(avg(duration_ms), 1) AS mean_ms, round(max(duration_ms), 1) AS max_ms,"
    "         sum(tokens_in) AS tokens_in, sum(tokens_out) AS tokens_out"
    "  FROM executions GROUP BY hour;"
    "CREATE VIEW session_summary AS"
    "  SELECT s.id, s.owner, s.workspace, s.opencode_session_id, s.message_count,"
    "         datetime(s.created_at, 'unixepoch') AS created, datetime(s.last_activity, 'unixepoch') AS last_activity,"
    "         s.deleted_at IS NOT NULL AS deleted, count(e.id) AS executions,"
    "         coalesce(sum(e.status = 'succeeded'), 0) AS succeeded,"
    "         coalesce(sum(e.status IN ('failed', 'timeout', 'interrupted')), 0) AS failed,"
    "         round(avg(e.duration_ms), 1) AS mean_ms, sum(e.tokens_in) AS tokens_in,"
    "         sum(e.tokens_out) AS tokens_out, sum(e.cost) AS cost"
    "  FROM sessions s LEFT JOIN executions e ON e.owner = s.owner AND e.session_id = s.id GROUP BY s.owner, s.id;"
    "CREATE VIEW failures AS"
    "  SELECT id, session_id, owner, mode, status, datetime(finished_at, 'unixepoch') AS finished, exit_code,"
    "         signal, error FROM executions WHERE status IN ('failed', 'timeout', 'interrupted');",
    /* 4: the agent's side of a turn: its tool calls, the files it changed, its permission and
     * question prompts, the events clients were sent (for a reconnect), webhook deliveries.
     * Children of an execution go with it (prune). */
    "ALTER TABLE executions ADD COLUMN changes_files INTEGER;"
    "ALTER TABLE executions ADD COLUMN changes_additions INTEGER;"
    "ALTER TABLE executions ADD COLUMN changes_deletions INTEGER;"
    "CREATE TABLE tool_calls ("
    "  execution_id INTEGER NOT NULL REFERENCES executions(id) ON DELETE CASCADE,"
    "  seq INTEGER NOT NULL,"
    "  tool TEXT NOT NULL,"
    "  call_id TEXT,"
    "  status TEXT NOT NULL,"
    "  input TEXT, input_bytes INTEGER, input_sha256 TEXT,"
    "  output_bytes INTEGER, error TEXT,"
    "  started_at REAL, ended_at REAL, duration_ms REAL,"
    "  PRIMARY KEY (execution_id, seq)"
    ") WITHOUT ROWID;"
    "CREATE TABLE prompts ("
    "  id TEXT NOT NULL,"
    "  kind TEXT NOT NULL CHECK (kind IN ('permission', 'question')),"
    "  opencode_id TEXT,"
    "  owner TEXT NOT NULL,"
    "  session_id TEXT NOT NULL,"
    "  execution_id INTEGER REFERENCES executions(id) ON DELETE CASCADE,"
    "  status TEXT NOT NULL CHECK (status IN ('pending','allowed','answered','rejected','timeout','lost')),"
    "  request TEXT NOT NULL,"
    "  reply TEXT,"
    "  asked_at REAL NOT NULL, replied_at REAL, replied_by TEXT,"
    "  PRIMARY KEY (owner, id)"
    ");"
    "CREATE INDEX prompts_session ON prompts(owner, session_id, kind, asked_at);"
    "CREATE INDEX prompts_execution ON prompts(execution_id);"
    "CREATE TABLE events ("
    "  execution_id INTEGER NOT NULL REFERENCES executions(id) ON DELETE CASCADE,"
    "  seq INTEGER NOT NULL,"
    "  type TEXT NOT NULL,"
    "  data TEXT,"
    "  PRIMARY KEY (execution_id, seq)"
    ") WITHOUT ROWID;"
    "CREATE TABLE webhook_deliveries ("
    "  id INTEGER PRIMARY KEY,"
    "  delivery TEXT NOT NULL,"
    "  event TEXT NOT NULL,"
    "  execution_id INTEGER,"
    "  status TEXT NOT NULL CHECK (status IN ('delivered', 'failed')),"
    "  attempts INTEGER NOT NULL,"
    "  http_status INTEGER,"
    "  error TEXT,"
    "  created_at REAL NOT NULL,"
    "  finished_at REAL NOT NULL"
    ");"
    "CREATE INDEX webhook_deliveries_at ON webhook_deliveries(created_at);"
    "CREATE VIEW tool_usage AS"
    "  SELECT t.tool, t.status, count(*) AS calls, count(DISTINCT e.owner) AS users,"
    "         round(avg(t.duration_ms), 1) AS mean_ms, round(max(t.duration_ms), 1) AS max_ms,"
    "         datetime(min(e.queued_at), 'unixepoch') AS first, datetime(max(e.queued_at), 'unixepoch') AS last"
    "  FROM tool_calls t JOIN executions e ON e.id = t.execution_id GROUP BY t.tool, t.status;",
    /* 5: a turn stopped at user_turn_cost_max is recorded budget_exceeded: the status CHECK takes it
     * (SQLite changes a CHECK only by rebuilding the table). Rows, ids and the children that refer
     * to them stay as they are. */
    "CREATE TABLE executions_v5 ("
    "  id INTEGER PRIMARY KEY,"
    "  session_id TEXT NOT NULL,"
    "  owner TEXT NOT NULL,"
    "  mode TEXT NOT NULL,"
    "  status TEXT NOT NULL CHECK (status IN ('queued','running','succeeded','failed',"
    "                                        'timeout','aborted','interrupted','budget_exceeded')),"
    "  argv TEXT, pid INTEGER, model TEXT, agent TEXT,"
    "  queued_at REAL NOT NULL, started_at REAL, finished_at REAL, duration_ms REAL, queue_wait_ms REAL,"
    "  exit_code INTEGER, signal INTEGER, peak_rss_kb INTEGER, cpu_user_ms REAL, cpu_sys_ms REAL,"
    "  tokens_in INTEGER, tokens_out INTEGER, cost REAL,"
    "  prompt TEXT, prompt_bytes INTEGER, prompt_sha256 TEXT,"
    "  answer TEXT, answer_bytes INTEGER, answer_sha256 TEXT,"
    "  opencode_session_id TEXT, stderr_tail TEXT, error TEXT,"
    "  changes_files INTEGER, changes_additions INTEGER, changes_deletions INTEGER,"
    "  FOREIGN KEY (owner, session_id) REFERENCES sessions(owner, id)"
    ");"
    "INSERT INTO executions_v5 SELECT * FROM executions;"
    "DROP VIEW executions_by_hour;"
    "DROP VIEW session_summary;"
    "DROP VIEW failures;"
    "DROP VIEW tool_usage;"
    "DROP TABLE executions;"
    "ALTER TABLE executions_v5 RENAME TO executions;"
    "CREATE INDEX executions_session ON executions(owner, session_id, id);"
    "CREATE INDEX executions_status ON executions(status, id);"
    "CREATE INDEX executions_queued ON executions(queued_at);"
    "CREATE INDEX executions_owner ON executions(owner, id);"
    "CREATE INDEX executions_mode ON executions(mode, id);"
    "CREATE INDEX executions_duration ON executions(duration_ms, queued_at);"
    "CREATE INDEX executions_wait ON executions(queue_wait_ms, queued_at);"
    "CREATE INDEX executions_finished_owner ON executions(finished_at, owner);"
    "CREATE VIEW executions_by_hour AS"
    "  SELECT strftime('%Y-%m-%d %H:00', queued_at, 'unixepoch') AS hour, count(*) AS runs,"
    "         sum(status = 'succeeded') AS succeeded,"
    "         sum(status IN ('failed', 'timeout', 'interrupted', 'budget_exceeded')) AS failed,"
    "         sum(status = 'aborted') AS aborted,"
    "         round(avg(duration_ms), 1) AS mean_ms, round(max(duration_ms), 1) AS max_ms,"
    "         sum(tokens_in) AS tokens_in, sum(tokens_out) AS tokens_out"
    "  FROM executions GROUP BY hour;"
    "CREATE VIEW session_summary AS"
    "  SELECT s.id, s.owner, s.workspace, s.opencode_session_id, s.message_count,"
    "         datetime(s.created_at, 'unixepoch') AS created, datetime(s.last_activity, 'unixepoch') AS last_activity,"
    "         s.deleted_at IS NOT NULL AS deleted, count(e.id) AS executions,"
    "         coalesce(sum(e.status = 'succeeded'), 0) AS succeeded,"
    "         coalesce(sum(e.status IN ('failed', 'timeout', 'interrupted', 'budget_exceeded')), 0) AS failed,"
    "         round(avg(e.duration_ms), 1) AS mean_ms, sum(e.tokens_in) AS tokens_in,"
    "         sum(e.tokens_out) AS tokens_out, sum(e.cost) AS cost"
    "  FROM sessions s LEFT JOIN executions e ON e.owner = s.owner AND e.session_id = s.id GROUP BY s.owner, s.id;"
    "CREATE VIEW failures AS"
    "  SELECT id, session_id, owner, mode, status, datetime(finished_at, 'unixepoch') AS finished, exit_code,"
    "         signal, error FROM executions WHERE status IN ('failed', 'timeout', 'interrupted', 'budget_exceeded');"
    "CREATE VIEW tool_usage AS"
    "  SELECT t.tool, t.status, count(*) AS calls, count(DISTINCT e.owner) AS users,"
    "         round(avg(t.duration_ms), 1) AS mean_ms, round(max(t.duration_ms), 1) AS max_ms,"
    "         datetime(min(e.queued_at), 'unixepoch') AS first, datetime(max(e.queued_at), 'unixepoch') AS last"
    "  FROM tool_calls t JOIN executions e ON e.id = t.execution_id GROUP BY t.tool, t.status;",
    /* 6: the opencode server a session is placed on (servers; NULL: not placed yet). */
    "ALTER TABLE sessions ADD COLUMN server INTEGER;",
    /* 7: pools: the one each session lives in and each execution ran in (rows from before: "default"). */
    "ALTER TABLE sessions ADD COLUMN pool TEXT NOT NULL DEFAULT 'default';"
    "ALTER TABLE executions ADD COLUMN pool TEXT NOT NULL DEFAULT 'default';",
    /* 8: stats rollups per hour and per day (see DB_ROLL above), filled from the rows already there.
     * The percentile walks' indexes go: /api/stats reads the histograms, or selects in a short range;
     * so does the mode index (below). */
    "CREATE TABLE stats_rollup (span INTEGER NOT NULL, at INTEGER NOT NULL, pool TEXT NOT NULL,"
    "  mode TEXT NOT NULL, status TEXT NOT NULL, n INTEGER NOT NULL, nd INTEGER NOT NULL, sum_d REAL NOT NULL,"
    "  nw INTEGER NOT NULL, sum_w REAL NOT NULL, nr INTEGER NOT NULL, sum_r REAL NOT NULL, max_r INTEGER,"
    "  tokens_in INTEGER NOT NULL, tokens_out INTEGER NOT NULL, cost REAL NOT NULL,"
    "  PRIMARY KEY (span, at, pool, mode, status)) WITHOUT ROWID;"
    "CREATE TABLE stats_hist (span INTEGER NOT NULL, at INTEGER NOT NULL, metric INTEGER NOT NULL,"
    "  bucket INTEGER NOT NULL, n INTEGER NOT NULL, PRIMARY KEY (span, at, metric, bucket)) WITHOUT ROWID;"
    "CREATE TABLE stats_sessions (span INTEGER NOT NULL, at INTEGER NOT NULL, owner TEXT NOT NULL,"
    "  session_id TEXT NOT NULL, n INTEGER NOT NULL, failed INTEGER NOT NULL, nd INTEGER NOT NULL,"
    "  sum_d REAL NOT NULL, PRIMARY KEY (span, at, owner, session_id)) WITHOUT ROWID;"
    "CREATE TABLE stats_tools (span INTEGER NOT NULL, at INTEGER NOT NULL, tool TEXT NOT NULL,"
    "  status TEXT NOT NULL, calls INTEGER NOT NULL, PRIMARY KEY (span, at, tool, status)) WITHOUT ROWID;"
    "CREATE TRIGGER stats_exec_insert AFTER INSERT ON executions WHEN " DB_FINAL("new") " BEGIN "
    DB_ROLL("new", "") " END;"
    "CREATE TRIGGER stats_exec_unroll AFTER UPDATE ON executions WHEN " DB_FINAL("old") " BEGIN "
    DB_ROLL("old", "-") DB_REPEAK("") DB_UNROLL_EMPTY " END;"
    "CREATE TRIGGER stats_exec_roll AFTER UPDATE ON executions WHEN " DB_FINAL("new") " BEGIN "
    DB_ROLL("new", "") " END;"
    /* BEFORE: its tool calls (deleted with it) are still there to be taken away. */
    "CREATE TRIGGER stats_exec_delete BEFORE DELETE ON executions WHEN " DB_FINAL("old") " BEGIN "
    DB_ROLL("old", "-") DB_REPEAK(" AND e.id != old.id") DB_UNROLL_EMPTY " END;"
    /* A tool call written after its execution was final (ocpmd writes the turn last). */
    "CREATE TRIGGER stats_tool_insert AFTER INSERT ON tool_calls BEGIN"
    " INSERT INTO stats_tools (span, at, tool, status, calls) SELECT s.span, " DB_AT("e", "s.span") ", new.tool,"
    " new.status, 1 FROM executions e, (SELECT 3600 AS span UNION ALL SELECT 86400) s"
    " WHERE e.id = new.execution_id AND " DB_FINAL("e")
    " ON CONFLICT (span, at, tool, status) DO UPDATE SET calls = calls + 1; END;"
    DB_ROLL_FILL("3600") DB_ROLL_FILL("86400")
    "DROP INDEX executions_duration;"
    "DROP INDEX executions_wait;"
    /* Two values, both common: the history's mode filter reads ids newest first and skips the
     * other mode's few rows as fast; the index cost a page at every write of an execution. */
    "DROP INDEX executions_mode;",
    /* 9: the slow log (slowlog.h): a turn past slowlog_timeout, once, as it stood then. It goes with
     * its execution (retention prunes executions; ON DELETE CASCADE takes these). The tool's input
     * is a bounded summary, NULL with store_prompts = no (its size and SHA-256 stay, as in
     * tool_calls); pending_prompts is a JSON array of {kind, id, title}. */
    "CREATE TABLE slow_turns ("
    "  id INTEGER PRIMARY KEY,"
    "  execution_id INTEGER NOT NULL UNIQUE REFERENCES executions(id) ON DELETE CASCADE,"
    "  owner TEXT NOT NULL,"
    "  session_id TEXT NOT NULL,"
    "  pool TEXT NOT NULL,"
    "  at REAL NOT NULL,"
    "  elapsed_ms REAL NOT NULL,"
    "  step TEXT NOT NULL,"
    "  tool TEXT, call_id TEXT,"
    "  tool_input_summary TEXT, tool_input_bytes INTEGER, tool_input_sha256 TEXT,"
    "  since_last_event_ms REAL,"
    "  pending_prompts TEXT NOT NULL DEFAULT '[]'"
    ");"
    "CREATE INDEX slow_turns_at ON slow_turns(at);",
};

const int db_nmigrations = (int)(sizeof db_migrations / sizeof db_migrations[0]);

const char *const db_sql[ST_COUNT] = {
    [ST_BEGIN] = "BEGIN IMMEDIATE",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",
    [ST_INTERRUPT] = "UPDATE executions SET status = 'interrupted', finished_at = ?1,"
                     " error = coalesce(error, 'manager stopped before the run ended')"
                     " WHERE status IN ('queued', 'running')",
    [ST_EVENT] = "INSERT INTO manager_events (at, pid, kind, detail) VALUES (?1, ?2, ?3, ?4)",
    [ST_SESS_INSERT] = "INSERT INTO sessions (id, owner, workspace, opencode_session_id, created_at,"
                       " last_activity, message_count, pool) VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0, ?7)",
    [ST_SESS_SET_OC] = "UPDATE sessions SET opencode_session_id = ?3 WHERE owner = ?1 AND id = ?2",
    [ST_SESS_SET_SERVER] = "UPDATE sessions SET server = ?3 WHERE owner = ?1 AND id = ?2",
    [ST_SESS_DELETE] = "UPDATE sessions SET deleted_at = ?3 WHERE owner = ?1 AND id = ?2",
    [ST_SESS_EACH] = "SELECT id, owner, workspace, opencode_session_id, created_at, last_activity,"
                     " message_count, server, pool FROM sessions WHERE deleted_at IS NULL",
    [ST_SESS_EXISTS] = "SELECT 1 FROM sessions WHERE owner = ?1 AND id = ?2",
    [ST_SESS_WORKSPACES] = "SELECT count(DISTINCT workspace), coalesce(max(workspace = ?2), 0) FROM sessions"
                           " WHERE owner = ?1",
    [ST_SESS_BUMP] = "UPDATE sessions SET last_activity = ?3, message_count = message_count + 1"
                     " WHERE owner = ?1 AND id = ?2",
    [ST_EXEC_INSERT] = "INSERT INTO executions (session_id, owner, mode, status, model, agent, queued_at,"
                       " prompt, prompt_bytes, prompt_sha256, pool) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    [ST_EXEC_UPDATE] =
        "UPDATE executions SET mode = ?2, status = ?3, argv = ?4, pid = ?5, started_at = ?6,"
        " finished_at = ?7, duration_ms = ?8, queue_wait_ms = ?9, exit_code = ?10, signal = ?11,"
        " peak_rss_kb = ?12, cpu_user_ms = ?13, cpu_sys_ms = ?14, tokens_in = ?15, tokens_out = ?16,"
        " cost = ?17, answer = ?18, answer_bytes = ?19, answer_sha256 = ?20, opencode_session_id = ?21,"
        " stderr_tail = ?22, error = ?23, changes_files = ?24, changes_additions = ?25,"
        " changes_deletions = ?26 WHERE id = ?1",
    [ST_EXEC_GET] = "SELECT * FROM executions WHERE id = ?1 AND (?2 IS NULL OR owner = ?2)",
    /* /api/stats (db_stats.c): the rows of a short range or of a long one's partial days, each read
     * once; the rows of whole days not final yet; then the rollups of the whole days. */
    [ST_STATS_ROWS] = "SELECT pool, mode, status, owner, session_id, duration_ms, queue_wait_ms, peak_rss_kb,"
                      " tokens_in, tokens_out, cost FROM executions WHERE queued_at >= ?1 AND queued_at < ?2",
    [ST_STATS_LIVE] = "SELECT pool, mode, status, owner, session_id, duration_ms, queue_wait_ms, peak_rss_kb,"
                      " tokens_in, tokens_out, cost FROM executions INDEXED BY executions_status"
                      " WHERE status IN ('queued', 'running') AND queued_at >= ?1 AND queued_at < ?2",
    [ST_STATS_TOOL_ROWS] = "SELECT t.tool, t.status, count(*) FROM tool_calls t JOIN executions e ON e.id = t.execution_id"
                           " WHERE e.queued_at >= ?1 AND e.queued_at < ?2 GROUP BY t.tool, t.status",
    [ST_STATS_TOOL_LIVE] = "SELECT t.tool, t.status, count(*) FROM executions e INDEXED BY executions_status"
                           " JOIN tool_calls t ON t.execution_id = e.id WHERE e.status IN ('queued', 'running')"
                           " AND e.queued_at >= ?1 AND e.queued_at < ?2 GROUP BY t.tool, t.status",
    /* The rollups of span ?3 over periods starting in [?1, ?2). */
    [ST_STATS_ROLLUP] = "SELECT pool, mode, status, sum(n), sum(nd), sum(sum_d), sum(nw), sum(sum_w), sum(nr),"
                        " sum(sum_r), max(max_r), total(tokens_in), total(tokens_out), sum(cost) FROM stats_rollup"
                        " WHERE span = ?3 AND at >= ?1 AND at < ?2 GROUP BY pool, mode, status",
    [ST_STATS_HIST] = "SELECT metric, bucket, n FROM stats_hist WHERE span = ?3 AND at >= ?1 AND at < ?2",
    [ST_STATS_SESSIONS] = "SELECT owner, session_id, n, failed, nd, sum_d FROM stats_sessions"
                          " WHERE span = ?3 AND at >= ?1 AND at < ?2",
    [ST_STATS_TOOLS] = "SELECT tool, status, sum(calls) FROM stats_tools WHERE span = ?3 AND at >= ?1 AND at < ?2"
                       " GROUP BY tool, status",
    /* Retention, in small batches so the loop never stalls. */
    [ST_PRUNE_EXECS] = "DELETE FROM executions WHERE id IN (SELECT id FROM executions WHERE finished_at < ?1"
                       " AND status NOT IN ('queued', 'running') ORDER BY id LIMIT ?2)",
    [ST_TOOL_INSERT] = "INSERT INTO tool_calls (execution_id, seq, tool, call_id, status, input, input_bytes,"
                       " input_sha256, output_bytes, error, started_at, ended_at, duration_ms)"
                       " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
    [ST_TOOL_LIST] = "SELECT tool, call_id, status, input, input_bytes, input_sha256, output_bytes, error,"
                     " started_at, ended_at, duration_ms FROM tool_calls WHERE execution_id = ?1 ORDER BY seq",
    [ST_EVENT_INSERT] = "INSERT INTO events (execution_id, seq, type, data) VALUES (?1, ?2, ?3, ?4)",
    [ST_EVENT_LIST] = "SELECT seq, type, data FROM events WHERE execution_id = ?1 AND seq > ?2 ORDER BY seq",
    /* ids are ocpm's own (unique per execution): a replace is only ever the same prompt's update. */
    [ST_PROMPT_PUT] = "INSERT OR REPLACE INTO prompts (id, kind, owner, session_id, execution_id, status, request, reply,"
                      " asked_at, replied_at, replied_by, opencode_id)"
                      " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
    [ST_PROMPT_LIST] = "SELECT id, execution_id, status, request, reply, asked_at, replied_at, replied_by FROM prompts"
                       " WHERE owner = ?1 AND kind = ?2 AND (?3 IS NULL OR session_id = ?3)"
                       " AND (?4 IS NULL OR status = ?4) AND (?5 IS NULL OR execution_id = ?5) ORDER BY asked_at, id",
    [ST_PROMPT_STATUS] = "SELECT status FROM prompts WHERE owner = ?1 AND id = ?2 AND kind = ?3 AND session_id = ?4",
    [ST_PROMPT_LOSE] = "UPDATE prompts SET status = 'lost', replied_at = ?1, replied_by = 'ocpm' WHERE status = 'pending'",
    /* Today's usage per owner (budget.h), from what finished executions reported. */
    /* total(), not sum(): a forged count would make sum() fail with an overflow, and the start with it. */
    [ST_USAGE_SINCE] = "SELECT owner, min(total(tokens_in) + total(tokens_out), 1e15), min(total(cost), 1e12)"
                       " FROM executions WHERE finished_at >= ?1 GROUP BY owner",
    [ST_WEBHOOK_INSERT] = "INSERT INTO webhook_deliveries (delivery, event, execution_id, status, attempts, http_status,"
                          " error, created_at, finished_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    [ST_PRUNE_HOOKS] = "DELETE FROM webhook_deliveries WHERE id IN (SELECT id FROM webhook_deliveries"
                       " WHERE created_at < ?1 ORDER BY id LIMIT ?2)",
    [ST_SLOW_INSERT] = "INSERT INTO slow_turns (execution_id, owner, session_id, pool, at, elapsed_ms, step, tool,"
                       " call_id, tool_input_summary, tool_input_bytes, tool_input_sha256, since_last_event_ms,"
                       " pending_prompts) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
    /* Newest first from before (?2: an id, NULL from the newest), at or after ?1. */
    [ST_SLOW_LIST] = "SELECT id, execution_id, owner, session_id, pool, at, elapsed_ms, step, tool, call_id,"
                     " tool_input_summary, tool_input_bytes, tool_input_sha256, since_last_event_ms, pending_prompts"
                     " FROM slow_turns WHERE at >= ?1 AND (?2 IS NULL OR id < ?2) ORDER BY id DESC LIMIT ?3",
    [ST_PRUNE_EVENTS] = "DELETE FROM manager_events WHERE id IN (SELECT id FROM manager_events WHERE at < ?1"
                        " ORDER BY id LIMIT ?2)",
};
