/* exec_status: the statuses of an execution, and their one table of names.
 *
 * The API's status filter, the metrics' labels, the logs and the database all use these names
 * (the database's CHECK constraint lists them too: migrations are never edited, so a unit test
 * holds the two together). In lifecycle order. */
#ifndef OCPM_EXEC_STATUS_H
#define OCPM_EXEC_STATUS_H

#include <stdbool.h>

typedef enum {
    EXEC_QUEUED,      /* waiting in its session's queue */
    EXEC_RUNNING,     /* its workspace prepared, or its backend at work */
    EXEC_SUCCEEDED,   /* the turn completed */
    EXEC_FAILED,      /* opencode, the workspace or the backend failed */
    EXEC_TIMEOUT,     /* stopped at run_timeout */
    EXEC_ABORTED,     /* stopped or cancelled by a client (abort, delete) */
    EXEC_INTERRUPTED, /* stopped by the manager's shutdown, or left by a manager that died */
    EXEC_BUDGET,      /* stopped when its cost passed user_turn_cost_max */
    EXEC_NSTATUS
} exec_status_t;

/* The name (never NULL for a valid status). */
const char *exec_status_name(exec_status_t s);
/* The status of a name, or -1. */
int exec_status_parse(const char *name);
/* Finished (neither queued nor running). */
bool exec_status_final(exec_status_t s);

#endif
