#define _GNU_SOURCE
#include "budget.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define BUDGET_DAY 86400L

struct budget {
    const conf_t *conf;
    user_table_t *users;
    long day; /* the UTC day the counters are of */
    long long tokens_total;
    double cost_total;
};

budget_t *budget_new(const conf_t *conf, user_table_t *users)
{
    budget_t *b = calloc(1, sizeof *b);
    if (b) {
        b->conf = conf;
        b->users = users;
        b->day = -1;
    }
    return b;
}

void budget_free(budget_t *b) { free(b); }
long long budget_tokens_total(const budget_t *b) { return b->tokens_total; }
double budget_cost_total(const budget_t *b) { return b->cost_total; }

/* A new day: everyone starts from 0. */
static void budget_roll(budget_t *b, double now)
{
    long day = (long)(now / BUDGET_DAY);
    if (day == b->day)
        return;
    user_reset(b->users, USER_DAY_TOKENS);
    user_reset(b->users, USER_DAY_COST_MICRO);
    b->day = day;
}

/* What executions report comes from the agent's events: only sane amounts count. */
#define BUDGET_TOKENS_MAX 1000000000000LL
#define BUDGET_COST_MAX 1e9

static void budget_sane(long long *tokens, double *cost)
{
    if (*tokens < 0 || *tokens > BUDGET_TOKENS_MAX)
        *tokens = *tokens < 0 ? 0 : BUDGET_TOKENS_MAX;
    if (!(*cost >= 0 && *cost <= BUDGET_COST_MAX)) /* NaN too */
        *cost = *cost > BUDGET_COST_MAX ? BUDGET_COST_MAX : 0;
}

static void budget_add(budget_t *b, const char *owner, long long tokens, double cost)
{
    budget_sane(&tokens, &cost);
    user_add(b->users, owner, USER_DAY_TOKENS, (long)tokens);
    user_add(b->users, owner, USER_DAY_COST_MICRO, (long)(cost * 1e6 + 0.5));
}

static void budget_load_one(void *ctx, const char *owner, long long tokens, double cost)
{
    budget_add(ctx, owner ? owner : "", tokens, cost);
}

int budget_load(budget_t *b, db_t *db, double now)
{
    budget_roll(b, now);
    return db_usage_since(db, (double)(b->day * BUDGET_DAY), budget_load_one, b);
}

void budget_spend(budget_t *b, const char *owner, long long tokens, double cost, double now)
{
    budget_roll(b, now);
    budget_sane(&tokens, &cost);
    if (tokens > 0 || cost > 0)
        budget_add(b, owner, tokens, cost);
    b->tokens_total += tokens;
    b->cost_total += cost;
}

static void budget_reset_at(const budget_t *b, char *out, size_t len)
{
    time_t t = (time_t)((b->day + 1) * BUDGET_DAY);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

int budget_check(budget_t *b, const char *owner, double now, char *why, size_t whylen, long *reset_s)
{
    budget_roll(b, now);
    const conf_t *c = b->conf;
    const char *what = NULL;
    if (c->user_daily_tokens > 0 && user_count(b->users, owner, USER_DAY_TOKENS) >= c->user_daily_tokens)
        what = "user_daily_tokens";
    else if (c->user_daily_cost_micro > 0 &&
             user_count(b->users, owner, USER_DAY_COST_MICRO) >= c->user_daily_cost_micro)
        what = "user_daily_cost";
    if (!what)
        return 0;
    char at[32];
    budget_reset_at(b, at, sizeof at);
    *reset_s = (b->day + 1) * BUDGET_DAY - (long)now;
    snprintf(why, whylen, "you have used today's budget (%s); it resets at %s", what, at);
    return -1;
}

json_object *budget_usage_json(budget_t *b, const char *owner, double now)
{
    budget_roll(b, now);
    const conf_t *c = b->conf;
    char at[32], day[16];
    budget_reset_at(b, at, sizeof at);
    time_t t = (time_t)(b->day * BUDGET_DAY);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(day, sizeof day, "%Y-%m-%d", &tm);
    json_object *o = json_object_new_object(), *lim = json_object_new_object();
    json_object_object_add(o, "day", json_object_new_string(day));
    json_object_object_add(o, "tokens", json_object_new_int64(user_count(b->users, owner, USER_DAY_TOKENS)));
    json_object_object_add(o, "cost", json_object_new_double(user_count(b->users, owner, USER_DAY_COST_MICRO) / 1e6));
    json_object_object_add(lim, "dailyTokens", c->user_daily_tokens ? json_object_new_int64(c->user_daily_tokens) : NULL);
    json_object_object_add(lim, "dailyCost",
                           c->user_daily_cost_micro ? json_object_new_double(c->user_daily_cost_micro / 1e6) : NULL);
    json_object_object_add(lim, "turnCostMax",
                           c->user_turn_cost_max_micro ? json_object_new_double(c->user_turn_cost_max_micro / 1e6)
                                                       : NULL);
    json_object_object_add(o, "limits", lim);
    json_object_object_add(o, "resetsAt", json_object_new_string(at));
    char tmp[8];
    json_object_object_add(o, "withinBudget",
                           json_object_new_boolean(budget_check(b, owner, now, tmp, sizeof tmp, &(long){0}) == 0));
    return o;
}
