#define _GNU_SOURCE
#include "proc.h"

#include "sandbox.h"

#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <grp.h>
#include <dirent.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sched.h>
#include <sys/mman.h>
#include <linux/capability.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

typedef struct proc_watch_ent {
    pid_t pid;
    proc_exit_fn fn;
    void *ctx;
} proc_watch_ent_t;

static proc_watch_ent_t *watch;
static size_t nwatch, capwatch;

/* close_range(2)'s flag (Linux 5.11; older kernels refuse it, and the descriptors stay as before). */
#define PROC_CLOSE_RANGE_CLOEXEC (1U << 2)

/* What the child was doing when it failed, reported with errno through the pipe. */
enum { PROC_STAGE_EXEC = 0, PROC_STAGE_SETUP = 1, PROC_STAGE_CHDIR = 2, PROC_STAGE_USER = 3, PROC_STAGE_SANDBOX = 4 };

__attribute__((noreturn)) static void proc_child_fail(int fd, int err)
{
    ssize_t r;
    do
        r = write(fd, &err, sizeof err);
    while (r < 0 && errno == EINTR);
    _exit(127);
}

/* Put fd at target in the child; PROC_DEVNULL means /dev/null. */
static int proc_child_dup(int fd, int target)
{
    if (fd < 0) {
        fd = open("/dev/null", O_RDWR | O_CLOEXEC);
        if (fd < 0)
            return -1;
    }
    if (fd == target) {
        int fl = fcntl(fd, F_GETFD);
        return fl < 0 ? -1 : fcntl(fd, F_SETFD, fl & ~FD_CLOEXEC);
    }
    while (dup2(fd, target) < 0)
        if (errno != EINTR)
            return -1;
    return 0;
}

void proc_spec_init(proc_spec_t *spec, const char *file, char *const *argv)
{
    *spec = (proc_spec_t){.file = file, .argv = argv, .cwd_fd = -1, .uid = -1, .gid = -1, .sandbox_fd = -1};
    for (int i = 0; i < PROC_NFDS; i++)
        spec->fd[i] = i < 3 ? PROC_DEVNULL : PROC_NONE;
}

/* Child: place its descriptors (fd[i] becomes i). Every one moves above them all first, so that no
 * dup2 can clobber one still to be placed; the error pipe too. Returns the error pipe's fd. */
static int proc_child_fds(const proc_spec_t *spec, int errfd)
{
    int fds[PROC_NFDS], top = PROC_NFDS;
    for (int i = 0; i < PROC_NFDS; i++) {
        fds[i] = spec->fd[i];
        if (fds[i] >= 0 && fds[i] < PROC_NFDS && fds[i] != i) {
            int nfd = fcntl(fds[i], F_DUPFD_CLOEXEC, top);
            if (nfd < 0)
                proc_child_fail(errfd, errno | PROC_STAGE_SETUP << 16);
            fds[i] = nfd;
        }
    }
    if (errfd < PROC_NFDS) {
        int nfd = fcntl(errfd, F_DUPFD_CLOEXEC, top);
        if (nfd < 0)
            _exit(127);
        errfd = nfd;
    }
    for (int i = 0; i < PROC_NFDS; i++)
        if (fds[i] == PROC_NONE)
            close(i);
        else if (proc_child_dup(fds[i], i) != 0)
            proc_child_fail(errfd, errno | PROC_STAGE_SETUP << 16);
    return errfd;
}

/* Child: its limits, then its user (the limits first: an unprivileged user could not raise them). */
static void proc_child_identity(const proc_spec_t *spec, int errfd)
{
    /* No child of ocpmd needs a capability. A manager given CAP_SETUID and CAP_SETGID as ambient
     * capabilities (an unprivileged ocpmd that may still switch the agent's user) would hand them
     * on through exec to every child, the agent included, whatever user it becomes. EINVAL: a
     * kernel without ambient capabilities, so none to clear. */
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 && errno != EINVAL)
        proc_child_fail(errfd, errno | PROC_STAGE_USER << 16);
    /* Nor the inheritable ones: a program with file capabilities would get them back at exec. */
    struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
    struct __user_cap_data_struct caps[2];
    if (syscall(SYS_capget, &hdr, caps) != 0)
        proc_child_fail(errfd, errno | PROC_STAGE_USER << 16);
    if (caps[0].inheritable || caps[1].inheritable) {
        caps[0].inheritable = caps[1].inheritable = 0;
        if (syscall(SYS_capset, &hdr, caps) != 0)
            proc_child_fail(errfd, errno | PROC_STAGE_USER << 16);
    }
    const struct {
        int res;
        long v;
    } lims[] = {{RLIMIT_AS, spec->rlimit_as},   {RLIMIT_NOFILE, spec->rlimit_nofile}, {RLIMIT_CPU, spec->rlimit_cpu},
                {RLIMIT_NPROC, spec->rlimit_nproc}, {RLIMIT_FSIZE, spec->rlimit_fsize}};
    for (size_t i = 0; i < sizeof lims / sizeof lims[0]; i++) {
        struct rlimit rl = {(rlim_t)lims[i].v, (rlim_t)lims[i].v};
        if (lims[i].v > 0 && setrlimit(lims[i].res, &rl) != 0)
            proc_child_fail(errfd, errno | PROC_STAGE_SETUP << 16);
    }
    /* Raw system calls: libc's wrappers change every thread's credentials, and the child shares the
     * manager's memory and so its list of threads (proc_spawn): they would switch the manager's. */
    if (spec->uid >= 0 && (syscall(SYS_setgroups, 0, NULL) != 0 || syscall(SYS_setresgid, spec->gid, spec->gid, spec->gid) != 0 ||
                           syscall(SYS_setresuid, spec->uid, spec->uid, spec->uid) != 0))
        proc_child_fail(errfd, errno | PROC_STAGE_USER << 16);
}

