#define _GNU_SOURCE
#include "agent_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "sandbox.h"
#include "sha256.h"

#ifndef OCPM_AGENT_FALLBACK_DIR
#define OCPM_AGENT_FALLBACK_DIR "/var/lib/ocpm-agent"
#endif
/* The operator's OPENCODE_CONFIG is copied for the agent; larger files are refused. */
#define AGENT_CONFIG_MAX (1L << 20)
#define AGENT_GROUPS_MAX 256

/* Variables ocpm sets for the agent itself; the operator's values never pass. */
static const char *const agent_own_vars[] = {
    "HOME", "USER", "LOGNAME", "TMPDIR", "XDG_DATA_HOME", "XDG_CONFIG_HOME", "XDG_CACHE_HOME",
    "XDG_STATE_HOME", "XDG_RUNTIME_DIR", "OPENCODE_CONFIG",
};

int agent_separate(const agent_t *a) { return a->switching; }
uid_t agent_uid(const agent_t *a) { return a->uid; }
gid_t agent_gid(const agent_t *a) { return a->gid; }

/* Root, or both capabilities a switch of user needs (CAP_SETGID = 6, CAP_SETUID = 7). */
static int agent_can_switch(void)
{
    if (geteuid() == 0)
        return 1;
    FILE *f = fopen("/proc/self/status", "re");
    if (!f)
        return 0;
    char line[256];
    unsigned long long caps = 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "CapEff: %llx", &caps) == 1)
            break;
    fclose(f);
    return (caps & (1ULL << 6)) && (caps & (1ULL << 7));
}

void agent_owner_dir(const char *owner, char *out, size_t outlen)
{
    if (!*owner) {
        snprintf(out, outlen, "@anonymous");
        return;
    }
    size_t n = strlen(owner);
    int plain = n <= 64 && owner[0] != '.' && owner[0] != '-' &&
                strspn(owner, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-") == n;
    if (plain) {
        snprintf(out, outlen, "%s", owner);
        return;
    }
    char hex[65];
    sha256_hex(owner, n, hex);
    snprintf(out, outlen, "@%.32s", hex);
}

/* May the agent (uid, gid, groups) search directory st? */
static int agent_may_search(const struct stat *st, uid_t uid, const gid_t *groups, int ngroups)
{
    if (st->st_uid == uid)
        return (st->st_mode & S_IXUSR) != 0;
    for (int i = 0; i < ngroups; i++)
        if (st->st_gid == groups[i])
            return (st->st_mode & S_IXGRP) != 0;
    return (st->st_mode & S_IXOTH) != 0;
}

/* Can the agent walk down to dir? Checks every existing ancestor of dir (dir itself is ocpm's to
 * set up). Returns 1, or 0 with the first ancestor it cannot pass in *blocker. */
static int agent_reaches(const char *dir, uid_t uid, const gid_t *groups, int ngroups, char *blocker, size_t blen)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s", dir);
    for (char *p = path + 1; (p = strchr(p, '/')); p++) {
        *p = '\0';
        struct stat st;
        int ok = stat(path, &st) != 0 || agent_may_search(&st, uid, groups, ngroups);
        if (!ok) {
            snprintf(blocker, blen, "%s", path);
            return 0;
        }
        *p = '/';
    }
    struct stat st;
    if (stat("/", &st) == 0 && !agent_may_search(&st, uid, groups, ngroups)) {
        snprintf(blocker, blen, "/");
        return 0;
    }
    return 1;
}

