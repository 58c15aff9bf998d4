/* notify: systemd's service notification protocol (sd_notify(3)), without libsystemd.
 *
 * A message is one datagram of NAME=VALUE lines ("READY=1", "STATUS=...", "WATCHDOG=1") sent to
 * the AF_UNIX socket systemd names in $NOTIFY_SOCKET: a file system path ("/run/systemd/notify")
 * or, when it starts with '@', an abstract socket (the '@' becomes a NUL byte). systemd's vsock
 * addresses ("vsock:...") are not supported and refused.
 *
 * $WATCHDOG_USEC asks for "WATCHDOG=1" at least that often; $WATCHDOG_PID, when set, names the
 * one process it is meant for (any other ignores it).
 *
 * The socket is opened once (close-on-exec, non-blocking: a full receiver costs a lost message,
 * never a blocked loop). Nothing here exits or logs: every function returns its error. */
#ifndef OCPM_NOTIFY_H
#define OCPM_NOTIFY_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct notify notify_t;

/* The variables' values (NULL: unset) for process self. Returns 0 with *out, which is NULL when
 * socket is NULL or empty (nothing to notify: every call below is then a no-op); or -1 with err
 * when a value is unusable (a path too long for sun_path, not a path, a bad WATCHDOG_USEC), and
 * *out NULL. A WATCHDOG_PID other than self leaves the watchdog off, not an error. */
int notify_open(const char *socket, const char *watchdog_usec, const char *watchdog_pid, pid_t self,
                notify_t **out, char *err, size_t errlen);
/* The same from the environment, for this process; NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID
 * are then removed from it (whatever the result), so that no child started later inherits them:
 * they are for this process alone. */
int notify_open_env(notify_t **out, char *err, size_t errlen);
void notify_free(notify_t *n);

/* Send msg (one or more "NAME=VALUE" lines, '\n' between them) as one datagram. Returns 0 (also
 * for a NULL n), or -errno (EAGAIN: the receiver's queue is full; the message is lost). */
int notify_send(notify_t *n, const char *msg);

/* The watchdog interval asked for, in microseconds; 0 when off (or n is NULL). */
uint64_t notify_watchdog_usec(const notify_t *n);
/* $NOTIFY_SOCKET as given, for the log ("" for a NULL n). */
const char *notify_socket(const notify_t *n);

#endif