/* Child: from fork to exec. Async-signal-safe calls only; a failure is written to errfd (its
 * stage and errno) before _exit. */
static void proc_child(const proc_spec_t *spec, int errfd, pid_t parent)
{
    sigset_t mask;
    sigemptyset(&mask);
    for (int s = 1; s < NSIG; s++)
        if (s != SIGKILL && s != SIGSTOP)
            signal(s, SIG_DFL);
    for (int i = 0; i < spec->nblocked; i++)
        sigaddset(&mask, spec->blocked[i]);
    sigprocmask(SIG_SETMASK, &mask, NULL);
    if (spec->new_pgroup && setpgid(0, 0) != 0)
        proc_child_fail(errfd, errno | PROC_STAGE_SETUP << 16);
    errfd = proc_child_fds(spec, errfd);
    /* Nothing but its own descriptors reaches the program: libraries of the manager's open some
     * without close-on-exec (libcurl's wake-up socket pair). The error pipe is close-on-exec too. */
    syscall(SYS_close_range, PROC_NFDS, ~0U, PROC_CLOSE_RANGE_CLOEXEC);
    proc_child_identity(spec, errfd);
    /* After the switch of user: a change of credentials clears the parent-death signal. */
    if (spec->pdeathsig) {
        if (prctl(PR_SET_PDEATHSIG, spec->pdeathsig) != 0)
            proc_child_fail(errfd, errno | PROC_STAGE_SETUP << 16);
        if (getppid() != parent) /* the parent died before prctl */
            _exit(127);
    }
    if ((spec->cwd_fd >= 0 && fchdir(spec->cwd_fd) != 0) || (spec->cwd_fd < 0 && spec->cwd && chdir(spec->cwd) != 0))
        proc_child_fail(errfd, errno | PROC_STAGE_CHDIR << 16);
    if (spec->sandbox_fd >= 0 && sandbox_enter(spec->sandbox_fd) != 0)
        proc_child_fail(errfd, errno | PROC_STAGE_SANDBOX << 16);
    if (spec->envp)
        execvpe(spec->file, spec->argv, spec->envp);
    else
        execvp(spec->file, spec->argv);
    proc_child_fail(errfd, errno);
}

/* Why the child never ran: its stage, said for the log. */
static void proc_spawn_error(const proc_spec_t *spec, int child_err, char *err, size_t errlen)
{
    int stage = child_err >> 16, e = child_err & 0xffff;
    switch (stage) {
    case PROC_STAGE_CHDIR:
        snprintf(err, errlen, "cannot enter %s: %s", spec->cwd ? spec->cwd : "its directory", strerror(e));
        break;
    case PROC_STAGE_USER:
        snprintf(err, errlen, "cannot switch to uid %ld gid %ld for %s: %s", spec->uid, spec->gid, spec->file,
                 strerror(e));
        break;
    case PROC_STAGE_SANDBOX:
        snprintf(err, errlen, "cannot enter the sandbox for %s: %s", spec->file, strerror(e));
        break;
    case PROC_STAGE_SETUP:
        snprintf(err, errlen, "cannot set up the child for %s: %s", spec->file, strerror(e));
        break;
    default:
        snprintf(err, errlen, "cannot execute %s: %s", spec->file, strerror(e));
    }
}


/* The child runs in the manager's memory on a stack of its own, and the manager waits until it has
 * called exec (CLONE_VM | CLONE_VFORK, as posix_spawn does): no copy of the manager's page tables,
 * no copy-on-write faults on either side. So the child only makes system calls (no malloc, no lock
 * another thread may hold) and every signal stays blocked until it has reset their handlers. Under
 * AddressSanitizer, which cannot follow a child on a foreign stack, it is an ordinary fork. */