/* Move the derived agent paths out of a state_dir the agent cannot reach. */
static int agent_relocate(const agent_t *a, conf_t *c, const gid_t *groups, int ngroups, char *err, size_t errlen)
{
    unsigned movable = c->derived & (CONF_DERIVED_WORKSPACE_ROOT | CONF_DERIVED_AGENT_HOME);
    char blocker[PATH_MAX];
    if (!movable || agent_reaches(c->state_dir, a->uid, groups, ngroups, blocker, sizeof blocker))
        return 0;
    char real[PATH_MAX], hex[65], base[PATH_MAX];
    if (!realpath(c->state_dir, real))
        snprintf(real, sizeof real, "%s", c->state_dir);
    sha256_hex(real, strlen(real), hex);
    /* Each pool its own place (the default pool, or the only one, where it always was). */
    if (c->pool_name[0] && strcmp(c->pool_name, "default") != 0)
        snprintf(base, sizeof base, "%s/%.16s/pools/%s", OCPM_AGENT_FALLBACK_DIR, hex, c->pool_name);
    else
        snprintf(base, sizeof base, "%s/%.16s", OCPM_AGENT_FALLBACK_DIR, hex);
    if (movable & CONF_DERIVED_WORKSPACE_ROOT &&
        (size_t)snprintf(c->workspace_root, sizeof c->workspace_root, "%s/workspaces", base) >= sizeof c->workspace_root) {
        snprintf(err, errlen, "fallback workspace_root too long");
        return -1;
    }
    if (movable & CONF_DERIVED_AGENT_HOME &&
        (size_t)snprintf(c->agent_home, sizeof c->agent_home, "%s/agent", base) >= sizeof c->agent_home) {
        snprintf(err, errlen, "fallback agent_home too long");
        return -1;
    }
    log_info("agent files moved where the agent user can reach them",
             "state_dir=%s blocked_at=%s workspace_root=%s agent_home=%s", log_q(c->state_dir), log_q(blocker),
             log_q(c->workspace_root), log_q(c->agent_home));
    return 0;
}

/* The agent must never be in the FastCGI socket's group (it would speak to the pool as anyone). */
static int agent_check_socket_group(const agent_t *a, const conf_t *c, const gid_t *groups, int ngroups, char *err, size_t errlen)
{
    gid_t sg = getegid();
    if (c->fcgi_socket_group[0]) {
        struct group *g = getgrnam(c->fcgi_socket_group);
        if (!g) {
            snprintf(err, errlen, "fcgi_socket_group %s does not exist", c->fcgi_socket_group);
            return -1;
        }
        sg = g->gr_gid;
    }
    if (!a->switching)
        return 0;
    for (int i = 0; i < ngroups; i++)
        if (groups[i] == sg) {
            snprintf(err, errlen, "agent user %s is in the FastCGI socket's group (gid %ld): it could reach the pool",
                     a->name, (long)sg);
            return -1;
        }
    return 0;
}

int agent_check_fcgi_group(const agent_t *a, const conf_t *c, char *err, size_t errlen)
{
    gid_t groups[AGENT_GROUPS_MAX];
    int ngroups = AGENT_GROUPS_MAX - 1;
    if (getgrouplist(a->name, a->gid, groups, &ngroups) < 0)
        ngroups = 0;
    /* The child drops supplementary groups: it holds only a->gid, whatever /etc/group says. The
     * membership check still uses the list, so a configuration that would be wrong elsewhere is
     * refused here too. */
    groups[ngroups++] = a->gid;
    return agent_check_socket_group(a, c, groups, ngroups, err, errlen);
}

