/* op: the manager's operations, one per API route, dispatched by name from
 * a table. Each handler answers its connection (at once or later). */
#ifndef OCPM_OP_H
#define OCPM_OP_H

#include <json-c/json.h>

#include "control.h"
#include "manager.h"

/* The ctl request handler: looks up frame.op and runs it. */
void op_dispatch(manager_t *m, control_conn_t *c, json_object *frame);
/* The status document (also used by the tests of shape). */
json_object *op_status_json(manager_t *m);

#endif
