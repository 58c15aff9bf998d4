#define _GNU_SOURCE
#include "exec_status.h"

#include <string.h>

static const char *const names[EXEC_NSTATUS] = {
    [EXEC_QUEUED] = "queued",   [EXEC_RUNNING] = "running", [EXEC_SUCCEEDED] = "succeeded",
    [EXEC_FAILED] = "failed",   [EXEC_TIMEOUT] = "timeout", [EXEC_ABORTED] = "aborted",
    [EXEC_INTERRUPTED] = "interrupted", [EXEC_BUDGET] = "budget_exceeded",
};

const char *exec_status_name(exec_status_t s)
{
    return s < EXEC_NSTATUS ? names[s] : "?";
}

int exec_status_parse(const char *name)
{
    for (int i = 0; i < EXEC_NSTATUS; i++)
        if (strcmp(names[i], name) == 0)
            return i;
    return -1;
}

bool exec_status_final(exec_status_t s) { return s != EXEC_QUEUED && s != EXEC_RUNNING; }