#define PROC_CHILD_STACK (256 * 1024)

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define PROC_ASAN 1 /* clang says so this way, gcc by __SANITIZE_ADDRESS__ */
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) || defined(PROC_ASAN)
static pid_t proc_clone(const proc_spec_t *spec, int errfd)
{
    pid_t parent = getpid(), pid = fork();
    if (pid == 0)
        proc_child(spec, errfd, parent);
    return pid;
}
#else
typedef struct proc_child_arg {
    const proc_spec_t *spec;
    int errfd;
    pid_t parent;
} proc_child_arg_t;

static int proc_child_main(void *arg)
{
    const proc_child_arg_t *a = arg;
    proc_child(a->spec, a->errfd, a->parent);
    return 127;
}

static pid_t proc_clone(const proc_spec_t *spec, int errfd)
{
    proc_child_arg_t arg = {spec, errfd, getpid()};
    char *stack = mmap(NULL, PROC_CHILD_STACK, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (stack == MAP_FAILED)
        return -1;
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pid_t pid = clone(proc_child_main, stack + PROC_CHILD_STACK, CLONE_VM | CLONE_VFORK | SIGCHLD, &arg);
    int e = errno;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    munmap(stack, PROC_CHILD_STACK);
    /* A child that switched users cleared the dumpable flag of the memory it shared with us (the
     * kernel's guard against tracing it before exec); it has exec'd now: ours again. */
    if (spec->uid >= 0)
        prctl(PR_SET_DUMPABLE, 1);
    errno = e;
    return pid;
}
#endif

pid_t proc_spawn(const proc_spec_t *spec, char *err, size_t errlen)
{
    int pfd[2];
    if (pipe2(pfd, O_CLOEXEC) != 0) {
        snprintf(err, errlen, "pipe: %s", strerror(errno));
        return -1;
    }
    pid_t pid = proc_clone(spec, pfd[1]);
    if (pid < 0) {
        snprintf(err, errlen, "clone: %s", strerror(errno));
        close(pfd[0]);
        close(pfd[1]);
        return -1;
    }
    close(pfd[1]);
    /* The error pipe closes at exec (O_CLOEXEC): nothing read means the child runs. */
    int child_err = 0;
    ssize_t r;
    do
        r = read(pfd[0], &child_err, sizeof child_err);
    while (r < 0 && errno == EINTR);
    close(pfd[0]);
    if (r != (ssize_t)sizeof child_err)
        return pid;
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    proc_spawn_error(spec, child_err, err, errlen);
    return -1;
}

int proc_watch(pid_t pid, proc_exit_fn fn, void *ctx)
{
    if (nwatch == capwatch) {
        size_t cap = capwatch ? capwatch * 2 : 16;
        proc_watch_ent_t *n = realloc(watch, cap * sizeof *n);
        if (!n)
            return -1;
        watch = n;
        capwatch = cap;
    }
    watch[nwatch++] = (proc_watch_ent_t){pid, fn, ctx};
    return 0;
}

static proc_watch_ent_t *proc_watched(pid_t pid)
{
    for (size_t i = 0; i < nwatch; i++)
        if (watch[i].pid == pid)
            return &watch[i];
    return NULL;
}

void proc_unwatch(pid_t pid)
{
    proc_watch_ent_t *w = proc_watched(pid);
    if (w) {
        w->fn = NULL;
        w->ctx = NULL;
    }
}

void proc_reap(void)
{
    for (;;) {
        /* Which child is done (without reaping it), so a watched one is reaped with its rusage. */
        siginfo_t si = {0};
        if (waitid(P_ALL, 0, &si, WEXITED | WNOHANG | WNOWAIT) != 0) {
            if (errno == EINTR)
                continue;
            break; /* ECHILD: no child at all */
        }
        if (si.si_pid == 0)
            break;
        int status = 0;
        struct rusage ru;
        proc_watch_ent_t *w = proc_watched(si.si_pid);
        pid_t r = wait4(si.si_pid, &status, 0, &ru);
        if (r < 0 && errno == EINTR)
            continue;
        if (!w)
            continue; /* adopted and ended: reaped, nothing to tell */
        proc_watch_ent_t e = *w;
        *w = watch[--nwatch];
        if (r < 0) /* ECHILD: someone else reaped it; report a vanished child */
            status = -1, memset(&ru, 0, sizeof ru);
        if (e.fn)
            e.fn(e.ctx, e.pid, status, &ru);
    }
    if (nwatch == 0) {
        free(watch);
        watch = NULL;
        capwatch = 0;
    }
}

int proc_become_subreaper(void) { return prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0 ? 0 : -1; }

/* Parent and process group of pid from /proc/PID/stat (after the command, which may hold spaces
 * or parentheses: the last ')' ends it). Returns 0 or -1. */
static int proc_stat_ids(pid_t pid, pid_t *ppid, pid_t *pgrp)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%ld/stat", (long)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return -1;
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    char state;
    long pp, pg;
    if (!p || sscanf(p + 1, " %c %ld %ld", &state, &pp, &pg) != 3)
        return -1;
    *ppid = (pid_t)pp;
    *pgrp = (pid_t)pg;
    return 0;
}