/* Who the agent of c is (agent_setup). */
static int agent_resolve(agent_t *a, conf_t *c, char *err, size_t errlen)
{
    a->conf = c;
    int can = agent_can_switch();
    const char *name = c->agent_user[0] ? c->agent_user : can ? CONF_AGENT_USER_DEFAULT : "self";
    if (strcmp(name, "self") == 0) {
        a->switching = 0;
        a->uid = geteuid();
        a->gid = getegid();
        struct passwd *pw = getpwuid(a->uid);
        snprintf(a->name, sizeof a->name, "%s", pw ? pw->pw_name : "self");
        a->why_self = c->agent_user[0] ? "configured" : "cannot switch";
        return 0;
    }
    struct passwd *pw = getpwnam(name);
    if (!pw) {
        snprintf(err, errlen,
                 "agent_user %s does not exist (scripts/setup creates it: useradd --system --home-dir /nonexistent "
                 "--shell /usr/sbin/nologin %s)", name, name);
        return -1;
    }
    if (pw->pw_uid == 0) {
        snprintf(err, errlen, "agent_user %s is root: the agent never runs as root", name);
        return -1;
    }
    if (pw->pw_uid == geteuid()) {
        snprintf(err, errlen, "agent_user %s is ocpmd's own user; say agent_user = self if that is meant", name);
        return -1;
    }
    if (!can) {
        snprintf(err, errlen,
                 "agent_user %s: ocpmd cannot switch users (run it as root, or give it CAP_SETUID and CAP_SETGID); "
                 "agent_user = self runs the agent as ocpmd's own user", name);
        return -1;
    }
    a->switching = 1;
    a->uid = pw->pw_uid;
    a->gid = pw->pw_gid;
    snprintf(a->name, sizeof a->name, "%s", name);
    if (c->agent_group[0]) {
        struct group *g = getgrnam(c->agent_group);
        if (!g) {
            snprintf(err, errlen, "agent_group %s does not exist", c->agent_group);
            return -1;
        }
        a->gid = g->gr_gid;
    }
    if (a->gid == 0) {
        snprintf(err, errlen, "agent_group is root's group: the agent never runs with it");
        return -1;
    }
    if (agent_check_fcgi_group(a, c, err, errlen) != 0)
        return -1;
    gid_t only[1] = {a->gid};
    return agent_relocate(a, c, only, 1, err, errlen);
}

agent_t *agent_setup(conf_t *c, char *err, size_t errlen)
{
    agent_t *a = calloc(1, sizeof *a);
    if (!a) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (agent_resolve(a, c, err, errlen) != 0) {
        free(a);
        return NULL;
    }
    return a;
}

int agent_mkdir(const agent_t *a, const char *path, agent_dir_t who, mode_t mode, const char **why)
{
    if (mkdir(path, mode) != 0 && errno != EEXIST) {
        *why = "cannot create the directory";
        return -1;
    }
    struct stat st;
    if (lstat(path, &st) != 0 || !S_ISDIR(st.st_mode)) {
        *why = "not a directory (or a symlink)";
        return -1;
    }
    uid_t want = who == AGENT_DIR_AGENT ? a->uid : geteuid();
    gid_t wantg = who == AGENT_DIR_OCPM ? getegid() : a->gid;
    if (st.st_uid != want || st.st_gid != wantg) {
        /* Only ocpmd's own directories are handed over; one someone else made is refused. */
        if (st.st_uid != geteuid() || lchown(path, want, wantg) != 0) {
            *why = "owned by another user";
            return -1;
        }
    }
    if ((st.st_mode & 07777) != mode && chmod(path, mode) != 0) {
        *why = "cannot set its mode";
        return -1;
    }
    return 0;
}

/* mkdir -p for ocpmd's own directories above the agent's, searchable by the agent. */
int agent_mkdirs(const char *dir, char *err, size_t errlen)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s", dir);
    for (char *p = path + 1;; p++) {
        char *slash = strchr(p, '/');
        if (slash)
            *slash = '\0';
        if (mkdir(path, 0711) == 0) {
            chmod(path, 0711); /* the manager's umask (077) would leave it closed to the agent */
        } else if (errno != EEXIST) {
            snprintf(err, errlen, "cannot create %s: %s", path, strerror(errno));
            return -1;
        }
        if (!slash)
            return 0;
        *slash = '/';
        p = slash;
    }
}

/* The agent must be able to walk into path from state_dir: give state_dir (ocpm's) search for
 * others when path lies inside it. */
static void agent_open_state_dir(const agent_t *a, const conf_t *c, const char *path)
{
    size_t n = strlen(c->state_dir);
    struct stat st;
    if (!a->switching || strncmp(path, c->state_dir, n) != 0 || path[n] != '/' || stat(c->state_dir, &st) != 0)
        return;
    if (!(st.st_mode & S_IXOTH) && st.st_uid == geteuid())
        chmod(c->state_dir, (st.st_mode & 07777) | S_IXOTH);
}

