/* Unit tests for the published snapshot (snapshot.h): nothing before the first publication, a
 * document as put, stale means ask the manager, live fields written over with the in-flight
 * page's counts, a body too large for its room not published, and readers racing a writer never
 * see a torn document. */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "inflight.h"
#include "snapshot.h"

static int fd = -1, inflight_fd = -1;

static int setup(void **state)
{
    (void)state;
    inflight_fd = inflight_create(2);
    fd = snapshot_create();
    return fd >= 0 && inflight_fd >= 0 ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    snapshot_detach();
    inflight_detach();
    close(fd);
    close(inflight_fd);
    return 0;
}

static void test_put_get_stale(void **state)
{
    (void)state;
    int st;
    char ct[64], *b;
    size_t n;
    assert_int_equal(snapshot_get(SNAPSHOT_STATUS, &st, ct, sizeof ct, &b, &n), -1); /* nothing yet */
    snapshot_put(SNAPSHOT_HEALTH, 503, "application/json", "{\"status\":\"stopping\"}\n", 22, NULL, 0);
    assert_int_equal(snapshot_get(SNAPSHOT_HEALTH, &st, ct, sizeof ct, &b, &n), -1); /* still stale */
    snapshot_fresh(SNAPSHOT_HEALTH);
    assert_int_equal(snapshot_get(SNAPSHOT_HEALTH, &st, ct, sizeof ct, &b, &n), 0);
    assert_int_equal(st, 503);
    assert_string_equal(ct, "application/json");
    assert_int_equal(n, 22);
    assert_string_equal(b, "{\"status\":\"stopping\"}\n");
    free(b);
    snapshot_fresh(SNAPSHOT_METRICS);
    assert_int_equal(snapshot_get(SNAPSHOT_METRICS, &st, ct, sizeof ct, &b, &n), -1); /* never put */
    snapshot_stale();
    assert_true(snapshot_is_stale(SNAPSHOT_HEALTH));
    assert_int_equal(snapshot_get(SNAPSHOT_HEALTH, &st, ct, sizeof ct, &b, &n), -1);
    snapshot_fresh(SNAPSHOT_STATUS); /* one document fresh: the others stay stale */
    assert_int_equal(snapshot_get(SNAPSHOT_HEALTH, &st, ct, sizeof ct, &b, &n), -1);
    snapshot_fresh(SNAPSHOT_HEALTH);
    assert_int_equal(snapshot_get(SNAPSHOT_HEALTH, &st, ct, sizeof ct, &b, &n), 0);
    free(b);
    assert_int_equal(snapshot_get(-1, &st, ct, sizeof ct, &b, &n), -1);
    assert_int_equal(snapshot_get(SNAPSHOT_DOCS, &st, ct, sizeof ct, &b, &n), -1);
}

static void test_too_large(void **state)
{
    (void)state;
    size_t big = 1024 * 1024;
    char *x = malloc(big);
    assert_non_null(x);
    memset(x, 'x', big);
    snapshot_put(SNAPSHOT_HEALTH, 200, "text/plain", x, big, NULL, 0);
    snapshot_fresh(SNAPSHOT_HEALTH);
    int st;
    char ct[64], *b;
    size_t n;
    assert_int_equal(snapshot_get(SNAPSHOT_HEALTH, &st, ct, sizeof ct, &b, &n), -1);
    free(x);
}

static void test_live_fields(void **state)
{
    (void)state;
    /* {"inFlight":<20>,"refused":<20>} */
    char doc[128];
    int at1 = (int)strlen("{\"inFlight\":");
    snprintf(doc, sizeof doc, "{\"inFlight\":%20d,\"refused\":%20d}", 0, 7);
    int at2 = at1 + 20 + (int)strlen(",\"refused\":");
    snapshot_live_t live[] = {{(size_t)at1, SNAPSHOT_LIVE_INFLIGHT, 0}, {(size_t)at2, SNAPSHOT_LIVE_REFUSED, 5}};
    snapshot_put(SNAPSHOT_STATUS, 200, "application/json", doc, strlen(doc), live, 2);
    snapshot_fresh(SNAPSHOT_STATUS);
    assert_int_equal(inflight_enter(0, 10), 0);
    assert_int_equal(inflight_enter(1, 10), 0);
    assert_int_equal(inflight_enter(1, 2), -1); /* refused: counted */
    int st;
    char ct[64], *b;
    size_t n;
    assert_int_equal(snapshot_get(SNAPSHOT_STATUS, &st, ct, sizeof ct, &b, &n), 0);
    char want[128];
    snprintf(want, sizeof want, "{\"inFlight\":%20d,\"refused\":%20d}", 2, 6);
    assert_string_equal(b, want);
    free(b);
    inflight_leave(0, 0);
    inflight_leave(1, 0);
    /* A live field past the body's end: the document is not published. */
    snapshot_live_t bad = {strlen(doc) - 5, SNAPSHOT_LIVE_INFLIGHT, 0};
    snapshot_put(SNAPSHOT_STATUS, 200, "application/json", doc, strlen(doc), &bad, 1);
    assert_int_equal(snapshot_get(SNAPSHOT_STATUS, &st, ct, sizeof ct, &b, &n), -1);
}

/* A writer puts documents "k k k ... k" (one k over every byte) of changing lengths; readers must
 * only ever read whole ones. */
static atomic_int stop, torn, reads;

static void *reader(void *arg)
{
    (void)arg;
    while (!atomic_load(&stop)) {
        int st;
        char ct[64], *b;
        size_t n;
        if (snapshot_get(SNAPSHOT_METRICS, &st, ct, sizeof ct, &b, &n) != 0)
            continue;
        atomic_fetch_add(&reads, 1);
        for (size_t i = 1; i < n; i++)
            if (b[i] != b[0])
                atomic_fetch_add(&torn, 1);
        if (n != (size_t)(1000 + (b[0] - 'a') * 97) || st != 200 + (b[0] - 'a'))
            atomic_fetch_add(&torn, 1);
        free(b);
    }
    return NULL;
}

static void test_no_torn_reads(void **state)
{
    (void)state;
    pthread_t th[3];
    for (int i = 0; i < 3; i++)
        assert_int_equal(pthread_create(&th[i], NULL, reader, NULL), 0);
    char buf[4096];
    /* Until the readers have read a few hundred documents (however the threads are scheduled:
     * valgrind runs one at a time), with a deadline. */
    time_t deadline = time(NULL) + 60;
    for (int k = 0; (k < 20000 || atomic_load(&reads) < 300) && time(NULL) < deadline; k++) {
        int c = k % 26;
        size_t n = 1000 + (size_t)c * 97;
        memset(buf, 'a' + c, n);
        snapshot_put(SNAPSHOT_METRICS, 200 + c, "text/plain", buf, n, NULL, 0);
        snapshot_fresh(SNAPSHOT_METRICS);
        if (k % 64 == 0)
            sched_yield();
    }
    atomic_store(&stop, 1);
    for (int i = 0; i < 3; i++)
        pthread_join(th[i], NULL);
    assert_int_equal(atomic_load(&torn), 0);
    assert_true(atomic_load(&reads) >= 300);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_put_get_stale),
        cmocka_unit_test(test_too_large),
        cmocka_unit_test(test_live_fields),
        cmocka_unit_test(test_no_torn_reads),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