int proc_sweep(void)
{
    DIR *d = opendir("/proc");
    if (!d)
        return 0;
    pid_t self = getpid();
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        char *end;
        long pid = strtol(de->d_name, &end, 10);
        pid_t ppid, pgrp;
        if (*end || pid <= 1 || proc_stat_ids((pid_t)pid, &ppid, &pgrp) != 0 || ppid != self ||
            proc_watched((pid_t)pid))
            continue;
        kill(pgrp == pid ? -(pid_t)pid : (pid_t)pid, SIGKILL);
        n++;
    }
    closedir(d);
    return n;
}

int proc_kill_group(pid_t pgid, int sig)
{
    if (pgid <= 1)
        return -1;
    if (kill(-pgid, sig) != 0 && errno != ESRCH)
        return -1;
    return 0;
}

static int proc_env_allowed(const char *entry, const char *patterns)
{
    const char *eq = strchr(entry, '=');
    if (!eq || eq == entry)
        return 0;
    char name[256];
    size_t n = (size_t)(eq - entry);
    if (n >= sizeof name)
        return 0;
    memcpy(name, entry, n);
    name[n] = '\0';
    const char *p = patterns;
    while (*p) {
        while (*p == ' ' || *p == ',')
            p++;
        const char *e = p;
        while (*e && *e != ' ' && *e != ',')
            e++;
        if (e > p) {
            char pat[128];
            size_t pl = (size_t)(e - p) < sizeof pat - 1 ? (size_t)(e - p) : sizeof pat - 1;
            memcpy(pat, p, pl);
            pat[pl] = '\0';
            if (fnmatch(pat, name, 0) == 0)
                return 1;
        }
        p = e;
    }
    return 0;
}

char **proc_env_filter(char *const *envp, const char *patterns)
{
    size_t n = 0;
    while (envp && envp[n])
        n++;
    char **out = calloc(n + 1, sizeof *out);
    if (!out)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < n; i++)
        if (proc_env_allowed(envp[i], patterns)) {
            out[o] = strdup(envp[i]);
            if (!out[o]) {
                proc_env_free(out);
                return NULL;
            }
            o++;
        }
    return out;
}

void proc_env_free(char **env)
{
    if (!env)
        return;
    for (char **p = env; *p; p++)
        free(*p);
    free(env);
}

static long proc_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

int proc_run_capture(const proc_spec_t *base, int timeout_ms, char *out, size_t outlen, char *err, size_t errlen)
{
    int p[2];
    snprintf(err, errlen, "timed out");
    if (pipe2(p, O_CLOEXEC) != 0) {
        snprintf(err, errlen, "pipe: %s", strerror(errno));
        return -1;
    }
    proc_spec_t spec = *base;
    spec.fd[0] = spec.fd[2] = PROC_DEVNULL;
    spec.fd[1] = p[1];
    spec.new_pgroup = 1;
    spec.pdeathsig = SIGKILL;
    pid_t pid = proc_spawn(&spec, err, errlen);
    close(p[1]);
    if (pid < 0) {
        close(p[0]);
        return -1;
    }
    size_t used = 0;
    long deadline = proc_now_ms() + timeout_ms;
    int timed_out = 0;
    for (;;) {
        long left = deadline - proc_now_ms();
        if (left <= 0) {
            timed_out = 1;
            break;
        }
        struct pollfd pf = {.fd = p[0], .events = POLLIN};
        int pr = poll(&pf, 1, (int)left);
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr <= 0) {
            timed_out = pr == 0;
            break;
        }
        char buf[4096];
        ssize_t r = read(p[0], buf, sizeof buf);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        size_t take = (size_t)r < outlen - 1 - used ? (size_t)r : outlen - 1 - used;
        memcpy(out + used, buf, take);
        used += take;
    }
    out[used] = '\0';
    close(p[0]);
    if (timed_out)
        proc_kill_group(pid, SIGKILL);
    int st = -1;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    proc_kill_group(pid, SIGKILL); /* leftovers of the probe's group */
    return timed_out ? -1 : st;
}
