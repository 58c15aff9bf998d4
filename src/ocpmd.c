/* ocpmd: the OpenCode process manager.
 *
 *   ocpmd [-c FILE] [-t] [-T] [-v] [-h]
 *   ocpmd --responder ...   (internal: a FastCGI responder the manager starts)
 *
 * Only this file decides to exit. */
#define _GNU_SOURCE
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent.h"
#include "api.h"
#include "conf.h"
#include "log.h"
#include "manager.h"
#include "responder.h"


/* Is one of a and b the other, or inside it? */
static int paths_overlap(const char *a, const char *b)
{
    size_t na = strlen(a), nb = strlen(b), n = na < nb ? na : nb;
    return strncmp(a, b, n) == 0 && (na == nb || (na < nb ? b[n] : a[n]) == '/');
}

/* Each pool's settings and agent (its user resolved, its paths where that user can reach them).
 * Two pools never share an agent user: their agents could read each other's workspaces. Returns
 * how many, or -1 with err. */
static int setup_pools(const conf_t *conf, conf_t **pools, agent_t **agents, char *err, size_t errlen)
{
    int n = conf_npools(conf);
    for (int i = 0; i < n; i++) {
        char why[768];
        if (!(pools[i] = malloc(sizeof *pools[i])))
            return snprintf(err, errlen, "out of memory"), -1;
        if (conf_pool(conf, i, pools[i], err, errlen) != 0)
            return -1;
        if (!(agents[i] = agent_setup(pools[i], why, sizeof why))) {
            if (conf->nsections)
                snprintf(err, errlen, "pool %s: %s", pools[i]->pool_name, why);
            else
                snprintf(err, errlen, "%s", why);
            return -1;
        }
        if (conf->nsections && !agent_separate(agents[i]))
            return snprintf(err, errlen, "pool %s: its agent would run as ocpmd's own user (agent_user = self, or ocpmd "
                                         "cannot switch users), which reaches every pool: pools need agents of users "
                                         "of their own (run ocpmd as root)", pools[i]->pool_name), -1;
        if (pools[i]->env_file[0] && tenant_check_env_file(pools[i]->env_file, why, sizeof why) != 0)
            return snprintf(err, errlen, "pool %s: %s", pools[i]->pool_name, why), -1;
        for (int j = 0; j < i; j++) {
            if (agent_uid(agents[i]) == agent_uid(agents[j]))
                return snprintf(err, errlen, "pools %s and %s run as the same agent user: their agents could read "
                                             "each other's workspaces (give each its own user)",
                                pools[j]->pool_name, pools[i]->pool_name), -1;
            const char *clash = paths_overlap(pools[i]->workspace_root, pools[j]->workspace_root) ? "workspace_root"
                                : paths_overlap(pools[i]->agent_home, pools[j]->agent_home)   ? "agent_home"
                                                                                                : NULL;
            if (clash)
                return snprintf(err, errlen, "pools %s and %s share their %s (or one holds the other's): pools never "
                                             "share files", pools[j]->pool_name, pools[i]->pool_name, clash), -1;
        }
    }
    return n;
}

/* The settings, read and checked whole: the built-in defaults, the file, the environment, each
 * pool and its agent. The same at start and at each reload (ctx: the file, or NULL). */
static int load_settings(void *ctx, manager_settings_t *out, char *err, size_t errlen)
{
    const char *file = ctx;
    memset(out, 0, sizeof *out);
    if (!(out->conf = malloc(sizeof *out->conf)))
        return snprintf(err, errlen, "out of memory"), -1;
    conf_defaults(out->conf);
    if ((file && *file && conf_load_file(out->conf, file, err, errlen) != 0) ||
        conf_load_env(out->conf, err, errlen) != 0 || conf_finish(out->conf, err, errlen) != 0)
        return -1;
    out->npools = setup_pools(out->conf, out->pools, out->agents, err, errlen);
    return out->npools < 0 ? -1 : 0;
}