/* Copy the operator's OPENCODE_CONFIG where the agent may read it (ocpmd reads it as itself). */
static int agent_copy_config(agent_t *a, const char *dir, char *err, size_t errlen)
{
    const char *src = getenv("OPENCODE_CONFIG");
    if (!src || !*src)
        return 0;
    FILE *in = fopen(src, "re");
    if (!in) {
        snprintf(err, errlen, "OPENCODE_CONFIG %s: %s", src, strerror(errno));
        return -1;
    }
    char *buf = malloc(AGENT_CONFIG_MAX + 1);
    size_t n = buf ? fread(buf, 1, AGENT_CONFIG_MAX + 1, in) : 0;
    fclose(in);
    if (!buf || n > AGENT_CONFIG_MAX) {
        free(buf);
        snprintf(err, errlen, "OPENCODE_CONFIG %s: larger than 1 MiB", src);
        return -1;
    }
    snprintf(a->config_copy, sizeof a->config_copy, "%s/operator.json", dir);
    char tmp[PATH_MAX + 8];
    snprintf(tmp, sizeof tmp, "%s.new", a->config_copy);
    unlink(tmp);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, a->switching ? 0640 : 0600);
    int ok = fd >= 0 && write(fd, buf, n) == (ssize_t)n && fchown(fd, geteuid(), a->gid) == 0 &&
             fchmod(fd, a->switching ? 0640 : 0600) == 0;
    if (fd >= 0 && close(fd) != 0)
        ok = 0;
    free(buf);
    if (!ok || rename(tmp, a->config_copy) != 0) {
        snprintf(err, errlen, "cannot copy OPENCODE_CONFIG to %s: %s", a->config_copy, strerror(errno));
        unlink(tmp);
        return -1;
    }
    return 0;
}

/* The directory that holds the opencode binary (symlinks resolved): the agent reads it. */
static void agent_find_opencode(agent_t *a, const conf_t *c)
{
    char found[PATH_MAX] = "";
    if (strchr(c->opencode_bin, '/')) {
        snprintf(found, sizeof found, "%s", c->opencode_bin);
    } else {
        const char *path = getenv("PATH");
        char *copy = strdup(path ? path : "/usr/bin:/bin"), *save = NULL;
        for (char *d = copy ? strtok_r(copy, ":", &save) : NULL; d; d = strtok_r(NULL, ":", &save)) {
            snprintf(found, sizeof found, "%s/%s", d, c->opencode_bin);
            if (access(found, X_OK) == 0)
                break;
            found[0] = '\0';
        }
        free(copy);
    }
    char real[PATH_MAX];
    if (found[0] && realpath(found, real)) {
        char *slash = strrchr(real, '/');
        if (slash && slash != real)
            *slash = '\0';
        snprintf(a->opencode_dir, sizeof a->opencode_dir, "%s", real);
    }
}

static int agent_is_own_var(const char *entry)
{
    for (size_t i = 0; i < sizeof agent_own_vars / sizeof agent_own_vars[0]; i++) {
        size_t n = strlen(agent_own_vars[i]);
        if (strncmp(entry, agent_own_vars[i], n) == 0 && entry[n] == '=')
            return 1;
    }
    return 0;
}

