/* oc_server: an instance type. Two servers made side by side are two objects with their own state
 * and handles; making and freeing them needs no process and leaves nothing behind on the loop. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "conf.h"
#include "oc_server.h"

static void test_two_servers(void **state)
{
    (void)state;
    conf_t c;
    conf_defaults(&c);
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    http_t *http = http_new(&loop);
    oc_models_t *models = oc_models_new();
    assert_non_null(http);
    oc_server_config_t cfg = {.loop = &loop, .conf = &c, .http = http, .models = models};
    oc_server_t *a = oc_server_new(&cfg), *b = oc_server_new(&cfg);
    assert_non_null(a);
    assert_non_null(b);
    assert_ptr_not_equal(a, b);
    assert_int_equal(oc_server_state(a), OC_SERVER_OFF);
    assert_int_equal(oc_server_state(b), OC_SERVER_OFF);
    assert_int_equal(oc_server_pid(a), 0);
    assert_int_equal(oc_server_in_flight(b), 0);
    /* Each is a backend of its own: neither takes messages before it is started. */
    assert_int_equal(oc_server_backend.state(a), BACKEND_DOWN);
    assert_int_equal(oc_server_backend.state(b), BACKEND_DOWN);
    json_object *sa = oc_server_status_json(a);
    assert_string_equal(json_object_get_string(json_object_object_get(sa, "state")), "off");
    json_object_put(sa);
    oc_server_free(a);
    /* One gone, the other is whole. */
    assert_int_equal(oc_server_state(b), OC_SERVER_OFF);
    oc_server_free(b);
    http_free_client(http);
    oc_models_free(models);
    /* Every handle they made closes. */
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_two_servers)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