static void unload_settings(void *ctx, manager_settings_t *s)
{
    (void)ctx;
    for (int i = 0; i < CONF_POOLS_MAX; i++) {
        agent_free(s->agents[i]);
        free(s->pools[i]);
    }
    free(s->conf);
    memset(s, 0, sizeof *s);
}

/* -T: every setting's effective value, then each pool's that differ from the global ones. */
static void dump_settings(const conf_t *conf, conf_t *const *pools, int npools)
{
    static char buf[16384], pbuf[16384];
    conf_dump(conf, buf, sizeof buf);
    fputs(buf, stdout);
    for (int i = 0; conf->nsections && i < npools; i++) {
        printf("\n[%s]\n", pools[i]->pool_name);
        conf_dump(pools[i], pbuf, sizeof pbuf);
        for (char *line = strtok(pbuf, "\n"); line; line = strtok(NULL, "\n")) {
            char key[128];
            snprintf(key, sizeof key, "%.*s", (int)strcspn(line, " "), line);
            if (conf_is_pool_key(key) && !strstr(buf, line))
                printf("%s\n", line);
        }
    }
}

/* Log, then run the manager until it stops. */
static int serve(manager_settings_t *settings, const char *file)
{
    const conf_t *conf = settings->conf;
    log_level_t lvl = LOGL_INFO;
    log_level_parse(conf->log_level, &lvl);
    log_set_level(lvl);
    int rc = log_open(conf->log_file);
    if (rc != 0) {
        fprintf(stderr, "ocpmd: cannot open log_file %s: %s\n", conf->log_file, strerror(-rc));
        return 1;
    }
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) {
        fprintf(stderr, "ocpmd: cannot find its own binary\n");
        return 1;
    }
    exe[n] = '\0';
    manager_hooks_t hooks = {.dispatch = api_dispatch, .publish = api_publish, .load = load_settings,
                             .unload = unload_settings, .ctx = (void *)file};
    rc = manager_run(settings, exe, &hooks);
    log_close();
    return rc;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: ocpmd [-c FILE] [-t] [-T] [-v] [-h]\n"
            "  -c FILE  read settings from FILE (key = value); default $OCPM_CONFIG if set\n"
            "  -t       check the settings and exit (0 when valid)\n"
            "  -T       check, then print every setting with its effective value\n"
            "  -v       print the version and exit\n"
            "Every setting can also be given as OCPM_<KEY> in the environment.\n");
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--responder") == 0) {
        /* Started by the manager (pool.h): its settings are on fd 4, not in argv. */
        char *end = NULL;
        long index = argc == 3 ? strtol(argv[2], &end, 10) : -1;
        if (index < 0 || !end || *end) {
            log_set_component("responder");
            log_error("bad responder arguments", "expected=%s", log_q("--responder INDEX"));
            return 78;
        }
        return responder_main((int)index, 4);
    }
    const char *file = getenv("OCPM_CONFIG");
    int test = 0, dump = 0, opt;
    while ((opt = getopt(argc, argv, "c:tTvh")) != -1) {
        switch (opt) {
        case 'c':
            file = optarg;
            break;
        case 't':
            test = 1;
            break;
        case 'T':
            test = dump = 1;
            break;
        case 'v':
            printf("ocpmd %s\n", OCPM_VERSION);
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        usage(stderr);
        return 2;
    }
    char err[1024];
    manager_settings_t settings;
    if (load_settings((void *)file, &settings, err, sizeof err) != 0) {
        fprintf(stderr, "ocpmd: configuration error: %s\n", err);
        if (test)
            fprintf(stderr, "ocpmd: configuration %s test failed\n", file && *file ? file : "(defaults)");
        unload_settings(NULL, &settings);
        return 1;
    }
    if (test) {
        if (dump)
            dump_settings(settings.conf, settings.pools, settings.npools);
        fprintf(stderr, "ocpmd: configuration %s test is successful\n", file && *file ? file : "(defaults)");
        unload_settings(NULL, &settings);
        return 0;
    }
    int rc = serve(&settings, file);
    unload_settings(NULL, &settings);
    return rc;
}