int agent_init(agent_t *a, const conf_t *c, char *const *env, char *err, size_t errlen)
{
    a->conf = c;
    a->sandbox = c->agent_sandbox && sandbox_abi() > 0;
    if (c->agent_sandbox && !a->sandbox)
        log_warn("Landlock is not available in this kernel; the agent runs without a file-system sandbox", NULL);
    if (!a->switching)
        log_warn("the agent runs as ocpmd's own user", "user=%s reason=%s sandbox=%s", a->name,
                 log_q(a->why_self ? a->why_self : ""), a->sandbox ? "landlock" : "off");
    char dir[PATH_MAX + 32];
    const char *why = NULL;
    if (agent_mkdirs(c->agent_home, err, errlen) != 0 || agent_mkdirs(c->workspace_root, err, errlen) != 0)
        return -1;
    agent_open_state_dir(a, c, c->agent_home);
    agent_open_state_dir(a, c, c->workspace_root);
    /* Say now, not at the first message, when the agent cannot walk to its directories. */
    const char *mine[] = {c->agent_home, c->workspace_root};
    for (size_t i = 0; a->switching && i < 2; i++) {
        char blocker[PATH_MAX], sub[PATH_MAX + 2];
        gid_t g[1] = {a->gid};
        snprintf(sub, sizeof sub, "%s/x", mine[i]);
        if (!agent_reaches(sub, a->uid, g, 1, blocker, sizeof blocker)) {
            snprintf(err, errlen, "the agent user %s cannot reach %s: %s is not searchable by it", a->name, mine[i],
                     blocker);
            return -1;
        }
    }
    if (agent_mkdir(a, c->agent_home, AGENT_DIR_OCPM, 0711, &why) != 0 ||
        agent_mkdir(a, c->workspace_root, AGENT_DIR_OCPM, 0711, &why) != 0) {
        snprintf(err, errlen, "agent_home or workspace_root: %s", why);
        return -1;
    }
    /* The configuration: ocpmd's, readable by the agent's group only. */
    static const char *const own[] = {"config", "config/opencode", "users"};
    for (size_t i = 0; i < sizeof own / sizeof own[0]; i++) {
        snprintf(dir, sizeof dir, "%s/%s", c->agent_home, own[i]);
        int users = strcmp(own[i], "users") == 0;
        if (agent_mkdir(a, dir, users ? AGENT_DIR_OCPM : AGENT_DIR_SHARED, users ? 0711 : 0750, &why) != 0) {
            snprintf(err, errlen, "%s: %s", dir, why);
            return -1;
        }
    }
    snprintf(dir, sizeof dir, "%s/config/opencode", c->agent_home);
    if (agent_copy_config(a, dir, err, errlen) != 0)
        return -1;
    agent_find_opencode(a, c);
    size_t n = 0;
    while (env && env[n])
        n++;
    a->base_env = calloc(n + 1, sizeof *a->base_env);
    if (!a->base_env) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (size_t i = 0, o = 0; i < n; i++)
        if (!agent_is_own_var(env[i]) && !(a->base_env[o++] = strdup(env[i]))) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
    log_info("agent ready", "user=%s uid=%ld gid=%ld switching=%s sandbox=%s landlockAbi=%d agent_home=%s", a->name,
             (long)a->uid, (long)a->gid, a->switching ? "yes" : "no", a->sandbox ? "landlock" : "off", sandbox_abi(),
             log_q(c->agent_home));
    return 0;
}

void agent_free(agent_t *a)
{
    if (!a)
        return;
    for (char **p = a->base_env; p && *p; p++)
        free(*p);
    free(a->base_env);
    free(a);
}

json_object *agent_status_json(const agent_t *a)
{
    json_object *o = json_object_new_object();
    json_object_object_add(o, "user", json_object_new_string(a->name));
    json_object_object_add(o, "uid", json_object_new_int64((int64_t)a->uid));
    json_object_object_add(o, "gid", json_object_new_int64((int64_t)a->gid));
    /* The agent runs under a uid of its own (not ocpmd's): ocpm's files and sockets are out of reach. */
    json_object_object_add(o, "separateUser", json_object_new_boolean(a->switching));
    json_object_object_add(o, "sandbox", json_object_new_string(a->sandbox ? "landlock" : "off"));
    json_object_object_add(o, "landlockAbi", json_object_new_int(sandbox_abi()));
    const char *limits = a->switching
                             ? "the agent can reach the network and whatever its user may read; in server mode one "
                               "opencode server serves every user's workspace"
                             : "the agent runs as ocpmd's own user: it can connect to ocpm's sockets (run ocpmd as "
                               "root, or with CAP_SETUID and CAP_SETGID, to give it a user of its own)";
    json_object_object_add(o, "limits", json_object_new_string(limits));
    return o;
}
