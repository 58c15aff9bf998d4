/* responder: a FastCGI responder process (libfcgi, re-entrant API).
 *
 * `threads` threads each accept requests on fd 0 (the listening socket the
 * manager passed), check them with request_build(), and forward them over their
 * own persistent connection to the manager's control socket. They hold no
 * state and never touch SQLite. Streams are relayed as SSE with a heartbeat
 * comment whenever the manager has been quiet for heartbeat_ms.
 *
 * SIGTERM (from the manager): stop accepting, let requests in flight finish (up
 * to a grace period), exit 0. SIGINT (a terminal's Ctrl-C) is ignored: the
 * manager alone decides when responders stop. Threads blocked in accept() are not woken (they
 * share the listening socket with the other responders, so it is not shut
 * down); they end with the process. */
#ifndef OCPM_RESPONDER_H
#define OCPM_RESPONDER_H

typedef struct responder_opts {
    int index;
    const char *control_socket;
    long threads, max_body_bytes, max_message_bytes, heartbeat_ms;
    int slots;                        /* responders in the pool (slots of the in-flight page on fd 3) */
    long capacity, message_capacity;  /* the pool's limits (inflight.h); 0: none */
} responder_opts_t;

/* Parse the --responder command line. Returns 0 or -1 with err. */
int responder_parse_args(int argc, char **argv, responder_opts_t *o, char *err, unsigned long errlen);
/* Serve until told to stop; returns the exit status. */
int responder_main(const responder_opts_t *o);

#endif
