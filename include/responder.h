/* responder: a FastCGI responder process (libfcgi, re-entrant API).
 *
 * `threads` threads each accept requests on fd 0 (the listening socket the
 * manager passed), check them with request_build(), and forward them over their
 * own persistent connection to the manager's control socket. They hold no
 * state and never touch SQLite. Streams are relayed as SSE with a heartbeat
 * comment whenever the manager has been quiet for sse_heartbeat.
 *
 * SIGTERM (from the manager): stop accepting, let requests in flight finish (up
 * to a grace period), exit 0. SIGINT (a terminal's Ctrl-C) is ignored: the
 * manager alone decides when responders stop. Threads blocked in accept() are not woken (they
 * share the listening socket with the other responders, so it is not shut
 * down); they end with the process. */
#ifndef OCPM_RESPONDER_H
#define OCPM_RESPONDER_H

/* Serve until told to stop: the listening socket on fd 0, the in-flight page on fd 3, the settings
 * on settings_fd. Returns the exit status (78, EX_CONFIG, when one of them is missing). */
int responder_main(int index, int settings_fd);

#endif
