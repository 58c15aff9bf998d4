#define _GNU_SOURCE
#include "turn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sha256.h"
#include "valid.h"

/* A tool call's error text is cut here. */
#define TURN_ERROR_MAX 2048
/* More calls than this in one turn are counted, not kept one by one. */
#define TURN_TOOLS_MAX 1024
/* Assistant messages of one turn whose cost is followed (a turn has a few: one per step). */
#define TURN_MESSAGES_MAX 64
/* More than this for one step is not a cost anyone reports: taken as none. */
#define TURN_COST_MAX 1e6

typedef struct turn_event {
    long long seq;
    char *type, *data;
} turn_event_t;

typedef struct turn_tool {
    char tool[65], call_id[129], status[16];
    char *input, *error;
    char sha[65];
    long long input_bytes, output_bytes;
    double started_at, ended_at;
} turn_tool_t;

struct turn {
    turn_limits_t lim;
    long long seq;
    turn_event_t *events;
    size_t nevents, cap;
    long long kept_bytes;
    long long first_dropped; /* the first id not kept (0: none) */
    turn_tool_t *tools;
    size_t ntools, tools_cap;
    int has_changes;
    long long changes[3];
    /* cost so far: opencode run's step_finish parts add up; a server reports each assistant
     * message's cost as it grows (the last word per message counts) */
    double steps_cost;
    struct {
        char id[64];
        double cost;
    } messages[TURN_MESSAGES_MAX];
    size_t nmessages;
    const char *step; /* the kind of the last part its events named (turn_steps), NULL: none yet */
};

/* The parts that say what the model is doing, by their name in either backend's events (opencode
 * run's event types, a server's part types), and the step each means. A finished step or tool
 * leaves the turn waiting for the model (NULL). */
static const struct {
    const char *part, *step;
} turn_steps[] = {
    {"text", "text"},           {"reasoning", "reasoning"},   {"tool", "tool"},       {"tool_use", "tool"},
    {"step-start", NULL},       {"step_start", NULL},         {"step-finish", NULL},  {"step_finish", NULL},
};

static void turn_step(turn_t *t, const char *part)
{
    for (size_t i = 0; part && i < sizeof turn_steps / sizeof turn_steps[0]; i++)
        if (strcmp(part, turn_steps[i].part) == 0) {
            t->step = turn_steps[i].step;
            return;
        }
}

turn_t *turn_new(const turn_limits_t *lim)
{
    turn_t *t = calloc(1, sizeof *t);
    if (t)
        t->lim = *lim;
    return t;
}

void turn_free(turn_t *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->nevents; i++) {
        free(t->events[i].type);
        free(t->events[i].data);
    }
    free(t->events);
    for (size_t i = 0; i < t->ntools; i++) {
        free(t->tools[i].input);
        free(t->tools[i].error);
    }
    free(t->tools);
    free(t);
}

long long turn_log(turn_t *t, const char *type, const char *d)
{
    long long id = ++t->seq;
    size_t len = strlen(d);
    /* The final event is always kept: a replay must end the way the stream did. */
    int last = strcmp(type, "done") == 0;
    if (!last && (t->first_dropped || (long)t->nevents >= t->lim.max_events ||
                  t->kept_bytes + (long long)len > t->lim.max_event_bytes)) {
        if (!t->first_dropped)
            t->first_dropped = id;
        return id;
    }
    if (t->nevents == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 32;
        turn_event_t *ne = realloc(t->events, cap * sizeof *ne);
        if (!ne)
            return t->first_dropped ? id : (t->first_dropped = id);
        t->events = ne;
        t->cap = cap;
    }
    turn_event_t *e = &t->events[t->nevents];
    e->seq = id;
    e->type = strdup(type);
    e->data = strdup(d);
    if (!e->type || !e->data) {
        free(e->type);
        free(e->data);
        if (!t->first_dropped)
            t->first_dropped = id;
        return id;
    }
    t->nevents++;
    t->kept_bytes += (long long)len;
    return id;
}

long long turn_last_id(const turn_t *t) { return t->seq; }

