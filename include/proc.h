/* proc: starting and reaping child processes without a shell.
 *
 * uv_spawn cannot set a parent-death signal or hand back rusage, so ocpmd
 * forks itself, copying libuv's ideas: the child resets signal dispositions
 * and the mask, reports an exec failure through a close-on-exec pipe, and
 * retries on EINTR. Everything the child needs is built before fork(); after
 * it only async-signal-safe calls run. Children are reaped by pid with
 * wait4(WNOHANG) from the loop (proc_reap, run on SIGCHLD), so rusage (peak
 * RSS, CPU) comes with each exit. */
#ifndef OCPM_PROC_H
#define OCPM_PROC_H

#include <stddef.h>
#include <sys/resource.h>
#include <sys/types.h>

#define PROC_NFDS 6
#define PROC_DEVNULL (-1)
#define PROC_NONE (-2)

typedef struct proc_spec {
    const char *file;   /* looked up in PATH when it has no '/' */
    char *const *argv;
    char *const *envp;  /* NULL: inherit */
    const char *cwd;    /* NULL: inherit */
    int cwd_fd;         /* >= 0: fchdir to it instead (an O_PATH descriptor will do) */
    /* Every descriptor the child gets, by its number: a descriptor of ours (made the child's fd
     * i), PROC_DEVNULL or PROC_NONE (not open in the child). proc_spec_init: 0..2 /dev/null. */
    int fd[PROC_NFDS];
    int new_pgroup;     /* setpgid(0, 0): the child leads its own group */
    /* Signals the child starts with blocked (others: unblocked, default): a program that waits for
     * them with sigwait gets any sent before it got there, instead of their default action. */
    const int *blocked;
    int nblocked;
    int pdeathsig;      /* prctl(PR_SET_PDEATHSIG) signal, 0 for none */
    /* Resource limits for the child (soft = hard); 0 leaves a limit as inherited. */
    long rlimit_as, rlimit_nofile, rlimit_cpu, rlimit_nproc, rlimit_fsize;
    /* Run as this user and group (supplementary groups dropped) when uid >= 0; needs root or
     * CAP_SETUID/CAP_SETGID. The parent-death signal is set after the switch (a change of
     * credentials clears it). */
    long uid, gid;
    /* A Landlock ruleset to enter just before exec (sandbox.h), or -1. */
    int sandbox_fd;
} proc_spec_t;

/* A spec with nothing set but its defaults: stdin, stdout and stderr on /dev/null, no other
 * descriptor, no working directory, no identity change, no sandbox. */
void proc_spec_init(proc_spec_t *spec, const char *file, char *const *argv);

typedef void (*proc_exit_fn)(void *ctx, pid_t pid, int status, const struct rusage *ru);

/* Fork and exec. Returns the pid, or -1 with err ("execve: No such file..."). */
pid_t proc_spawn(const proc_spec_t *spec, char *err, size_t errlen);
/* Call fn once when pid exits. Returns 0 or -1 (out of memory). */
int proc_watch(pid_t pid, proc_exit_fn fn, void *ctx);
/* Forget pid's watch (its owner goes away first); the child is still reaped. */
void proc_unwatch(pid_t pid);
/* Reap every child that has exited: a watched one calls its callback; any other (a process the
 * agent left behind, adopted by ocpmd as subreaper) is only reaped. */
void proc_reap(void);
/* Make ocpmd the subreaper of everything it starts: a process that escapes its run's group (a
 * double fork, setsid) is adopted by ocpmd instead of init when its parent ends. Returns 0 or -1. */
int proc_become_subreaper(void);
/* Kill every child of ocpmd it does not watch (what the agent left behind and ocpmd adopted),
 * with its process group when it leads one. Scans /proc: O(processes). Returns how many. */
int proc_sweep(void);
/* Signal a whole process group; ESRCH counts as success. */
int proc_kill_group(pid_t pgid, int sig);

/* Build an environment from envp keeping the names that match one of the
 * space-separated patterns ("PATH", "XDG_*", "*_API_KEY"). Returns a NULL
 * terminated array (free with proc_env_free) or NULL on out of memory. */
char **proc_env_filter(char *const *envp, const char *patterns);
void proc_env_free(char **env);

/* Run a command (spec: what to run, as whom; its stdout is captured) to completion, capturing up
 * to outlen-1 bytes of stdout, for start-up probes only (it blocks). Returns the exit status as
 * from waitpid, or -1 on spawn failure or timeout (the child is then killed). */
int proc_run_capture(const proc_spec_t *spec, int timeout_ms, char *out, size_t outlen, char *err, size_t errlen);

#endif
