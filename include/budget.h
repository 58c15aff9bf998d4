/* budget: what each user may spend per UTC day (user_daily_tokens, user_daily_cost) and per turn
 * (user_turn_cost_max), counted from what executions report (tokens in and out, cost).
 *
 * Today's usage lives in the user table (USER_DAY_*), loaded from the database at start (so a
 * restart forgets nothing) and grown as executions finish; at midnight UTC every user starts from
 * 0. A message is refused while its user is at or past a daily bound (the turn that crosses one
 * finishes: only the next is refused). Costs are kept in millionths. */
#ifndef OCPM_BUDGET_H
#define OCPM_BUDGET_H

#include <json-c/json.h>

#include "conf.h"
#include "db.h"
#include "user.h"

typedef struct budget budget_t;

budget_t *budget_new(const conf_t *conf, user_table_t *users);
void budget_free(budget_t *b);
/* Today's usage from the executions finished since midnight UTC. */
int budget_load(budget_t *b, db_t *db, double now);
/* An execution of owner finished having used tokens and cost. */
void budget_spend(budget_t *b, const char *owner, long long tokens, double cost, double now);
/* 0 when owner may send a message now; else -1, why, and the seconds until the day resets. */
int budget_check(budget_t *b, const char *owner, double now, char *why, size_t whylen, long *reset_s);
/* owner's usage today and the bounds, as GET /api/usage answers it. */
json_object *budget_usage_json(budget_t *b, const char *owner, double now);
/* Tokens and cost of every finished execution since the manager started (the metrics). */
long long budget_tokens_total(const budget_t *b);
double budget_cost_total(const budget_t *b);

#endif