int turn_replay(const turn_t *t, long long after, db_event_fn fn, void *ctx)
{
    for (size_t i = 0; i < t->nevents; i++)
        if (t->events[i].seq > after) {
            db_event_t ev = {.seq = t->events[i].seq, .type = t->events[i].type, .data = t->events[i].data};
            fn(ctx, &ev);
        }
    return t->first_dropped && t->seq > after;
}

static json_object *turn_get(json_object *o, const char *key)
{
    json_object *v = NULL;
    return o && json_object_is_type(o, json_type_object) && json_object_object_get_ex(o, key, &v) ? v : NULL;
}

static const char *turn_str(json_object *o, const char *key)
{
    json_object *v = turn_get(o, key);
    return v && json_object_is_type(v, json_type_string) ? json_object_get_string(v) : NULL;
}

/* opencode's times are unix milliseconds. */
static double turn_time(json_object *o, const char *key)
{
    json_object *v = turn_get(o, key);
    return v && (json_object_is_type(v, json_type_int) || json_object_is_type(v, json_type_double))
               ? json_object_get_double(v) / 1000.0
               : 0;
}

static turn_tool_t *turn_tool(turn_t *t, const char *call_id)
{
    for (size_t i = 0; i < t->ntools; i++)
        if (strcmp(t->tools[i].call_id, call_id) == 0)
            return &t->tools[i];
    if (t->ntools >= TURN_TOOLS_MAX)
        return NULL;
    if (t->ntools == t->tools_cap) {
        size_t cap = t->tools_cap ? t->tools_cap * 2 : 8;
        turn_tool_t *nt = realloc(t->tools, cap * sizeof *nt);
        if (!nt)
            return NULL;
        t->tools = nt;
        t->tools_cap = cap;
    }
    turn_tool_t *tc = &t->tools[t->ntools++];
    memset(tc, 0, sizeof *tc);
    tc->output_bytes = -1;
    snprintf(tc->call_id, sizeof tc->call_id, "%s", call_id);
    return tc;
}

/* A tool part (both backends give the same shape): its latest state. */
static void turn_tool_part(turn_t *t, json_object *part)
{
    const char *name = turn_str(part, "tool"), *call = turn_str(part, "callID");
    json_object *state = turn_get(part, "state");
    const char *status = turn_str(state, "status");
    /* The call's id is the record's key: printable, whole (no NUL inside), short. */
    if (!name || !call || !status || strlen(call) != (size_t)json_object_get_string_len(turn_get(part, "callID")) ||
        !valid_token(call, 128))
        return;
    turn_tool_t *tc = turn_tool(t, call);
    if (!tc)
        return;
    /* Names and ids come from the agent: kept printable, cut to their field. */
    snprintf(tc->tool, sizeof tc->tool, "%s", valid_id(name) ? name : "invalid-name");
    snprintf(tc->status, sizeof tc->status, "%s", status);
    json_object *in = turn_get(state, "input");
    if (in && json_object_is_type(in, json_type_object) && json_object_object_length(in) > 0) {
        const char *js = json_object_to_json_string_ext(in, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
        size_t len = strlen(js);
        free(tc->input);
        tc->input = t->lim.store_prompts && (long)len <= t->lim.max_input_bytes ? strdup(js) : NULL;
        tc->input_bytes = (long long)len;
        sha256_hex(js, len, tc->sha);
    }
    json_object *tm = turn_get(state, "time");
    if (turn_time(tm, "start") > 0)
        tc->started_at = turn_time(tm, "start");
    if (turn_time(tm, "end") > 0)
        tc->ended_at = turn_time(tm, "end");
    json_object *out = turn_get(state, "output");
    if (out && json_object_is_type(out, json_type_string))
        tc->output_bytes = json_object_get_string_len(out);
    const char *err = turn_str(state, "error");
    if (err) {
        free(tc->error);
        tc->error = strndup(err, TURN_ERROR_MAX);
    }
}

/* opencode's summary of the turn's file changes: the user message's summary.diffs. */
static void turn_diffs(turn_t *t, json_object *info)
{
    const char *role = turn_str(info, "role");
    json_object *diffs = turn_get(turn_get(info, "summary"), "diffs");
    if (!role || strcmp(role, "user") != 0 || !diffs || !json_object_is_type(diffs, json_type_array))
        return;
    long long c[3] = {0, 0, 0};
    for (size_t i = 0; i < json_object_array_length(diffs); i++) {
        json_object *d = json_object_array_get_idx(diffs, i);
        c[0]++;
        c[1] += json_object_get_int64(turn_get(d, "additions"));
        c[2] += json_object_get_int64(turn_get(d, "deletions"));
    }
    t->has_changes = 1;
    memcpy(t->changes, c, sizeof c);
}

/* A cost as the agent's events state it: a finite amount from 0 to TURN_COST_MAX, else 0. */
static double turn_amount(json_object *c)
{
    if (!c || !(json_object_is_type(c, json_type_double) || json_object_is_type(c, json_type_int)))
        return 0;
    double v = json_object_get_double(c);
    return v > 0 && v <= TURN_COST_MAX ? v : 0; /* NaN fails both comparisons */
}

/* The cost an event reports. */
static void turn_cost_of(turn_t *t, const char *type, json_object *data)
{
    json_object *c;
    if (strcmp(type, "step_finish") == 0) {
        t->steps_cost += turn_amount(turn_get(turn_get(data, "part"), "cost"));
        return;
    }
    json_object *info = turn_get(data, "info");
    const char *role = turn_str(info, "role"), *id = turn_str(info, "id");
    c = turn_get(info, "cost");
    if (!role || strcmp(role, "assistant") != 0 || !id || !c ||
        !(json_object_is_type(c, json_type_double) || json_object_is_type(c, json_type_int)))
        return;
    size_t i = 0;
    while (i < t->nmessages && strcmp(t->messages[i].id, id) != 0)
        i++;
    if (i == t->nmessages) {
        if (i == TURN_MESSAGES_MAX) { /* the last slot moves on: what it held stays counted */
            i--;
            t->steps_cost += t->messages[i].cost;
        } else {
            t->nmessages++;
        }
        snprintf(t->messages[i].id, sizeof t->messages[i].id, "%s", id);
    }
    t->messages[i].cost = turn_amount(c);
}

double turn_cost(const turn_t *t)
{
    double c = t->steps_cost;
    for (size_t i = 0; i < t->nmessages; i++)
        c += t->messages[i].cost;
    return c;
}

void turn_observe(turn_t *t, const char *type, json_object *data)
{
    if (strcmp(type, "step_finish") == 0 || strcmp(type, "message.updated") == 0)
        turn_cost_of(t, type, data);
    if (strcmp(type, "tool_use") == 0) {
        turn_tool_part(t, turn_get(data, "part"));
        turn_step(t, type);
    } else if (strcmp(type, "message.part.updated") == 0) {
        json_object *part = turn_get(data, "part");
        const char *pt = turn_str(part, "type");
        if (pt && strcmp(pt, "tool") == 0)
            turn_tool_part(t, part);
        turn_step(t, pt);
    } else if (strcmp(type, "message.updated") == 0) {
        turn_diffs(t, turn_get(data, "info"));
    } else {
        turn_step(t, type); /* opencode run's text, reasoning, step_start, step_finish */
    }
}

void turn_now(const turn_t *t, turn_now_t *now)
{
    *now = (turn_now_t){.step = t->step, .input_bytes = -1};
    /* The latest call not finished: what the turn waits for, whatever came after it. */
    for (size_t i = t->ntools; i-- > 0;) {
        const turn_tool_t *tc = &t->tools[i];
        if (strcmp(tc->status, "pending") != 0 && strcmp(tc->status, "running") != 0)
            continue;
        now->step = "tool";
        now->tool = tc->tool;
        now->call_id = tc->call_id;
        now->input = tc->input;
        now->input_sha256 = tc->sha[0] ? tc->sha : NULL;
        now->input_bytes = tc->sha[0] ? tc->input_bytes : -1;
        return;
    }
    if (now->step && strcmp(now->step, "tool") == 0)
        now->step = NULL; /* its calls have all ended: the model has the turn again */
}

/* The status a call is recorded with: opencode's final ones as they are; a call the turn left
 * unfinished (aborted, timed out) is an error. */
static const char *turn_final_status(const turn_tool_t *tc)
{
    return strcmp(tc->status, "completed") == 0 || strcmp(tc->status, "error") == 0 ? tc->status : "error";
}

static const char *turn_final_error(const turn_tool_t *tc)
{
    if (tc->error || strcmp(turn_final_status(tc), "error") != 0 || strcmp(tc->status, "error") == 0)
        return tc->error;
    return "the turn ended before the tool finished";
}

json_object *turn_tools_json(const turn_t *t)
{
    json_object *a = json_object_new_array();
    for (size_t i = 0; i < t->ntools; i++) {
        const turn_tool_t *tc = &t->tools[i];
        json_object *o = json_object_new_object();
        json_object_object_add(o, "tool", json_object_new_string(tc->tool));
        json_object_object_add(o, "callId", json_object_new_string(tc->call_id));
        json_object_object_add(o, "status", json_object_new_string(turn_final_status(tc)));
        json_object_object_add(o, "input", tc->input ? json_tokener_parse(tc->input) : NULL);
        json_object_object_add(o, "inputBytes", json_object_new_int64(tc->input_bytes));
        json_object_object_add(o, "inputSha256", tc->sha[0] ? json_object_new_string(tc->sha) : NULL);
        json_object_object_add(o, "outputBytes", tc->output_bytes >= 0 ? json_object_new_int64(tc->output_bytes) : NULL);
        const char *err = turn_final_error(tc);
        json_object_object_add(o, "error", err ? json_object_new_string(err) : NULL);
        json_object_object_add(o, "startedAt", tc->started_at > 0 ? json_object_new_double(tc->started_at) : NULL);
        json_object_object_add(o, "endedAt", tc->ended_at > 0 ? json_object_new_double(tc->ended_at) : NULL);
        json_object_object_add(o, "durationMs", tc->started_at > 0 && tc->ended_at >= tc->started_at
                                                    ? json_object_new_double((tc->ended_at - tc->started_at) * 1000.0)
                                                    : NULL);
        json_object_array_add(a, o);
    }
    return a;
}

size_t turn_tool_count(const turn_t *t) { return t->ntools; }

const char *turn_tool_name(const turn_t *t, const char *call_id)
{
    for (size_t i = 0; call_id && i < t->ntools; i++)
        if (strcmp(t->tools[i].call_id, call_id) == 0)
            return t->tools[i].tool;
    return NULL;
}

int turn_changes(const turn_t *t, long long counts[3])
{
    if (t->has_changes)
        memcpy(counts, t->changes, sizeof t->changes);
    return t->has_changes;
}

void turn_each_tool(const turn_t *t, void (*fn)(void *ctx, const char *tool, const char *status), void *ctx)
{
    for (size_t i = 0; i < t->ntools; i++)
        fn(ctx, t->tools[i].tool, turn_final_status(&t->tools[i]));
}

int turn_store(const turn_t *t, db_t *db, int64_t exec_id)
{
    db_tool_t *tools = t->ntools ? calloc(t->ntools, sizeof *tools) : NULL;
    db_event_t *events = t->nevents ? calloc(t->nevents, sizeof *events) : NULL;
    if ((t->ntools && !tools) || (t->nevents && !events)) {
        free(tools);
        free(events);
        return -1;
    }
    for (size_t i = 0; i < t->ntools; i++) {
        const turn_tool_t *tc = &t->tools[i];
        tools[i] = (db_tool_t){.tool = tc->tool,
                               .call_id = tc->call_id,
                               .status = turn_final_status(tc),
                               .input = tc->input,
                               .input_sha256 = tc->sha[0] ? tc->sha : NULL,
                               .error = turn_final_error(tc),
                               .input_bytes = tc->input_bytes,
                               .output_bytes = tc->output_bytes,
                               .started_at = tc->started_at,
                               .ended_at = tc->ended_at};
    }
    for (size_t i = 0; i < t->nevents; i++)
        events[i] = (db_event_t){.seq = t->events[i].seq, .type = t->events[i].type, .data = t->events[i].data};
    /* Events carry the answer's text and the tools' inputs and outputs: with store_prompts = no they
     * are never written (a replay of a finished execution is then its done, from the record). */
    int rc = db_turn_store(db, exec_id, tools, t->ntools, events, t->lim.store_prompts ? t->nevents : 0);
    free(tools);
    free(events);
    return rc;
}
